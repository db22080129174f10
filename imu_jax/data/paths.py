"""Where datasets live on disk, and the error raised when they are missing or broken."""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "IMU_JAX_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/imu_jax/tfds"


class DataDirError(ValueError):
    """A dataset directory is missing or unreadable; the message says how to rebuild it."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns the data directory: ``data_dir``, else ``$IMU_JAX_DATA_DIR``, else the default.

    Examples:
      >>> str(resolve_data_dir("/tmp/imu_data"))
      '/tmp/imu_data'
      >>> resolve_data_dir().name
      'tfds'
    """
    chosen = data_dir or os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return pathlib.Path(chosen).expanduser()


def rebuild_hint(dataset: str, data_dir: pathlib.Path) -> str:
    """The sentence every data error ends with: how to (re)build ``dataset`` in ``data_dir``."""
    return (
        f"Rebuild it with `imu-jax data --dataset {dataset} --data-dir {data_dir} --rebuild` "
        f"or, from Python, `imu_jax.data.build({dataset!r}, data_dir={str(data_dir)!r}, "
        f"overwrite=True)`."
    )
