"""Fine-tune: continue training all parameters on the retain set (reference point). Retain set.

>>> from imu_jax.methods import get_method
>>> get_method("finetune").reference
True
"""

from __future__ import annotations

from imu_jax.methods.base import (RETAIN_SET, Method, MethodOutput, UnlearnTask, gradient_loop,
                                  model_loss, require, timed, xy)

DEFAULTS = {"learning_rate": 1e-2, "epochs": 3, "batch_size": 128, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None}
GRID = {"learning_rate": (1e-2, 3e-2, 1e-1), "epochs": (1, 3, 5)}


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    retain = xy(require(task, "retain", "finetune"))

    def fit():
        loss = lambda params, state, batch: model_loss(model, params, state, batch["x"],
                                                       batch["y"])
        params, steps = gradient_loop(model, task.params, task.state, retain, loss, seed=seed,
                                      **hparams)
        return params, task.state, {"steps": steps}

    return timed(fit)


METHOD = Method(name="finetune", needs=RETAIN_SET, summary="fine-tune on D_r", run=run,
                defaults=DEFAULTS, grid=GRID, reference=True)
