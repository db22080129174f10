"""Multi-host runs: ``jax.distributed`` start-up, each process's slice of the data, and gathering
sharded arrays back to the host.

Examples use eight devices; on a CPU, fake them before JAX starts (a fresh session):

  >>> import os
  >>> os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from imu_jax.sharding.mesh import PyTree


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
