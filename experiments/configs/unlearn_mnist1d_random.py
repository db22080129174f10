"""MNIST-1D, forget a random 10% of the training set, 2x100 MLP (the mnist1d package's).

The MLP fits its training data (~100%) but reaches only ~60-70% on test, so a Retrain model
classifies a random forget set about as badly as unseen data while the original gets it all
right: random forgetting is measurable here, unlike on digits.

Command:
  imu-jax run --config experiments/configs/unlearn_mnist1d_random.py \
      --out experiments/results/mnist1d_random10
Needs nothing but ``pip install``. Expected time: 8.3 min on 2 shared CPU cores (measured,
with ``--tune-methods ga,ga_head,imu``).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "mnist1d",
        "model": "mlp",
        "forget": "random:0.1",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
