"""Random-Label: fine-tune all parameters so forget examples predict a random wrong label.

Forget set only. Each example's new label is drawn once (seeded), uniformly among the other
classes.

>>> import numpy as np
>>> labels = random_wrong_labels(np.array([0, 1, 2, 0]), 3, seed=0)
>>> bool(np.all(labels != np.array([0, 1, 2, 0]))), bool(np.all((0 <= labels) & (labels < 3)))
(True, True)
"""

from __future__ import annotations

import numpy as np

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, gradient_loop,
                                  model_loss, monitor_for, stop_info, timed, xy)

DEFAULTS = {"learning_rate": 1e-2, "epochs": 5, "batch_size": 256, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None}
GRID = {"learning_rate": (3e-3, 1e-2, 3e-2), "epochs": (2, 5, 10, 15, 20, 30)}


def random_wrong_labels(labels: np.ndarray, num_classes: int, *, seed: int) -> np.ndarray:
    """A uniformly random label different from each given one."""
    offsets = np.random.default_rng(seed).integers(1, num_classes, size=np.shape(labels))
    return ((labels + offsets) % num_classes).astype(labels.dtype)


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    data = xy(task.forget)
    if data["y"].ndim != 1:
        raise ValueError("random_label needs class labels [N]; sequence data is not supported.")

    monitor = monitor_for(task, "random_label")

    def fit():
        relabelled = {"x": data["x"], "y": random_wrong_labels(data["y"], task.num_classes,
                                                               seed=seed)}
        loss = lambda params, state, batch: model_loss(model, params, state, batch["x"],
                                                       batch["y"])
        params, steps = gradient_loop(model, task.params, task.state, relabelled, loss,
                                      seed=seed, monitor=monitor, **hparams)
        return params, task.state, stop_info(monitor, steps)

    return timed(fit)


METHOD = Method(name="random_label", needs=FORGET_ONLY,
                summary="fine-tune D_f toward random wrong labels", run=run, defaults=DEFAULTS,
                grid=GRID)
