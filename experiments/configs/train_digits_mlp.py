"""Original model: MLP (256-256) on the embedded digits.

Command:  imu-jax train --config experiments/configs/train_digits_mlp.py --out runs/digits_mlp
Expected: ~10 s on 2 CPU cores, test accuracy ~0.97-0.98 (0.978 with seed 0).
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("digits", "mlp")
