"""Input validation shared by the core. Value checks run only on concrete (non-traced) arrays."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


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
    """Raises ``ValueError`` if a concrete floating leaf of ``tree`` holds NaN or inf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not is_concrete(leaf) or not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            continue
        if not bool(jnp.all(jnp.isfinite(leaf))):
            where = jax.tree_util.keystr(path) or "(root)"
            raise ValueError(f"{name} contains NaN or inf values (at {where}).")


def check_positive(value: Any, name: str) -> None:
    if is_concrete(value) and not float(value) > 0:
        raise ValueError(f"{name} must be > 0, got {value}.")


def check_fraction(value: Any, name: str) -> None:
    """``value`` must lie in (0, 1]."""
    if is_concrete(value) and not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}.")


def check_model_fits(model, params: Any, state: Any, x: Any, y: Any, name: str) -> None:
    """Raises ``ValueError`` unless ``model.apply(params, state, x[:1])`` accepts the inputs of
    ``name`` and gives logits whose leading axes match the labels' shape (checked abstractly
    with ``jax.eval_shape``: nothing is computed).

    >>> class Linear:
    ...     def apply(self, params, state, x, *, train=False):
    ...         return x @ params, state
    >>> check_model_fits(Linear(), jnp.zeros((3, 2)), {}, np.zeros((4, 5)), np.zeros(4), "forget")
    Traceback (most recent call last):
    ...
    ValueError: forget: inputs float64[5] per example do not fit the model: ...
    """
    x, y = np.asarray(x[:1]), np.asarray(y[:1])
    try:
        logits = jax.eval_shape(lambda p, s, xb: model.apply(p, s, xb, train=False)[0],
                                params, state, x)
    except Exception as err:  # noqa: BLE001 - any failure means the shapes do not fit
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"{name}: inputs {x.dtype}[{','.join(map(str, x.shape[1:]))}] per example do not fit "
            f"the model: {type(err).__name__}: {first}") from None
    if tuple(logits.shape[:-1]) != tuple(y.shape):
        raise ValueError(
            f"{name}: the model gives logits of shape {tuple(logits.shape[1:])} per example but "
            f"the labels have shape {tuple(y.shape[1:])}; class labels need logits [N, classes], "
            "token labels [N, T] need logits [N, T, vocab].")
