"""Input validation shared by the core.

Shape and dtype checks run everywhere. Value checks (NaN/inf, ranges) run only on host values:
numpy on arrays that are not tracers, never a ``jnp`` operation, because inside a user's
``jax.jit`` even a closed-over constant array turns into a tracer as soon as ``jnp`` touches it.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def host_blocks(x: Any) -> Iterator[np.ndarray] | None:
    """The values of ``x`` as numpy blocks (one per locally held shard of a ``jax.Array``), or
    ``None`` for a tracer. Never stages an operation out, so it is safe under a trace; a global
    array spread over several processes is checked on each process's own shards."""
    if not is_concrete(x):
        return None
    if isinstance(x, jax.Array):
        return (np.asarray(s.data) for s in x.addressable_shards if s.replica_id == 0)
    return iter([np.asarray(x)])


def _is_inexact(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.result_type(x)
    return bool(jax.dtypes.issubdtype(dtype, np.inexact))


def leading_size(tree: Any, name: str) -> int:
    """The shared leading-axis size of every leaf of ``tree``; raises on empty or ragged input."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} is empty: it has no arrays.")
    sizes = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                    f"{name} needs a leading example axis on every leaf; found a scalar leaf.")
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"{name} leaves disagree on the leading (example) axis: sizes {sorted(sizes)}.")
    (size,) = sizes
    if size == 0:
        raise ValueError(f"{name} is empty: its leading (example) axis has size 0.")
    return size


def check_finite(tree: Any, name: str) -> None:
    """Raises ``ValueError`` if a host-valued floating leaf of ``tree`` holds NaN or inf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not _is_inexact(leaf):
            continue
        blocks = host_blocks(leaf)
        if blocks is None:
            continue
        if not all(np.all(np.isfinite(np.asarray(b, np.float32 if b.dtype.itemsize < 4 else None)))
                   for b in blocks):
            where = jax.tree_util.keystr(path) or "(root)"
            raise ValueError(f"{name} contains NaN or inf values (at {where}).")


def value_range(x: Any) -> tuple[Any, Any] | None:
    """``(min, max)`` of a host-valued, non-empty array; ``None`` for a tracer or an empty one."""
    blocks = host_blocks(x)
    if blocks is None:
        return None
    blocks = [b for b in blocks if b.size]
    if not blocks:
        return None
    return min(b.min() for b in blocks), max(b.max() for b in blocks)


def check_labels_in_range(labels: Any, num_classes: int, name: str, *, what: str,
                          padding: bool = False) -> None:
    """Raises ``ValueError`` unless every host-valued label lies in ``0..num_classes-1`` (or is
    ``-1`` when ``padding``); tracers and empty arrays pass (nothing to check on the host).

    >>> check_labels_in_range(np.array([0, 3]), 3, "labels", what="the head has 3 classes")
    Traceback (most recent call last):
    ...
    ValueError: labels out of range: found values in [0, 3]; the head has 3 classes (valid labels 0..2).
    """
    found = value_range(labels)
    if found is None:
        return
    low, high = int(found[0]), int(found[1])
    if low < (-1 if padding else 0) or high >= num_classes:
        raise ValueError(f"{name} out of range: found values in [{low}, {high}]; {what} (valid "
                         f"labels {'-1 for padding, ' if padding else ''}0..{num_classes - 1}).")


def scalar_value(value: Any) -> float | None:
    """``float(value)`` for a host scalar; ``None`` for a tracer."""
    return float(np.asarray(value)) if is_concrete(value) else None


def check_positive(value: Any, name: str) -> None:
    got = scalar_value(value)
    if got is not None and not got > 0:
        raise ValueError(f"{name} must be > 0, got {value}.")


def check_fraction(value: Any, name: str) -> None:
    """``value`` must lie in (0, 1]."""
    got = scalar_value(value)
    if got is not None and not 0.0 < got <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}.")


def check_hyperparameter_precision(value: Any, name: str) -> None:
    """A floating hyperparameter must carry at least float32 precision.

    ``optax.inject_hyperparams`` casts hyperparameters to the parameters' dtype; in bfloat16 a
    fraction such as 0.7 becomes 0.69921875 and counts derived from it change. (Hyperparameters
    that only enter arithmetic in the gradients' dtype, such as ``damping``, need no check.)"""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, np.floating) and \
            np.dtype(dtype).itemsize < 4:
        raise ValueError(
            f"{name} arrived as {np.dtype(dtype).name}, too coarse to give the static result "
            "(optax.inject_hyperparams casts hyperparameters to the parameters' dtype); pass "
            "hyperparam_dtype=jnp.float32 to optax.inject_hyperparams, or a float32 value.")


def check_model_fits(model, params: Any, state: Any, x: Any, y: Any, name: str) -> None:
    """Raises ``ValueError`` unless ``model.apply(params, state, x[:1])`` accepts the inputs of
    ``name`` and gives logits whose leading axes match the labels' shape (checked abstractly
    with ``jax.eval_shape``: nothing is computed).

    >>> class Linear:
    ...     def apply(self, params, state, x, *, train=False):
    ...         return x @ params, state
    >>> check_model_fits(Linear(), np.zeros((3, 2)), {}, np.zeros((4, 5)), np.zeros(4), "forget")
    Traceback (most recent call last):
    ...
    ValueError: forget: inputs float64[5] per example do not fit the model: ...
    """
    y = np.asarray(y[:1])
    logits_shape = model_output_shape(model, params, state, x, name)
    if tuple(logits_shape[:-1]) != tuple(y.shape):
        raise ValueError(
            f"{name}: the model gives logits of shape {tuple(logits_shape[1:])} per example but "
            f"the labels have shape {tuple(y.shape[1:])}; class labels need logits [N, classes], "
            "token labels [N, T] need logits [N, T, vocab].")


def model_output_shape(model, params: Any, state: Any, x: Any, name: str) -> tuple:
    """The logits' shape for one example of ``x`` (abstract, ``jax.eval_shape``), or a
    ``ValueError`` naming ``name`` when the inputs do not fit the model."""
    x = np.asarray(x[:1])
    try:
        logits = jax.eval_shape(lambda p, s, xb: model.apply(p, s, xb, train=False)[0],
                                params, state, x)
    except Exception as err:  # noqa: BLE001 - any failure means the shapes do not fit
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"{name}: inputs {x.dtype}[{','.join(map(str, x.shape[1:]))}] per example do not fit "
            f"the model: {type(err).__name__}: {first}") from None
    return tuple(logits.shape)
