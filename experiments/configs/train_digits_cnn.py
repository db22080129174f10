"""Original model: small CNN (two 3x3 conv layers, avg-pool, dense 128) on the embedded digits.

Command:  imu-jax train --config experiments/configs/train_digits_cnn.py --out runs/digits_cnn
Expected: ~8 s of training (plus ~10 s start-up) on 2 CPU cores; test accuracy 0.981 with
seeds 0 and 1, 0.978 with seed 2.
Retrain reference for a class:  add ``--forget class:3 --retrain``.
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("digits", "cnn")
