"""The influence step of the loop (spec §1–2): score the forget set with the closed form where the
head allows it (else the streaming generic path) and select and weight the examples to ascend on."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import heads, sharding
from imu_jax.influence import (NoNegativeInfluenceWarning, classifier_influence, influence_scores,
                               influence_weights)
from imu_jax.lm_head import sequence_influence
from imu_jax.models import adapters
from imu_jax.unlearning.config import PyTree, UnlearnConfig
from imu_jax.unlearning.head_choice import dense_layer, resolve_head
from imu_jax.unlearning.losses import make_example_loss


class Influence(tuple):
    """``(scores, closed_form)``: unpacks like the pair :func:`forget_influence` always returned,
    and says why with ``reason`` (``"closed form: dense softmax top layer 'classifier' (kernel
    [64, 10], bias [10])"``, ``"generic: the head has 2 layers (...)"``, ...)."""

    def __new__(cls, scores: np.ndarray, closed_form: bool, reason: str, features=None):
        self = super().__new__(cls, (scores, closed_form))
        self.reason = reason
        self.features = features  # the head's input on every forget example (closed form)
        return self

    scores = property(lambda self: self[0])
    closed_form = property(lambda self: self[1])


def _take(x: PyTree, rows) -> PyTree:
    return jax.tree.map(lambda a: a[rows], x)


def _batched(fn, x: PyTree, batch_size: int) -> np.ndarray:
    """``fn`` over ``x`` in batches of ``batch_size`` rows, the last one padded (its first row
    repeated) so a jitted ``fn`` compiles for one shape; per-example ``fn`` only."""
    n = len(jax.tree.leaves(x)[0])
    size = min(batch_size, n)
    out = []
    for i in range(0, n, size):
        rows = np.arange(i, min(i + size, n))
        pad = np.concatenate([rows, np.full(size - len(rows), i)])
        out.append(np.asarray(fn(_take(x, pad)))[:len(rows)])
    return np.concatenate(out)


@functools.lru_cache(maxsize=64)
def _jitted_head_input(model, layer: str):
    """The jitted ``fn(params, state, x)`` giving ``layer``'s input (one per model and layer, so
    repeated runs reuse its compilation), or ``(None, why not)``."""
    fn, why = _head_input_fn(model, layer)
    return (None, why) if fn is None else (jax.jit(fn), "")


def feature_batch_size(y: np.ndarray) -> int:
    """Rows per batch of the body's forward pass: 512 examples, 256 sequences."""
    return 512 if np.ndim(y) == 1 else 256


def _head_input_fn(model, layer: str):
    """``fn(params, state, x)`` giving the input of ``layer``, or ``(None, why not)``."""
    if hasattr(model, "head_input"):
        return (lambda p, s, xb: model.head_input(p, s, xb, layer)), ""
    if hasattr(model, "features"):
        return model.features, ""
    return None, ("the model gives no head input: it has neither head_input(params, state, x, "
                  "layer) nor features(params, state, x) (imu.from_nnx / imu.from_linen models "
                  "have head_input)")


def _closed_form_features(model, params, state, x, y, layer, dense):
    """``(features of every example, "")`` when ``features @ kernel + bias`` equals the model's
    logits on a few examples, else ``(None, why not)``."""
    try:
        fn, why = _jitted_head_input(model, layer)
    except TypeError:  # an unhashable model: no compilation cache
        fn, why = _head_input_fn(model, layer)
        fn = fn if fn is None else jax.jit(fn)
    if fn is None:
        return None, why
    probe = _take(x, slice(0, 8 if y.ndim == 1 else 2))
    try:
        features = np.asarray(fn(params, state, probe))
    except Exception as err:  # noqa: BLE001 - any failure means: no closed form, say why
        first = (str(err).strip().splitlines() or [""])[0][:160]
        return None, f"the input of {layer!r} could not be captured ({type(err).__name__}: {first})"
    logits = np.asarray(model.apply(params, state, probe, train=False)[0])
    if features.ndim != y.ndim + 1 or features.shape[-1] != np.shape(dense["kernel"])[0]:
        return None, (f"the input of {layer!r} has shape {list(features.shape)}, not [N, D] "
                      f"{'' if y.ndim == 1 else '[N, T, D] '}with D = "
                      f"{np.shape(dense['kernel'])[0]}")
    out = features @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    if out.shape != logits.shape or not np.allclose(out, logits, rtol=1e-4, atol=1e-4):
        gap = (f"max difference {float(np.max(np.abs(out - logits))):.3g}"
               if out.shape == logits.shape else
               f"shape {list(out.shape[1:])} per example, the logits' {list(logits.shape[1:])}")
        return None, (f"the input of {layer!r} times its kernel plus bias is not the model's "
                      f"logits ({gap}): {layer!r} is not the model's output layer, or its output "
                      "is transformed")
    return _batched(lambda xb: fn(params, state, xb), x, feature_batch_size(y)), ""


