"""Jitted steps whose carried arrays keep their placement, and :class:`Placement`: one object that
puts a loop's parameters and batches on a mesh (or leaves them alone without one).

Examples use eight devices; on a CPU, fake them before JAX starts (a fresh session):

  >>> import os
  >>> os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
"""

from __future__ import annotations

from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from imu_jax.sharding.hosts import to_host
from imu_jax.sharding.mesh import (DATA_AXIS, MODEL_AXIS, PyTree, _from_full_host_copy, auto_mesh,
                                   batch_sharding, param_shardings, replicated)


def jit_step(fn, *, carry: Sequence[int], donate_argnums: Sequence[int] = ()):
    """Jits a training-style step whose first outputs keep the shardings of arguments ``carry``.

    ``fn(*args) -> (out_0, ..., out_k, *rest)``: output ``i`` (for ``i < len(carry)``) is placed
    like argument ``carry[i]`` (e.g. params, state, optimizer state), the remaining outputs (a
    loss) are replicated. On a mesh with Explicit axes the body runs under
    ``jax.sharding.auto_axes``, so model code that was not written for explicit sharding (convs,
    embedding lookups) still partitions automatically. Compiled once per input placement.

    Examples:
      >>> import jax.numpy as jnp
      >>> from imu_jax import sharding
      >>> mesh = sharding.make_mesh(data=8)
      >>> step = sharding.jit_step(lambda w, x: (w - x.mean(0), jnp.sum(x)), carry=[0])
      >>> w = sharding.shard_params(jnp.ones(3), mesh)
      >>> x = sharding.shard_batch(jnp.ones((8, 3)), mesh)
      >>> w, total = step(w, x)
      >>> w.sharding.spec, float(total)
      (P(), 24.0)
    """
    carry = tuple(carry)
    compiled = {}

    def placed(x):
        sharding = getattr(x, "sharding", None)
        return sharding if isinstance(sharding, NamedSharding) else None

    def wrapper(*args):
        outs = tuple(jax.tree.map(placed, args[i]) for i in carry)
        leaves = [s for s in jax.tree.leaves(outs) if s is not None]
        key = jax.tree.structure(outs), tuple(leaves)
        if key not in compiled:
            if not leaves:
                compiled[key] = jax.jit(fn, donate_argnums=tuple(donate_argnums))
            else:
                mesh = leaves[0].mesh
                rest = NamedSharding(mesh, P())

                def body(*a):
                    result = fn(*a)
                    return result[:len(carry)], result[len(carry):]

                out_shardings = (outs, rest)
                if AxisType.Explicit in tuple(mesh.axis_types):
                    body = jax.sharding.auto_axes(body, out_sharding=out_shardings)
                jitted = jax.jit(body, out_shardings=out_shardings,
                                 donate_argnums=tuple(donate_argnums))
                compiled[key] = lambda *a, _j=jitted: (lambda r: (*r[0], *r[1]))(_j(*a))
        return compiled[key](*args)

    return wrapper


class Placement:
    """Where a high-level loop puts things on ``mesh`` — or nothing at all when it is ``None``.

    Full-model loops (``imu_jax.unlearn``) use it so their code reads the same with and without a
    mesh. The mesh is viewed with ``Auto`` axes (:func:`auto_mesh`): the Flax models are not
    written for explicit sharding, so the compiler propagates shardings through them. Host
    arrays that every process holds in full are placed shard by shard.

    * ``batch(tree)``: example axis over ``data`` when its size divides, else replicated;
    * ``params(tree)``: FSDP-style over ``model`` (replicated without that axis);
    * ``replicate(tree)``; ``host(tree)``: numpy copies, the same on every process;
    * ``jit(fn, carry=..., donate_argnums=...)``: :func:`jit_step` on a mesh, else ``jax.jit``;
    * ``init(optimizer, params)``: optimizer state placed like ``params``.

    Examples:
      >>> import numpy as np
      >>> from imu_jax import sharding
      >>> place = sharding.Placement(sharding.make_mesh("data=4,model=2"))
      >>> place.batch({"x": np.zeros((8, 3))})["x"].sharding.spec
      P('data',)
      >>> place.batch({"x": np.zeros((6, 3))})["x"].sharding.is_fully_replicated  # 6 % 4 != 0
      True
      >>> sharding.Placement(None).params({"w": np.ones(2)})["w"].tolist()
      [1.0, 1.0]
    """

    def __init__(self, mesh: Mesh | None, *, data_axis: str = DATA_AXIS,
                 model_axis: str = MODEL_AXIS):
        self.mesh = None if mesh is None else auto_mesh(mesh)
        self.data_axis, self.model_axis = data_axis, model_axis

    def __bool__(self) -> bool:
        return self.mesh is not None

    def _put(self, tree, shardings):
        return jax.tree.map(_from_full_host_copy if jax.process_count() > 1 else jax.device_put,
                            tree, shardings)

    def batch(self, tree: PyTree) -> PyTree:
        if self.mesh is None:
            return tree
        size = self.mesh.shape.get(self.data_axis, 1)
        rows = len(jax.tree.leaves(tree)[0])
        target = batch_sharding(self.mesh, self.data_axis if rows % size == 0 else None)
        return self._put(tree, jax.tree.map(lambda _: target, tree))

    def params(self, tree: PyTree) -> PyTree:
        if self.mesh is None:
            return tree
        model = self.model_axis if self.model_axis in self.mesh.shape else None
        return self._put(to_host(tree), param_shardings(tree, self.mesh, model_axis=model))

    def replicate(self, tree: PyTree) -> PyTree:
        if self.mesh is None:
            return tree
        return self._put(to_host(tree), jax.tree.map(lambda _: replicated(self.mesh), tree))

    def host(self, tree: PyTree) -> PyTree:
        return to_host(tree)

    def jit(self, fn, *, carry: Sequence[int], donate_argnums: Sequence[int] = ()):
        if self.mesh is None:
            return jax.jit(fn, donate_argnums=tuple(donate_argnums))
        return jit_step(fn, carry=carry, donate_argnums=donate_argnums)

    def init(self, optimizer, params: PyTree) -> PyTree:
        if self.mesh is None:
            return optimizer.init(params)
        shardings = jax.tree.map(lambda x: x.sharding, params)
        shapes = jax.eval_shape(optimizer.init, params)
        import optax
        state_shardings = optax.tree_map_params(
            optimizer, lambda _, s: s, shapes, shardings,
            transform_non_params=lambda _: replicated(self.mesh))
        return jax.jit(optimizer.init, out_shardings=state_shardings)(params)
