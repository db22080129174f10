"""GA: gradient ascent on the forget cross-entropy, all parameters. Forget set only.

BatchNorm in train mode during the update, as in the reference code (SalUn's / the IMU public
code's ``GA.py`` call ``model.train()``); ``bn_mode="frozen"`` keeps inference mode.

>>> from imu_jax.methods import get_method
>>> sorted(get_method("ga").grid), get_method("ga").defaults["milestones"]
(['learning_rate', 'max_steps'], ())
"""

from __future__ import annotations

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, ce_loop, timed,
                                  xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults

# The same optimizer recipe as IMU (SGD momentum 0.9, coupled decay, constant lr), so GA differs
# from GA-head in which parameters move (and the absence of the L1 term) and in BatchNorm mode.
DEFAULTS = gradient_defaults(learning_rate=0.02, epochs=20, bn_mode="train")
GRID = GRIDS["ga"]


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    return timed(lambda: ce_loop(task.model, task, xy(task.forget), hparams, seed, sign=-1.0))


METHOD = Method(name="ga", needs=FORGET_ONLY, summary="gradient ascent on D_f, all parameters",
                run=run, defaults=DEFAULTS, grid=GRID)
