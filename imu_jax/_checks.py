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
