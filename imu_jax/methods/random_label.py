"""Random-Label, two forms.

* ``random_label_forget_only`` (forget set only; this library's variant): fine-tune all
  parameters so each forget example predicts a random WRONG label, drawn once (seeded) uniformly
  among the other classes; no retain data.
* ``random_label_with_retain`` (retain-dependent reference, SalUn's RL / the IMU public code's
  ``RL.py``): forget examples get labels drawn uniformly over ALL classes, and the model is trained
  on them together with the retain set (its true labels), shuffled together.

Both train in train mode (BatchNorm on batch statistics), as ``model.train()`` in the reference.

>>> import numpy as np
>>> labels = random_wrong_labels(np.array([0, 1, 2, 0]), 3, seed=0)
>>> bool(np.all(labels != np.array([0, 1, 2, 0]))), bool(np.all((0 <= labels) & (labels < 3)))
(True, True)
"""

from __future__ import annotations

import numpy as np

from imu_jax.methods.base import (FORGET_ONLY, RETAIN_SET, Method, MethodOutput, UnlearnTask,
                                  ce_loop, require, timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults

DEFAULTS = gradient_defaults(learning_rate=1e-2, epochs=5, bn_mode="train")
WITH_RETAIN_DEFAULTS = gradient_defaults(learning_rate=1e-2, epochs=2, bn_mode="train",
                                         batch_size=128)


def random_wrong_labels(labels: np.ndarray, num_classes: int, *, seed: int) -> np.ndarray:
    """A uniformly random label different from each given one."""
    offsets = np.random.default_rng(seed).integers(1, num_classes, size=np.shape(labels))
    return ((labels + offsets) % num_classes).astype(labels.dtype)


def _class_labels(data: dict, name: str) -> None:
    if data["y"].ndim != 1:
        raise ValueError(f"{name} needs class labels [N]; sequence data is not supported.")


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    data = xy(task.forget)
    _class_labels(data, "random_label_forget_only")
    relabelled = {"x": data["x"], "y": random_wrong_labels(data["y"], task.num_classes, seed=seed)}
    return timed(lambda: ce_loop(task.model, task, relabelled, hparams, seed))


def run_with_retain(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    forget, retain = xy(task.forget), xy(require(task, "retain", "random_label_with_retain"))
    _class_labels(forget, "random_label_with_retain")
    rng = np.random.default_rng(seed)
    noisy = rng.integers(0, task.num_classes, size=forget["y"].shape).astype(forget["y"].dtype)
    mixed = {"x": np.concatenate([forget["x"], retain["x"]]),
             "y": np.concatenate([noisy, retain["y"]])}
    return timed(lambda: ce_loop(task.model, task, mixed, hparams, seed))


METHOD = Method(name="random_label_forget_only", needs=FORGET_ONLY,
                summary="fine-tune D_f alone toward random wrong labels (no retain data)",
                run=run, defaults=DEFAULTS, grid=GRIDS["random_label_forget_only"])
WITH_RETAIN = Method(name="random_label_with_retain", needs=RETAIN_SET,
                     summary="SalUn's RL: train on D_f with random labels together with D_r",
                     run=run_with_retain, defaults=WITH_RETAIN_DEFAULTS,
                     grid=GRIDS["random_label_with_retain"], reference=True)
