"""IMU (the paper's method): influence-weighted gradient ascent on the head. Forget set only.

>>> from imu_jax.methods import get_method
>>> get_method("imu").needs
'forget set only'
"""

from __future__ import annotations

import dataclasses

from imu_jax.methods.base import FORGET_ONLY, Method, MethodOutput, UnlearnTask
from imu_jax.methods.grids import GRIDS
from imu_jax.unlearning.config import UnlearnConfig
from imu_jax.unlearning.loop import unlearn


# Hyperparameters of the IMU family exposed to tuning and the CLI; the rest keep their defaults.
TUNABLE = ("learning_rate", "epochs", "top_fraction", "alpha", "batch_size", "influence_mode",
           "update_batch_stats", "head", "optimizer", "max_steps", "weight_decay", "momentum",
           "milestones")
DEFAULTS = {name: getattr(UnlearnConfig(), name) for name in TUNABLE}
GRID = GRIDS["imu"]  # lr × optimizer steps, the grid every method shares (imu_jax.methods.grids)


def config_for(weighting: str, hparams: dict) -> UnlearnConfig:
    """The :class:`UnlearnConfig` of these hyperparameters (its checks raise ``ValueError``).

    >>> config_for("influence", {"top_fraction": 0.1}).top_fraction
    0.1
    """
    hparams = dict(hparams)
    if "milestones" in hparams:  # JSON round trips turn the tuple into a list
        hparams["milestones"] = tuple(hparams["milestones"])
    return UnlearnConfig(weighting=weighting, **hparams)


def run_with_weighting(weighting: str):
    """A ``run`` function for the IMU family with a fixed weighting rule."""

    def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
        config = config_for(weighting, hparams)
        monitored = task.stop_rule is not None
        params, report = unlearn(task.model, task.params, task.forget, config, state=task.state,
                                 seed=seed, on_step=task.on_step,
                                 held_out=task.held_out if monitored else None,
                                 stop_rule=task.stop_rule, progress=task.progress)
        info = report.to_dict()
        info.update(info.pop("stopping") or {})  # stop_reason, curve, ... at the top, as in GA
        info["bn_mode"] = ("frozen, running stats follow D_f" if config.update_batch_stats
                           else "frozen")
        return MethodOutput(params=params, state=report.state, seconds=report.seconds, info=info,
                            compile_seconds=report.compile_seconds)

    return run


METHOD = Method(
    name="imu",
    needs=FORGET_ONLY,
    summary="influence-weighted ascent on the head (top negative-influence examples)",
    run=run_with_weighting("influence"),
    defaults=DEFAULTS,
    grid=GRID,
    check=lambda hparams: config_for("influence", hparams),
)

PER_BATCH = dataclasses.replace(
    METHOD, name="imu_batch", summary="IMU with weights recomputed inside each mini-batch",
    defaults={**DEFAULTS, "influence_mode": "per_batch"}, grid=GRIDS["imu_batch"])
