"""The influence step of the loop (spec §1–2): score the forget set with the closed form where the
head allows it (else the streaming generic path) and select and weight the examples to ascend on."""

from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import heads, sharding
from imu_jax.influence import (NoNegativeInfluenceWarning, classifier_influence, influence_scores,
                               influence_weights)
from imu_jax.lm_head import sequence_influence
from imu_jax.models import adapters
from imu_jax.unlearning.closed_form import run_closed_form
from imu_jax.unlearning.config import PyTree, UnlearnConfig
from imu_jax.unlearning.head_choice import dense_layer
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


def _aval(leaf) -> tuple:
    dtype = getattr(leaf, "dtype", None)
    return np.shape(leaf), (dtype if dtype is not None else np.result_type(leaf))


@functools.lru_cache(maxsize=256)
def _head_layout(treedef, avals: tuple, selector) -> tuple[str | None, int, int, str]:
    """``(layer, kernel index, bias index, "")`` of the selected head's dense layer among the
    flattened parameters, or ``(None, -1, -1, why not)``; decided on shapes alone (once per
    structure and selector). Raises, as :func:`imu_jax.check_head_selector`, for a selector that
    matches nothing or is ambiguous."""
    shapes = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype)
                                          for shape, dtype in avals])
    heads.check_head_selector(shapes, selector)
    layer, dense, why = dense_layer(heads.split_head(shapes, selector)[0])
    if dense is None:
        return None, -1, -1, why
    index = {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(shapes))}
    return layer, index[id(dense["kernel"])], index[id(dense["bias"])], ""


def selected_dense_layer(params: PyTree, selector) -> tuple[str | None, dict | None, str]:
    """``(layer, {"kernel", "bias"}, "")`` when ``selector`` picks one dense layer of ``params``,
    else ``(None, None, why not)``, after the core's head check (which raises for a selector
    that matches nothing or is ambiguous). A string or compiled regex is decided once per
    parameter structure (a few microseconds per call after that); a predicate, which may read
    the values, on every call."""
    if not isinstance(selector, (str, re.Pattern)):
        heads.check_head_selector(params, selector)
        return dense_layer(heads.split_head(params, selector)[0])
    leaves, treedef = jax.tree.flatten(params)
    layer, kernel, bias, why = _head_layout(treedef, tuple(map(_aval, leaves)), selector)
    if layer is None:
        return None, None, why
    return layer, {"kernel": leaves[kernel], "bias": leaves[bias]}, ""


def forget_influence(model, params: PyTree, state: PyTree, x: PyTree, y: np.ndarray,
                     config: UnlearnConfig, *, place: sharding.Placement | None = None
                     ) -> Influence:
    """Influence scores ``[N]`` of the forget examples (spec §1) and whether the closed form ran.

    The closed form applies when the selected head is one dense layer (a kernel ``[D, C]`` and a
    bias ``[C]``, whatever its name) whose output is the model's logits: its input, from the
    model's ``head_input(params, state, x, layer)`` (or ``features``), times the kernel plus the
    bias must equal the logits on a few examples. Otherwise the streaming generic path of the
    core runs. The result unpacks as ``(scores, closed_form)`` and says why in ``.reason``.
    The closed form is one compiled program per model and shapes: the body's pass over the
    examples, the check and the scores, with the parameters as arguments.
    With a ``place``ment on a mesh, the examples are sharded over ``data`` and the head over
    ``model``. ``model`` may also be an ``nnx.Module`` or a ``(linen_module, variables)`` pair,
    with ``params`` and ``state`` None (``imu_jax.models.adapters``); ``x`` is one array or a
    dict of the inputs.
    """
    model, params, state, _ = adapters.resolve(model, params, state)
    place = place or sharding.Placement(None)
    layer, dense, why = selected_dense_layer(params, config.head)  # the head check included
    if config.closed_form == "never":
        why = "closed_form='never'"
    else:
        if dense is not None and y.ndim == 2 and place:
            why = "sequence labels on a mesh (the sequence closed form runs on one device)"
        elif dense is not None and y.ndim not in (1, 2):
            why = f"labels of shape {list(np.shape(y))} are neither classes nor sequences"
        elif dense is not None:
            with_scores = y.ndim == 1 and not place
            result, why = run_closed_form(model, params, state, x, y, layer, dense,
                                           config.damping, with_scores)
            if result is not None:
                features = result["features"]
                kernel, bias = np.shape(dense["kernel"]), np.shape(dense["bias"])
                reason = (f"closed form: dense softmax top layer {layer!r} (kernel "
                          f"{list(kernel)}, bias {list(bias)})")
                if with_scores:
                    return Influence(result["scores"], True, reason, features)
                if y.ndim == 2:
                    scores = np.asarray(sequence_influence(features, jnp.asarray(y), dense,
                                                           damping=config.damping))
                    return Influence(scores, True, reason + ", sequence labels", features)
                placed, labels = place.batch((features, jnp.asarray(y)))
                scores = classifier_influence(placed, labels, place.params(dense),
                                              damping=config.damping)
                return Influence(place.host(scores), True, reason, features)
    head_tree, rest = heads.split_head(params, config.head)
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
