"""The unlearning loop a user calls, and the pieces it is made of.

Data flows one way: :mod:`~imu_jax.unlearning.losses` (inputs, labels, per-example losses) →
:mod:`~imu_jax.unlearning.selection` (influence, with the closed form's compiled program in
:mod:`~imu_jax.unlearning.closed_form`; kept examples and weights) →
:mod:`~imu_jax.unlearning.loop` (:func:`unlearn`: jitted head-only ascent) ← the stopping rule
(:mod:`~imu_jax.unlearning.stopping`, applied by :mod:`~imu_jax.unlearning.monitor`), which the
loop receives as a value and which never imports the loop. :mod:`~imu_jax.unlearning.steps` is the
sharded step loop for users who write their own; :mod:`~imu_jax.unlearning.run_checkpoint` and
:mod:`~imu_jax.unlearning.loop_checkpoint` save and resume runs with Orbax.
"""

from imu_jax.unlearning.config import UnlearnConfig, UnlearnReport
from imu_jax.unlearning.loop import unlearn
from imu_jax.unlearning.monitor import Monitor
from imu_jax.unlearning.stopping import DivergenceWarning, StopRule, membership_auc


__all__ = ["DivergenceWarning", "LoopCheckpoint", "Monitor", "RunCheckpointer", "StopRule",
           "UnlearnConfig", "UnlearnReport", "membership_auc", "unlearn", "use_run_checkpoints"]

_CHECKPOINTS = {"LoopCheckpoint": "loop_checkpoint", "use_run_checkpoints": "loop_checkpoint",
                "RunCheckpointer": "run_checkpoint"}


def __getattr__(name: str):
    """The run checkpoints load Orbax, so they are imported on first use, not with the package."""
    if name in _CHECKPOINTS:
        import importlib

        return getattr(importlib.import_module(f"imu_jax.unlearning.{_CHECKPOINTS[name]}"), name)
    raise AttributeError(f"module 'imu_jax.unlearning' has no attribute {name!r}")
