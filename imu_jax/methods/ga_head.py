"""GA-head (ablation): IMU's optimizer on the head with uniform weights over all of D_f.

Forget set only. Identical to IMU except that every forget example gets weight 1, so comparing the
two isolates what the influence selection and weighting add.

>>> from imu_jax.methods import get_method
>>> get_method("ga_head").defaults["learning_rate"]
0.01
"""

from __future__ import annotations

from imu_jax.methods import imu
from imu_jax.methods.base import FORGET_ONLY, Method
from imu_jax.methods.grids import GRIDS

METHOD = Method(
    name="ga_head",
    needs=FORGET_ONLY,
    summary="gradient ascent on the head, uniform weights (IMU without influence)",
    run=imu.run_with_weighting("uniform"),
    check=lambda hparams: imu.config_for("uniform", hparams),
    defaults=imu.DEFAULTS,
    grid=GRIDS["ga_head"],
)
