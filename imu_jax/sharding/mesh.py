"""Device meshes and the placement of parameters and batches on them (``NamedSharding``).

Examples use eight devices; on a CPU, fake them before JAX starts (a fresh session):

  >>> import os
  >>> os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


PyTree = Any


DATA_AXIS = "data"


MODEL_AXIS = "model"


_AXIS_TYPES = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}


def parse_mesh(spec: str | Mapping[str, int] | None) -> dict[str, int]:
    """Parses ``"data=4,model=2"`` into ``{"data": 4, "model": 2}`` (order kept; ``-1`` = fill).

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.parse_mesh("data=4, model=2")
      {'data': 4, 'model': 2}
      >>> sharding.parse_mesh("data=-1")
      {'data': -1}
    """
    if spec is None or spec == "":
        return {DATA_AXIS: -1}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(-?\d+)\s*", part)
            if not match:
                raise ValueError(
                    f"cannot parse mesh spec {spec!r}: expected 'name=size,...' such as "
                    "'data=4,model=2' (size -1 takes the remaining devices).")
            items.append((match.group(1), int(match.group(2))))
    axes: dict[str, int] = {}
    for name, size in items:
        if name in axes:
            raise ValueError(f"mesh axis {name!r} appears twice in {spec!r}.")
        if size == 0 or size < -1:
            raise ValueError(f"mesh axis {name!r} has size {size}; use a positive size or -1.")
        axes[str(name)] = int(size)
    if sum(size == -1 for size in axes.values()) > 1:
        raise ValueError(f"at most one mesh axis may be -1 in {spec!r}.")
    return axes


def make_mesh(
    spec: str | Mapping[str, int] | None = None,
    *,
    axis_types: str | AxisType = "explicit",
    devices: Sequence[jax.Device] | None = None,
    **axes: int,
) -> Mesh:
    """A mesh over the available devices: ``make_mesh("data=4,model=2")``, ``make_mesh(data=-1)``.

    A size of ``-1`` takes the devices the other axes leave; the sizes must multiply to the
    number of devices (all of them, across processes, unless ``devices`` is given). Built with
    ``jax.make_mesh``, so devices are ordered for the hardware's topology.

    Args:
      spec: ``"name=size,..."`` or a mapping; ``None`` (and no ``axes``) means ``data=-1``.
      axis_types: ``"explicit"`` (JAX's default: shardings are part of the array types) or
        ``"auto"`` (the compiler propagates shardings), or a ``jax.sharding.AxisType``.
      devices: devices to use; default ``jax.devices()``.
      **axes: axis sizes as keywords, instead of ``spec``.

    Examples:
      >>> from imu_jax import sharding
      >>> mesh = sharding.make_mesh("data=-1,model=2")   # 8 fake CPU devices in the tests
      >>> dict(mesh.shape)
      {'data': 4, 'model': 2}
      >>> sharding.make_mesh(data=1, devices=jax.devices()[:1], axis_types="auto").axis_types
      (Auto,)
    """
    if spec is not None and axes:
        raise ValueError("give the mesh either as a spec string/mapping or as keywords, not both.")
    sizes = parse_mesh(spec if spec is not None else (axes or None))
    devices = list(jax.devices() if devices is None else devices)
    known = math.prod(size for size in sizes.values() if size != -1)
    if -1 in sizes.values():
        if len(devices) % known:
            raise ValueError(
                f"mesh {sizes} cannot fill {len(devices)} devices: {len(devices)} is not a "
                f"multiple of {known}.")
        sizes = {name: (len(devices) // known if size == -1 else size)
                 for name, size in sizes.items()}
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(
            f"mesh {sizes} needs {math.prod(sizes.values())} devices but {len(devices)} are "
            f"available ({devices[0].platform}); use -1 for one axis to fill the rest.")
    if isinstance(axis_types, str):
        if axis_types.lower() not in _AXIS_TYPES:
            raise ValueError(f"axis_types must be 'explicit' or 'auto', got {axis_types!r}.")
        axis_types = _AXIS_TYPES[axis_types.lower()]
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes), (axis_types,) * len(sizes),
                         devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """A sharding that puts a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str | tuple[str, ...] | None = DATA_AXIS) -> NamedSharding:
    """Shards the leading (example) axis over ``axis`` (default ``"data"``; ``None`` replicates)."""
    if axis is not None:
        for name in (axis if isinstance(axis, tuple) else (axis,)):
            if name not in mesh.shape:
                raise ValueError(f"mesh has no axis {name!r}; its axes are {tuple(mesh.shape)}.")
    return NamedSharding(mesh, P(axis))


