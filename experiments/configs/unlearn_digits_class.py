"""Digits, class-wise forgetting (the CPU stand-in for CIFAR-10 class-wise), MLP 256-256.

Command (one class):
  imu-jax run --config experiments/configs/unlearn_digits_class.py --forget class:3 \
      --out experiments/results/digits_class/class3
All ten classes, then the aggregate table:
  for k in 0 1 2 3 4 5 6 7 8 9; do imu-jax run --config experiments/configs/unlearn_digits_class.py \
      --forget class:$k --out experiments/results/digits_class/class$k --no-progress; done
  python experiments/summarize.py experiments/results/digits_class
Expected time: ~2-3 min per class on 2 CPU cores (10 small models, 5 methods × 12-point grid × 2
tuning seeds, then 3 reported seeds); no GPU needed.
"""


def get_config() -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "forget": "class:3",
        "methods": ["retrain", "ga", "ga_head", "imu", "imu_random"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
