"""CIFAR-10, forget a random 10% of the training set, ResNet-18 (the paper's second setting).

Command:
  imu-jax run --config experiments/configs/unlearn_cifar10_random.py \
      --out experiments/results/cifar10_random10
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~15 min of unlearning runs.
Not run offline here.
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "cifar10",
        "model": "resnet18",
        "forget": "random:0.1",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
