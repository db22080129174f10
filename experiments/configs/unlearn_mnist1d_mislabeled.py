"""MNIST-1D, forget the 10% of training examples whose labels were corrupted (``mislabeled:0.1``),
2x100 MLP. The original trains on the corrupted labels; Retrain never sees the mislabelled ones.

Command:
  imu-jax run --config experiments/configs/unlearn_mnist1d_mislabeled.py \
      --out experiments/results/mnist1d_mislabeled10
Needs nothing but ``pip install``. Not run yet (run time unmeasured).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "mnist1d",
        "model": "mlp",
        "forget": "mislabeled:0.1",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
