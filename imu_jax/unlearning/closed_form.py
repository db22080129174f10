"""The closed form of the influence step as one compiled program (spec §1 for a dense softmax
head): one pass of the model gives the head's input (and, from the adapters, the logits); the
closed form's condition (``features @ kernel + bias`` equals the logits on a few examples) is
checked on device; the errors, sums and scores follow in the same program. Compiled once per
model, head layer and shapes, with the parameters as arguments. Also the head's input alone, for
the feature cache (:func:`head_features`, :func:`feature_fn`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

from imu_jax import _checks, heads
from imu_jax.influence import closed_form_errors, closed_form_scores, closed_form_sums
from imu_jax.unlearning.config import PyTree, UnlearnConfig
from imu_jax.unlearning.head_choice import dense_layer

__all__ = ["PASS_CHUNK_BYTES", "feature_batch_size", "feature_fn", "head_features", "probe_size",
           "run_closed_form"]

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


def _cached(factory, *key):
    """``factory(*key)``, compiled once per key (the model included); an unhashable model gets
    a fresh one."""
    try:
        return factory(*key)
    except TypeError:  # an unhashable model: no compilation cache
        return factory.__wrapped__(*key)


@functools.lru_cache(maxsize=64)
def _jitted_head_input(model, layer: str):
    """The jitted ``fn(params, state, x)`` giving ``layer``'s input (one per model and layer, so
    repeated runs reuse its compilation), or ``(None, why not)``."""
    fn, why = _head_input_fn(model, layer)
    return (None, why) if fn is None else (jax.jit(fn), "")


def feature_batch_size(y: np.ndarray) -> int:
    """Rows per batch of :func:`feature_fn` (the held-out data's features): 512 examples, 256
    sequences."""
    return 512 if np.ndim(y) == 1 else 256


def probe_size(y: np.ndarray) -> int:
    """Examples on which the closed form's condition is checked: 8 examples, 2 sequences."""
    return 8 if np.ndim(y) == 1 else 2


def _head_input_fn(model, layer: str):
    """``fn(params, state, x)`` giving the input of ``layer``, or ``(None, why not)``."""
    if hasattr(model, "head_input"):
        return (lambda p, s, xb: model.head_input(p, s, xb, layer)), ""
    if hasattr(model, "features"):
        return model.features, ""
    return None, ("the model gives no head input: it has neither head_input(params, state, x, "
                  "layer) nor features(params, state, x) (imu.from_nnx / imu.from_linen models "
                  "have head_input)")


class _NoClosedForm(Exception):
    """Raised while tracing the closed-form program when the head's input does not fit it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Bytes of the body's per-example intermediates one chunk of the closed-form pass may hold,
# per backend (the rows per chunk follow from the model, see _rows_per_chunk).
PASS_CHUNK_BYTES = {"cpu": 256 * 2**20, "default": 2**30}


def _chunks(x: PyTree, size: int):
    """``(x as [count, size, ...] per leaf, n)``: rows in chunks of ``size``, the last chunk
    padded with copies of row 0."""
    n = jax.tree.leaves(x)[0].shape[0]
    count = -(-n // size)
    pad = count * size - n

    def split(a):
        a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad,) + a.shape[1:])]) if pad else a
        return a.reshape((count, size) + a.shape[1:])

    return jax.tree.map(split, x), n


def _unchunk(a: jax.Array, n: int) -> jax.Array:
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])[:n]


def _in_chunks(fn, x: PyTree, size: int) -> PyTree:
    """``fn(x)`` for a per-example ``fn``, traced over ``size`` rows at a time
    (``jax.lax.map``), so the body's activations of only one chunk are live at once."""
    n = jax.tree.leaves(x)[0].shape[0]
    if n <= size:
        return fn(x)
    size = -(-n // -(-n // size))  # as many chunks, as little padding
    parts, n = _chunks(x, size)
    return jax.tree.map(lambda a: _unchunk(a, n), jax.lax.map(fn, parts))


def _intermediate_bytes(fn, *args) -> int:
    """Bytes of every value ``fn(*args)`` computes (its jaxpr's equations, nested ones too)."""

    def total(jaxpr) -> int:
        size = 0
        for eqn in jaxpr.eqns:
            size += sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize
                        for v in eqn.outvars if hasattr(v.aval, "shape"))
            for sub in jax_core.jaxprs_in_params(eqn.params):
                size += total(sub)
        return size

    return total(jax.make_jaxpr(fn)(*args).jaxpr)


def _rows_per_chunk(fn, params, state, x) -> int:
    """Rows of ``x`` per chunk of the pass ``fn(params, state, x)``: as many as fit
    ``PASS_CHUNK_BYTES`` of per-example intermediates (two rows' minus one row's, so the
    parameters' own conversions do not count)."""
    spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)  # noqa: E731
    rows = lambda k: jax.tree.map(lambda a: jax.ShapeDtypeStruct((k,) + a.shape[1:], a.dtype),
                                  x)  # noqa: E731
    p, s = jax.tree.map(spec, params), jax.tree.map(spec, state)
    per_row = max(1, _intermediate_bytes(fn, p, s, rows(2)) - _intermediate_bytes(fn, p, s, rows(1)))
    budget = PASS_CHUNK_BYTES.get(jax.default_backend(), PASS_CHUNK_BYTES["default"])
    return max(1, budget // per_row)


def _fitting_features(features, kernel, layer: str, sequences: bool):
    """``features``, after raising :class:`_NoClosedForm` (at trace time) unless they are
    ``[N, D]`` (or ``[N, T, D]``) with the kernel's ``D``."""
    if features.ndim != (3 if sequences else 2) or features.shape[-1] != kernel.shape[0]:
        raise _NoClosedForm(
            f"the input of {layer!r} has shape {list(features.shape)}, not [N, D] "
            f"{'[N, T, D] ' if sequences else ''}with D = {kernel.shape[0]}")
    return features


def _check_closed_form(head_logits, logits, layer: str):
    """At trace time: raises :class:`_NoClosedForm` unless the head's ``features @ kernel +
    bias`` has the logits' shape; returns the largest difference to the logits and whether
    every one is within ``np.allclose``'s 1e-4 (on device)."""
    if head_logits.shape != logits.shape:
        raise _NoClosedForm(
            f"the input of {layer!r} times its kernel plus bias is not the model's logits (shape "
            f"{list(head_logits.shape[1:])} per example, the logits' {list(logits.shape[1:])}): "
            f"{layer!r} is not the model's output layer, or its output is transformed")
    logits = logits.astype(head_logits.dtype)
    gap = jnp.abs(head_logits - logits)
    return jnp.max(gap), jnp.all(gap <= 1e-4 + 1e-4 * jnp.abs(logits))


def _all_finite(*arrays) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _pass_fn(model, layer: str, sequences: bool):
    """``(fn(params, state, x) -> (features, logits or None), "")`` — one pass of the model giving
    the head's input, and its logits when the model gives both at once (the adapters'
    ``head_input_and_logits``; not for sequences, whose [N, T, V] logits would be large) — or
    ``(None, why not)``."""
    if hasattr(model, "head_input_and_logits") and not sequences:
        return (lambda p, s, xb: model.head_input_and_logits(p, s, xb, layer)), ""
    capture, why = _head_input_fn(model, layer)
    if capture is None:
        return None, why
    return (lambda p, s, xb: (capture(p, s, xb), None)), ""


@functools.lru_cache(maxsize=64)
def _closed_form_program(model, layer: str, probe: int, sequences: bool, with_scores: bool):
    """``(program, "")``: ONE jitted ``program(params, state, x, labels, kernel, bias,
    damping)`` that runs the model once over every forget example capturing the head's input
    (and, from the adapters, its logits), checks the closed form's condition on device
    (``features @ kernel + bias`` equals the logits on the first ``probe`` examples; without
    logits from the pass, the model runs on them in this program) and, with ``with_scores``,
    computes the closed-form scores from the features and the logits. Nothing goes to the host
    between the stages. Compiled once per model, layer and shapes: the parameters are
    arguments, never constants. ``(None, why not)`` when the model gives no head input."""
    pass_fn, why = _pass_fn(model, layer, sequences)
    if pass_fn is None:
        return None, why

    def program(params, state, x, labels, kernel, bias, damping):
        def one_pass(xb):
            features, logits = pass_fn(params, state, xb)
            return _fitting_features(features, kernel, layer, sequences), logits

        try:
            rows = _rows_per_chunk(pass_fn, params, state, x)
            features, logits = _in_chunks(one_pass, x, rows)
        except _NoClosedForm:
            raise
        except Exception as err:  # noqa: BLE001 - any failure means: no closed form, say why
            first = (str(err).strip().splitlines() or [""])[0][:160]
            raise _NoClosedForm(f"the input of {layer!r} could not be captured "
                                f"({type(err).__name__}: {first})") from err
        probe_logits = (model.apply(params, state, _take(x, slice(0, probe)), train=False)[0]
                        if logits is None else logits[:probe])  # else: from the same pass
        gap, fits = _check_closed_form(features[:probe] @ kernel + bias, probe_logits, layer)
        out = {"features": features}
        if with_scores:  # the head's output: the model's logits (they passed the check above)
            logits = features @ kernel + bias if logits is None else logits
            errors = closed_form_errors(logits.astype(features.dtype), labels)
            out["scores"] = closed_form_scores(features, errors,
                                               closed_form_sums(features, errors),
                                               features.shape[0], damping)
        # NaN or inf in the features reach every score (through the means): checking the [N]
        # scores costs nothing, the [N, D] features a pass over them (sequences: no scores here)
        finite = _all_finite(out["scores"] if with_scores else features)
        out["checks"] = jnp.stack([gap.astype(jnp.float32), fits, _all_finite(kernel, bias),
                                   finite]).astype(jnp.float32)  # one transfer to the host
        return out

    return jax.jit(program), ""


def run_closed_form(model, params, state, x, y, layer, dense, damping, with_scores):
    """The closed-form program's results (device ``features``, host ``scores`` when asked), or
    ``(None, why not)``."""
    sequences = np.ndim(y) == 2
    program, why = _cached(_closed_form_program, model, layer, probe_size(y), sequences,
                           with_scores)
    if program is None:
        return None, why
    if with_scores:
        _checks.check_labels_in_range(y, np.shape(dense["kernel"])[1], "labels",
                                      what=f"the head has {np.shape(dense['kernel'])[1]} classes")
    labels = np.asarray(y) if with_scores else None  # the jitted program moves it
    try:
        out = program(params, state, x, labels, dense["kernel"], dense["bias"], damping)
    except _NoClosedForm as err:
        return None, err.reason
    host = jax.device_get({k: v for k, v in out.items() if k != "features"})
    host.update(zip(("gap", "fits", "head_finite", "finite"), host.pop("checks").tolist()))
    if not host["head_finite"]:
        _checks.check_finite({"kernel": dense["kernel"], "bias": dense["bias"]}, "head")
    if not host["fits"]:
        return None, (f"the input of {layer!r} times its kernel plus bias is not the model's "
                      f"logits (max difference {float(host['gap']):.3g}): {layer!r} is not the "
                      "model's output layer, or its output is transformed")
    if not host["finite"]:
        _checks.check_finite(np.asarray(out["features"]), "features")  # names the features
    return {**host, "features": out["features"]}, ""


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
    result, why = run_closed_form(model, params, state, x, y, layer, dense,
                                   UnlearnConfig().damping, with_scores=False)
    if result is None:
        return None, None, why
    return heads.dense_softmax_head(head_tree), result["features"], ""


def feature_fn(model, params: PyTree, state: PyTree, head_tree: PyTree, batch_size: int):
    """``fn(x) -> features`` (numpy, batched) of the head's input, for a head that
    :func:`head_features` accepted."""
    layer = dense_layer(head_tree)[0]
    fn = _cached(_jitted_head_input, model, layer)[0]
    return lambda x: _batched(lambda xb: fn(params, state, xb), x, batch_size)
