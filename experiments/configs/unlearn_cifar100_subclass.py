"""CIFAR-100 (20 coarse labels), forget one fine class (rocket, fine 69, in vehicles 2); retain
and test are the other 4 fine classes of that superclass, Retrain trains on all but the rocket.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar100_subclass.py \
      --out experiments/results/cifar100_subclass69
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~10 min of unlearning runs.
Not run offline here.
"""


def get_config() -> dict:
    return {
        "dataset": "cifar100",
        "model": "resnet18",
        "forget": "subclass:69",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "npo", "ssd",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
