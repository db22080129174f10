"""CIFAR-10, forget one class (airplane, class 0), ResNet-18 — the paper's first setting.

Original and Retrain: the paper's recipe (SGD 0.1, momentum 0.9, wd 5e-4, 182 epochs, milestones
91/136, batch 256; ``imu_jax.train.recipe("cifar10")``). Unlearning: the public code's IMU
defaults (SGD 0.01, 10 epochs, α 0.2, batch 256, constant lr), every method tuned on 1 tuning
seed over its own equal-size grid (``imu_jax.methods.grids``).

Command (needs the TFDS cifar10 files in --data-dir, or network access to download them):
  imu-jax run --config experiments/configs/unlearn_cifar10_class.py \
      --out experiments/results/cifar10_class0
Expected GPU time (one H100): ~8 ResNet-18 trainings × ~10 min (182 epochs) ≈ 1.5 h, plus
~10 min of unlearning runs. Not run offline here (no CIFAR files, CPU only).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "cifar10",
        "model": "resnet18",
        "forget": "class:0",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
