"""CIFAR-100 (20 coarse labels), forget one superclass (vehicles 1, coarse class 18), ResNet-18.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar100_superclass.py \
      --out experiments/results/cifar100_superclass18
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~10 min of unlearning runs.
Not run offline here.
"""


def get_config() -> dict:
    return {
        "dataset": "cifar100",
        "model": "resnet18",
        "forget": "superclass:18",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "npo", "ssd",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
