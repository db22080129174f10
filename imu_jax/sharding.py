"""Device meshes, placement of parameters and batches, and multi-host start-up.

Sharding is a property of how arrays are placed and jitted, not of the algorithm: the core
functions (:func:`imu_jax.influence_scores`, :func:`imu_jax.classifier_influence`, the optax
transforms) run unchanged on one device or on a mesh, with ``Auto`` or ``Explicit`` axes. This
module only builds the mesh and puts arrays on it:

* the forget batch is sharded over a ``data`` axis (its leading, example axis);
* parameters are replicated, or sharded FSDP-style over a ``model`` axis (each leaf along its
  largest dimension divisible by the axis size), for large heads.

Multi-host runs use JAX's own multi-controller runtime: :func:`initialize_distributed` calls
``jax.distributed.initialize`` (from arguments or the environment), each process loads only its
slice of the data (:func:`process_slice`) and :func:`shard_batch` assembles the global array with
``jax.make_array_from_process_local_data``. On CPU, gloo collectives let local processes stand in
for hosts.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "MODEL_AXIS",
    "parse_mesh",
    "make_mesh",
    "replicated",
    "batch_sharding",
    "param_shardings",
    "shard_params",
    "shard_batch",
    "process_slice",
    "local_slice",
    "to_host",
    "gather_slices",
    "initialize_distributed",
    "add_arguments",
    "mesh_from_args",
    "jit_step",
    "auto_mesh",
    "use_mesh",
    "current_mesh",
    "Placement",
]

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


def process_slice(num_examples: int, *, process_index: int | None = None,
                  process_count: int | None = None) -> slice:
    """The contiguous block of ``num_examples`` this process loads (blocks differ by ≤ 1).

    Contiguous blocks in process order match how a ``data`` axis spans the processes' devices,
    so :func:`shard_batch` can assemble them without moving data between hosts.

    Examples:
      >>> from imu_jax import sharding
      >>> [sharding.process_slice(10, process_index=p, process_count=2) for p in range(2)]
      [slice(0, 5, None), slice(5, 10, None)]
    """
    index = jax.process_index() if process_index is None else int(process_index)
    count = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} is not in [0, {count}).")
    bounds = np.linspace(0, num_examples, count + 1).round().astype(int)
    return slice(int(bounds[index]), int(bounds[index + 1]))


def local_slice(arrays: PyTree, **kwargs) -> PyTree:
    """``arrays`` (leading example axis) cut to this process's :func:`process_slice`.

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.local_slice({"y": np.arange(6)}, process_index=1, process_count=2)["y"].tolist()
      [3, 4, 5]
    """
    n = len(jax.tree.leaves(arrays)[0])
    block = process_slice(n, **kwargs)
    return jax.tree.map(lambda x: x[block], arrays)


def to_host(tree: PyTree) -> PyTree:
    """Numpy copies of (possibly multi-host sharded) arrays, identical on every process.

    Sharded arrays are first replicated with a jitted identity (an all-gather inside XLA), so
    this works even when no single process holds the whole array. Meant for small results such
    as influence scores (``[N]``), never for per-example gradients.

    Examples:
      >>> from imu_jax import sharding
      >>> x = sharding.shard_batch(np.arange(8.0), sharding.make_mesh(data=8))
      >>> sharding.to_host(x).tolist()
      [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """

    def fetch(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if not x.is_fully_replicated:
            x = jax.jit(lambda y: y, out_shardings=NamedSharding(x.sharding.mesh, P()))(x)
        return np.asarray(x.addressable_data(0))

    return jax.tree.map(fetch, tree)


def gather_slices(local: PyTree) -> PyTree:
    """Concatenates every process's host slice (leading axis) in process order, on all processes.

    The inverse of :func:`local_slice` for host-side results, e.g. per-example predictions on
    each process's slice of an evaluation set, before computing metrics. Slices may differ in
    length. With one process it returns ``local`` unchanged.

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.gather_slices({"p": np.arange(3)})["p"].tolist()
      [0, 1, 2]
    """
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    def gather(x):
        x = np.asarray(x)
        sizes = np.asarray(multihost_utils.process_allgather(np.array([len(x)]), tiled=True))
        padded = np.zeros((int(sizes.max()),) + x.shape[1:], x.dtype)
        padded[:len(x)] = x
        stacked = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
        return np.concatenate([stacked[p, :sizes[p]] for p in range(len(sizes))])

    return jax.tree.map(gather, local)


_ENV = {
    "coordinator_address": ("IMU_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("IMU_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("IMU_PROCESS_ID", "JAX_PROCESS_ID"),
}


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    cpu_collectives: str | None = "gloo",
) -> bool:
    """Starts JAX's multi-controller runtime (``jax.distributed.initialize``) when configured.

    Arguments win over the environment (``IMU_COORDINATOR_ADDRESS``, ``IMU_NUM_PROCESSES``,
    ``IMU_PROCESS_ID``, or JAX's own ``JAX_*`` names). With nothing configured it does nothing
    and returns False (single process), unless a cluster JAX auto-detects (SLURM, TPU pod) is
    present — there pass ``num_processes`` or call ``jax.distributed.initialize()`` directly.
    On CPU, ``cpu_collectives`` (default gloo) is set first so cross-process collectives work.
    Must run before any other JAX call that touches devices.

    Returns:
      True when the runtime was initialized by this call.

    Examples:
      >>> from imu_jax import sharding
      >>> sharding.initialize_distributed(num_processes=1)   # one process: nothing to start
      False
    """
    values = {"coordinator_address": coordinator_address, "num_processes": num_processes,
              "process_id": process_id}
    for key, names in _ENV.items():
        if values[key] is None:
            values[key] = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if values["coordinator_address"] is None and values["num_processes"] is None:
        return False
    if values["num_processes"] is not None and int(values["num_processes"]) == 1 and (
            values["process_id"] in (None, 0, "0")):
        return False
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=values["coordinator_address"],
        num_processes=None if values["num_processes"] is None else int(values["num_processes"]),
        process_id=None if values["process_id"] is None else int(values["process_id"]),
        local_device_ids=local_device_ids)
    return True


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


def add_arguments(parser) -> None:
    """Adds ``--mesh``, ``--mesh-axis-types`` and the multi-host flags to an ``argparse`` parser.

    Examples:
      >>> import argparse
      >>> from imu_jax import sharding
      >>> parser = argparse.ArgumentParser()
      >>> sharding.add_arguments(parser)
      >>> args = parser.parse_args(["--mesh", "data=4,model=2"])
      >>> args.mesh, args.mesh_axis_types, args.num_processes
      ('data=4,model=2', 'explicit', None)
    """
    group = parser.add_argument_group("devices and hosts")
    group.add_argument("--mesh", default=None, metavar="AXES",
                       help="device mesh, e.g. 'data=4,model=2' or 'data=-1' (default: every "
                            "device on a 'data' axis); the forget batch is sharded over 'data', "
                            "the head over 'model' (FSDP-style) if present")
    group.add_argument("--mesh-axis-types", choices=sorted(_AXIS_TYPES), default="explicit",
                       help="mesh axis types (default explicit, as jax.make_mesh)")
    group.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                       help="multi-host: address of process 0 (or $IMU_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, default=None,
                       help="multi-host: number of processes (or $IMU_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None,
                       help="multi-host: this process's index (or $IMU_PROCESS_ID)")


def mesh_from_args(args) -> Mesh:
    """Starts the multi-host runtime if configured, then builds the mesh :func:`add_arguments`
    describes."""
    initialize_distributed(getattr(args, "coordinator_address", None),
                           getattr(args, "num_processes", None), getattr(args, "process_id", None))
    return make_mesh(getattr(args, "mesh", None),
                     axis_types=getattr(args, "mesh_axis_types", "explicit"))


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
