"""Optional dependencies: the core needs only jax, flax, optax, orbax, chex, numpy and tqdm;
datasets need the ``[data]`` extra and the lab (plots, the SVC attack) ``[experiments]``.

:func:`require` imports an optional module or raises :class:`MissingExtraError`, one line that
names the ``pip install`` adding it (the ``imu-jax`` command prints it and exits with status 2).

Examples:
  >>> require("json", "data", "a test").__name__
  'json'
  >>> require("no_such_module_xyz", "data", "image folders")
  Traceback (most recent call last):
  ...
  imu_jax._extras.MissingExtraError: no_such_module_xyz is not installed (needed for image folders): pip install 'imu-jax[data]'
"""

from __future__ import annotations

import importlib
import types


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the ``pip install`` that adds it."""


def require(module: str, extra: str, purpose: str) -> types.ModuleType:
    """``module``, imported; or :class:`MissingExtraError` naming ``pip install 'imu-jax[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if isinstance(err, MissingExtraError):
            raise
        package = module.split(".")[0]
        raise MissingExtraError(f"{package} is not installed (needed for {purpose}): "
                                f"pip install 'imu-jax[{extra}]'") from err
