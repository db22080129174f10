"""Sharding-aware building blocks for the core (jax only; private).

On a mesh whose axes are ``Explicit`` (the default of ``jax.make_mesh``), an array's sharding is
part of its type (``jax.typeof(x).sharding``), and a contraction over a sharded dimension must
state its output sharding. These helpers read the operands' types and spell that out, so the same
core maths runs unchanged with no mesh, on an ``Auto`` mesh, or on an ``Explicit`` one.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec

__all__ = ["explicit_spec", "leading_shards", "leading_is_sharded", "tensordot",
           "constrain_leading", "leading_sharding", "shard_like", "replicate"]


def explicit_spec(x: Any) -> PartitionSpec | None:
    """``x``'s partition spec (padded to ``x.ndim``) if it lives on a mesh with Explicit axes."""
    try:
        sharding = jax.typeof(x).sharding
    except (TypeError, AttributeError):
        return None
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or mesh.empty or AxisType.Explicit not in tuple(mesh.axis_types):
        return None
    spec = tuple(sharding.spec) + (None,) * (jnp.ndim(x) - len(sharding.spec))
    return PartitionSpec(*spec)


def _axis_names(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def leading_shards(x: Any) -> int:
    """Number of shards of ``x``'s leading axis on an Explicit mesh (1 otherwise)."""
    spec = explicit_spec(x)
    if spec is None or not len(spec):
        return 1
    mesh = jax.typeof(x).sharding.mesh
    return math.prod(mesh.shape[name] for name in _axis_names(spec[0]))


def tensordot(a: jax.Array, b: jax.Array, axes: int | Sequence[Sequence[int]]) -> jax.Array:
    """``jnp.tensordot`` whose output sharding is spelled out on Explicit meshes.

    The output keeps the free dimensions' shardings of ``a`` then ``b`` (so a sum over a sharded
    example axis ends replicated, and per-example results stay sharded like the examples).
    """
    spec_a, spec_b = explicit_spec(a), explicit_spec(b)
    if spec_a is None and spec_b is None:
        return jnp.tensordot(a, b, axes)
    if isinstance(axes, int):
        axes_a, axes_b = list(range(a.ndim - axes, a.ndim)), list(range(axes))
    else:
        axes_a, axes_b = [list(x) if isinstance(x, (tuple, list)) else [x] for x in axes]
    axes_a = [d % a.ndim for d in axes_a]
    axes_b = [d % b.ndim for d in axes_b]
    spec_a = spec_a if spec_a is not None else PartitionSpec(*([None] * a.ndim))
    spec_b = spec_b if spec_b is not None else PartitionSpec(*([None] * b.ndim))
    free = [spec_a[d] for d in range(a.ndim) if d not in axes_a]
    free += [spec_b[d] for d in range(b.ndim) if d not in axes_b]
    used, out = set(), []
    for entry in free:  # a mesh axis may shard one output dimension only
        names = _axis_names(entry)
        if not names or used & set(names):
            out.append(None)
        else:
            used |= set(names)
            out.append(entry)
    mesh = jax.typeof(a if explicit_spec(a) is not None else b).sharding.mesh
    return jnp.tensordot(a, b, (axes_a, axes_b),
                         out_sharding=NamedSharding(mesh, PartitionSpec(*out)))


def leading_sharding(tree: Any) -> NamedSharding | None:
    """For concrete arrays: a ``NamedSharding`` placing a vector like ``tree``'s leading axis."""
    leaf = jax.tree.leaves(tree)[0]
    sharding = getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) else None
    if not isinstance(sharding, NamedSharding) or isinstance(leaf, jax.core.Tracer):
        return None
    spec = tuple(sharding.spec)
    return NamedSharding(sharding.mesh, PartitionSpec(spec[0] if spec else None))


def leading_is_sharded(tree: Any) -> bool:
    """True when ``tree``'s first leaf has its leading axis split over several devices."""
    leaf = jax.tree.leaves(tree)[0]
    if leading_shards(leaf) > 1:
        return True
    sharding = getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) else None
    if not isinstance(sharding, NamedSharding) or isinstance(leaf, jax.core.Tracer):
        return False
    spec = tuple(sharding.spec)
    names = _axis_names(spec[0]) if spec else ()
    return math.prod(sharding.mesh.shape[name] for name in names) > 1


def constrain_leading(x: jax.Array, sharding: NamedSharding | None) -> jax.Array:
    """Places ``x`` with ``sharding`` inside ``jit`` (``reshard`` on Explicit meshes)."""
    if sharding is None:
        return x
    if explicit_spec(x) is not None:
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def shard_like(x: jax.Array, like: jax.Array) -> jax.Array:
    """On an Explicit mesh, reshards ``x`` to ``like``'s sharding of its first ``x.ndim`` dims."""
    spec = explicit_spec(like)
    if spec is None:
        return x
    mesh = jax.typeof(like).sharding.mesh
    return jax.sharding.reshard(x, NamedSharding(mesh, PartitionSpec(*spec[:jnp.ndim(x)])))


def replicate(x: jax.Array) -> jax.Array:
    """On an Explicit mesh, ``x`` resharded to fully replicated (for ops such as ``sort`` that
    need a whole axis on every device); unchanged elsewhere."""
    spec = explicit_spec(x)
    if spec is None or all(entry is None for entry in spec):
        return x
    return jax.sharding.reshard(x, NamedSharding(jax.typeof(x).sharding.mesh, PartitionSpec()))
