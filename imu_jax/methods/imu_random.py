"""IMU with shuffled weights (ablation). Forget set only.

As many examples as IMU keeps, chosen at random, carrying IMU's weights in random order: the same
amount and spread of weight, but no information from influence.

>>> from imu_jax.methods import get_method
>>> get_method("imu_random").needs
'forget set only'
"""

from __future__ import annotations

from imu_jax.methods import imu
from imu_jax.methods.base import FORGET_ONLY, Method
from imu_jax.methods.grids import GRIDS

METHOD = Method(
    name="imu_random",
    needs=FORGET_ONLY,
    summary="IMU's kept count and weights on random examples (shuffled-weights ablation)",
    run=imu.run_with_weighting("shuffled"),
    check=lambda hparams: imu.config_for("shuffled", hparams),
    defaults=imu.DEFAULTS,
    grid=GRIDS["imu_random"],
)
