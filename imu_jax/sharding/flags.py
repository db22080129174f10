"""Command-line flags for meshes and hosts: `add_arguments` adds them to a parser, `mesh_from_args`
builds the mesh they describe (starting the multi-host runtime first). Used by `imu-jax` and by
users' own scripts."""

from __future__ import annotations

from jax.sharding import Mesh

from imu_jax.sharding.hosts import initialize_distributed
from imu_jax.sharding.mesh import _AXIS_TYPES, make_mesh


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
