"""Retrain: train from scratch on the retain set with the original recipe (the gold standard).

Retain set. ``task.retrain_fn(seed)`` does the training (the experiment runner passes
``imu_jax.train.train_model(..., retrain=True)`` and caches the result).

>>> from imu_jax.methods import get_method
>>> get_method("retrain").grid
{}
"""

from __future__ import annotations

from imu_jax.methods.base import RETAIN_SET, Method, MethodOutput, UnlearnTask, require, timed


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    del hparams
    retrain_fn = require(task, "retrain_fn", "retrain")
    return timed(lambda: (*retrain_fn(seed), {}))


METHOD = Method(name="retrain", needs=RETAIN_SET, summary="train on D_r from scratch",
                run=run, reference=True)
