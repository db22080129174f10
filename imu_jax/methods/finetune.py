"""Fine-tune: continue training all parameters on the retain set (reference point). Retain set.

Train mode (BatchNorm on batch statistics), as ``FT.py`` in the reference code.

>>> from imu_jax.methods import get_method
>>> get_method("finetune").reference, get_method("finetune").defaults["bn_mode"]
(True, 'train')
"""

from __future__ import annotations

from imu_jax.methods.base import (RETAIN_SET, Method, MethodOutput, UnlearnTask, ce_loop, require,
                                  timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults

DEFAULTS = gradient_defaults(learning_rate=1e-2, epochs=3, bn_mode="train", batch_size=128)
GRID = GRIDS["finetune"]


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    retain = xy(require(task, "retain", "finetune"))
    return timed(lambda: ce_loop(task.model, task, retain, hparams, seed))


METHOD = Method(name="finetune", needs=RETAIN_SET, summary="fine-tune on D_r", run=run,
                defaults=DEFAULTS, grid=GRID, reference=True)
