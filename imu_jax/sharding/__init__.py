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

Modules: :mod:`~imu_jax.sharding.mesh` (meshes, placing parameters and batches),
:mod:`~imu_jax.sharding.placement` (jitted steps that keep their placement, :class:`Placement`),
:mod:`~imu_jax.sharding.hosts` (multi-host start-up and data slices),
:mod:`~imu_jax.sharding.flags` (command-line flags).
"""

from imu_jax.sharding.flags import add_arguments, mesh_from_args
from imu_jax.sharding.hosts import (gather_slices, initialize_distributed, local_slice,
                                    process_slice, to_host)
from imu_jax.sharding.mesh import (DATA_AXIS, MODEL_AXIS, auto_mesh, batch_sharding, current_mesh,
                                   make_mesh, param_shardings, parse_mesh, replicated, shard_batch,
                                   shard_params, use_mesh)
from imu_jax.sharding.placement import Placement, jit_step


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
