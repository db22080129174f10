"""MNIST-1D, forget the 10% of training examples whose labels were corrupted (``mislabeled:0.1``),
2x100 MLP. The original trains on the corrupted labels; Retrain never sees the mislabelled ones.
Every method runs retain-free on the 3 reported seeds; GA, GA-head and IMU are also oracle-tuned
on the 2 tuning seeds (``tune_methods``, as the other MNIST-1D sweeps, to fit the CPU budget).

Command:
  imu-jax run --config experiments/configs/unlearn_mnist1d_mislabeled.py \
      --out experiments/results/mnist1d_mislabeled10
Needs nothing but ``pip install``. Expected time: 13.3 min on 2 shared CPU cores (measured).
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
        "tune_methods": ["ga", "ga_head", "imu"],
    }
