"""Digits, class-wise forgetting (the CPU stand-in for CIFAR-10 class-wise), MLP 256-256.

Command (one class):
  imu-jax run --config experiments/configs/unlearn_digits_class.py --forget class:3 \
      --out experiments/results/digits_class/class3
All ten classes, then the aggregate table:
  for k in 0 1 2 3 4 5 6 7 8 9; do imu-jax run --config experiments/configs/unlearn_digits_class.py \
      --forget class:$k --out experiments/results/digits_class/class$k --no-progress; done
  python experiments/summarize.py experiments/results/digits_class
Every method runs retain-free on the 3 reported seeds; GA, GA-head, IMU and IMU-random are also
oracle-tuned (``tune_methods``: 12-point grid × 2 tuning seeds; the full 20-method grid is run
once, for class 3, in ``unlearn_digits_class3_all.py``). The original models do not depend on
the class: copy ``class0/models/original_seed*`` into the other folders to train them once.
Expected time: see experiments/README.md (measured per class); no GPU needed.
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "forget": "class:3",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
        "tune_methods": ["ga", "ga_head", "imu", "imu_random"],
    }
