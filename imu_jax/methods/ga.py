"""GA: gradient ascent on the forget cross-entropy, all parameters. Forget set only.

>>> from imu_jax.methods import get_method
>>> sorted(get_method("ga").grid)
['epochs', 'learning_rate']
"""

from __future__ import annotations

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, gradient_loop,
                                  model_loss, monitor_for, stop_info, timed, xy)

# The same optimizer recipe as IMU (SGD momentum 0.9, coupled decay, lr × 0.1 at 50% and 75%),
# so GA differs from GA-head only in which parameters move (and the absence of the L1 term).
DEFAULTS = {"learning_rate": 0.02, "epochs": 20, "batch_size": 256, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None,
            "milestones": (0.5, 0.75)}
GRID = {"learning_rate": (0.01, 0.02, 0.04), "epochs": (10, 15, 20, 25, 30, 40)}


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model

    def ascent_loss(params, state, batch):
        return -model_loss(model, params, state, batch["x"], batch["y"])

    monitor = monitor_for(task, "ga")

    def fit():
        params, steps = gradient_loop(model, task.params, task.state, xy(task.forget),
                                      ascent_loss, seed=seed, monitor=monitor, **hparams)
        return params, task.state, stop_info(monitor, steps)

    return timed(fit)


METHOD = Method(name="ga", needs=FORGET_ONLY, summary="gradient ascent on D_f, all parameters",
                run=run, defaults=DEFAULTS, grid=GRID)
