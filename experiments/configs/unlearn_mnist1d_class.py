"""MNIST-1D, class-wise forgetting (all 10 classes), the 2x100 MLP of the mnist1d package.

Original and Retrain: the mnist1d recipe (Adam 1e-2, batch 100, 150 epochs; ``recipe("mnist1d",
"mlp")``). Every method runs retain-free on the 3 reported seeds; GA, GA-head and IMU are also
oracle-tuned on the 2 tuning seeds (``tune_methods``, rule of experiments/README.md). The
original models do not depend on the class: copy ``class0/models/original_seed*`` into the other
folders to train them once.

Command (one class):
  imu-jax run --config experiments/configs/unlearn_mnist1d_class.py --forget class:3 \
      --out experiments/results/mnist1d_class/class3
All ten classes, then the aggregate table:
  for k in 0 1 2 3 4 5 6 7 8 9; do imu-jax run --config \
      experiments/configs/unlearn_mnist1d_class.py --forget class:$k \
      --out experiments/results/mnist1d_class/class$k --no-progress; done
  python experiments/summarize.py experiments/results/mnist1d_class
Needs nothing but ``pip install`` (data generated locally). Expected time: 7.5–13 min a class
on 2 shared CPU cores (measured; experiments/README.md).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "mnist1d",
        "model": "mlp",
        "forget": "class:3",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
        "tune_methods": ["ga", "ga_head", "imu"],
    }
