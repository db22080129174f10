"""Per-example forgetting evaluation (issue 29), the N = 32 core of the digits class-wise
setting: the floor, doing nothing, IMU and GA-head only (32 original, 32 + 32 retrained models),
5 bootstrap resamples. The cost probe of N = 32 and the source of "how F moves with N" while the
full setting (``forgetting_score_digits_class.py``) waits in the queue.

Command:
  imu-jax forgetting-score --config experiments/configs/forgetting_score_digits_class_core.py \
      --out experiments/results/forgetting_score/digits_class3_core
Measured time: 1.7 min in a shell on 2 CPU cores shared with the experiment queue and other
sessions (load ~10); the results.md of that folder has the parts.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base(name: str) -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name(name)))


def get_config() -> dict:  # the full setting's data and models; four rows, 5 resamples
    return {**_base("forgetting_score_digits_class.py"), "bootstrap": 5,
            "methods": {"retrain_floor": 32, "original": 32, "imu": 32, "ga_head": 32}}