def head_features(model, params: PyTree, state: PyTree, x: PyTree, y: np.ndarray,
                  head_tree: PyTree):
    """``(DenseHead, features of every example of x, "")`` when the selected head is one dense
    layer whose input the model gives and ``features @ kernel + bias`` is the logits (the closed
    form's condition and probe), else ``(None, None, why not)``."""
    layer, dense, why = dense_layer(head_tree)
    if dense is None:
        return None, None, why
    if np.ndim(y) not in (1, 2):
        return None, None, f"labels of shape {list(np.shape(y))} are neither classes nor sequences"
    features, why = _closed_form_features(model, params, state, x, y, layer, dense)
    if features is None:
        return None, None, why
    return heads.dense_softmax_head(head_tree), features, ""


def feature_fn(model, params: PyTree, state: PyTree, head_tree: PyTree, batch_size: int):
    """``fn(x) -> features`` (numpy, batched) of the head's input, for a head that
    :func:`head_features` accepted."""
    layer = dense_layer(head_tree)[0]
    try:
        fn = _jitted_head_input(model, layer)[0]
    except TypeError:
        fn = jax.jit(_head_input_fn(model, layer)[0])
    return lambda x: _batched(lambda xb: fn(params, state, xb), x, batch_size)


def forget_influence(model, params: PyTree, state: PyTree, x: PyTree, y: np.ndarray,
                     config: UnlearnConfig, *, place: sharding.Placement | None = None
                     ) -> Influence:
    """Influence scores ``[N]`` of the forget examples (spec §1) and whether the closed form ran.

    The closed form applies when the selected head is one dense layer (a kernel ``[D, C]`` and a
    bias ``[C]``, whatever its name) whose output is the model's logits: its input, from the
    model's ``head_input(params, state, x, layer)`` (or ``features``), times the kernel plus the
    bias must equal the logits on a few examples. Otherwise the streaming generic path of the
    core runs. The result unpacks as ``(scores, closed_form)`` and says why in ``.reason``.
    With a ``place``ment on a mesh, the examples are sharded over ``data`` and the head over
    ``model``. ``model`` may also be an ``nnx.Module`` or a ``(linen_module, variables)`` pair,
    with ``params`` and ``state`` None (``imu_jax.models.adapters``); ``x`` is one array or a
    dict of the inputs.
    """
    model, params, state, _ = adapters.resolve(model, params, state)
    place = place or sharding.Placement(None)
    head_tree, rest = heads.split_head(params, resolve_head(params, config.head))
    if config.closed_form == "never":
        why = "closed_form='never'"
    else:
        layer, dense, why = dense_layer(head_tree)
        if dense is not None and y.ndim == 2 and place:
            why = "sequence labels on a mesh (the sequence closed form runs on one device)"
        elif dense is not None and y.ndim not in (1, 2):
            why = f"labels of shape {list(np.shape(y))} are neither classes nor sequences"
        elif dense is not None:
            features, why = _closed_form_features(model, params, state, x, y, layer, dense)
            if features is not None:
                kernel, bias = np.shape(dense["kernel"]), np.shape(dense["bias"])
                reason = (f"closed form: dense softmax top layer {layer!r} (kernel "
                          f"{list(kernel)}, bias {list(bias)})")
                if y.ndim == 2:
                    scores = np.asarray(sequence_influence(features, jnp.asarray(y), dense,
                                                           damping=config.damping))
                    return Influence(scores, True, reason + ", sequence labels", features)
                placed, labels = place.batch((features, jnp.asarray(y)))
                scores = classifier_influence(placed, labels, place.params(dense),
                                              damping=config.damping)
                return Influence(place.host(scores), True, reason, features)
    loss = make_example_loss(model, place.replicate(rest), place.replicate(state))
    scores = influence_scores(loss, place.params(head_tree),
                              place.batch({"x": jax.tree.map(jnp.asarray, x), "y": jnp.asarray(y)}),
                              damping=config.damping, chunk_size=config.influence_chunk_size)
    return Influence(place.host(scores), False, f"generic: {why}")


def select_examples(scores: np.ndarray | None, num_forget: int, config: UnlearnConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(indices, weights, fallback)`` of the examples to ascend on (spec §2 + the ablations).

    >>> cfg = UnlearnConfig(weighting="uniform")
    >>> idx, w, fb = select_examples(None, 3, cfg, np.random.default_rng(0))
    >>> idx.tolist(), w.tolist(), fb
    ([0, 1, 2], [1.0, 1.0, 1.0], False)
    """
    if config.weighting == "uniform":
        return np.arange(num_forget), np.ones(num_forget, np.float32), False
    fallback = not bool(np.any(scores < 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoNegativeInfluenceWarning)
        indices, weights = influence_weights(scores, top_fraction=config.top_fraction,
                                             clip_quantile=config.clip_quantile)
    if fallback:
        warnings.warn(
            f"IMU: no forget example has negative influence (all {num_forget} scores >= 0); "
            "falling back to uniform weights over all examples. Recorded as fallback=True.",
            NoNegativeInfluenceWarning, stacklevel=3)
    if config.weighting == "shuffled":
        indices = np.sort(rng.choice(num_forget, len(indices), replace=False))
        weights = rng.permutation(weights)
    return indices, weights.astype(np.float32), fallback