def param_shardings(params: PyTree, mesh: Mesh, *, model_axis: str | None = MODEL_AXIS,
                    min_size: int = 0) -> PyTree:
    """Shardings for ``params``: FSDP-style over ``model_axis``, else replicated.

    Each leaf with at least ``min_size`` elements is sharded along its last dimension when the
    ``model_axis`` size divides it (a dense kernel's output dimension, so ``x @ kernel`` contracts
    an unsharded dimension), else along its largest dimension the size divides; other leaves
    (and every leaf when the mesh has no such axis, or it has size 1) are replicated. Works on
    arrays or ``jax.ShapeDtypeStruct`` leaves.

    Examples:
      >>> from imu_jax import sharding
      >>> mesh = sharding.make_mesh("data=4,model=2")
      >>> head = {"kernel": np.zeros((16, 10)), "bias": np.zeros(10)}
      >>> {k: s.spec for k, s in sharding.param_shardings(head, mesh).items()}
      {'bias': P('model',), 'kernel': P(None, 'model')}
    """
    size = mesh.shape.get(model_axis, 1) if model_axis else 1

    def place(leaf):
        shape = tuple(np.shape(leaf))
        if size <= 1 or not shape or math.prod(shape) < min_size:
            return replicated(mesh)
        candidates = [d for d in range(len(shape)) if shape[d] % size == 0]
        if not candidates:
            return replicated(mesh)
        dim = candidates[-1] if candidates[-1] == len(shape) - 1 else max(
            candidates, key=lambda d: (shape[d], d))
        return NamedSharding(mesh, P(*([None] * dim + [model_axis])))

    return jax.tree.map(place, params)


def shard_params(params: PyTree, mesh: Mesh, *, model_axis: str | None = MODEL_AXIS,
                 min_size: int = 0) -> PyTree:
    """Places ``params`` on ``mesh`` with :func:`param_shardings` (host values must be the same
    on every process).

    Examples:
      >>> from imu_jax import sharding
      >>> mesh = sharding.make_mesh("data=4,model=2")
      >>> head = sharding.shard_params({"kernel": np.ones((3, 4))}, mesh)
      >>> head["kernel"].sharding.spec, head["kernel"].addressable_shards[0].data.shape
      (P(None, 'model'), (3, 2))
    """
    shardings = param_shardings(params, mesh, model_axis=model_axis, min_size=min_size)
    if jax.process_count() == 1:
        return jax.device_put(params, shardings)
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx: np.asarray(x)[idx]),
        params, shardings)


def shard_batch(batch: PyTree, mesh: Mesh, axis: str | tuple[str, ...] | None = DATA_AXIS, *,
                process_local: bool | None = None) -> PyTree:
    """Puts a batch on ``mesh`` with its example axis sharded over ``axis``.

    With one process ``batch`` is the whole batch. With several (``process_local`` defaults to
    ``jax.process_count() > 1``), each process passes only ITS slice (see :func:`process_slice`)
    and the global array is assembled with ``jax.make_array_from_process_local_data``; the global
    size is the sum of the slices.

    Examples:
      >>> from imu_jax import sharding
      >>> mesh = sharding.make_mesh(data=8)
      >>> x = sharding.shard_batch({"x": np.zeros((16, 3))}, mesh)["x"]
      >>> x.sharding.spec, x.addressable_shards[0].data.shape
      (P('data',), (2, 3))
    """
    sharding = batch_sharding(mesh, axis)
    if process_local is None:
        process_local = jax.process_count() > 1
    if process_local:
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda x: _from_full_host_copy(x, sharding), batch)


def _from_full_host_copy(x, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full (each keeps its shards)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def auto_mesh(mesh: Mesh) -> Mesh:
    """The same devices and axes with ``Auto`` axis types (for model code not written for
    explicit sharding: the compiler then propagates shardings through it).

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.auto_mesh(sharding.make_mesh(data=8)).axis_types
      (Auto,)
    """
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


_CURRENT_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "imu_jax_mesh", default=None)


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None):
    """Makes ``mesh`` the mesh of imu-jax's high-level loops (``imu_jax.unlearn``) inside the block.

    Unlike ``jax.set_mesh`` it changes nothing for other code: jitted functions elsewhere keep
    running on their default device. ``current_mesh()`` reads it.

    Examples:
      >>> from imu_jax import sharding
      >>> with sharding.use_mesh(sharding.make_mesh(data=8)):
      ...   dict(sharding.current_mesh().shape)
      {'data': 8}
      >>> sharding.current_mesh() is None
      True
    """
    token = _CURRENT_MESH.set(mesh)
    try:
        yield mesh
    finally:
        _CURRENT_MESH.reset(token)


def current_mesh() -> Mesh | None:
    """The mesh set by :func:`use_mesh`, or ``None``.

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.current_mesh() is None
      True
    """
    return _CURRENT_MESH.get()
