"""CIFAR-100 (20 coarse labels), forget one fine class (rocket, fine 69, in vehicles_2;
``subclass:rocket`` = ``subclass:69``); retain and test are the other 4 fine classes of that
superclass (lawn_mower, streetcar, tank, tractor), Retrain trains on all but the rocket.

Command (needs the TFDS cifar100 files in --data-dir, or network access to download them):
  imu-jax run --config experiments/configs/unlearn_cifar100_subclass.py \
      --out experiments/results/cifar100_subclass_rocket
Offline, the shared CIFAR-100 JPEGs (their coarse_labels.json gives the same fine and superclass
ids; converted into the data dir on first use; JPEG pixels, see ../shared/data/README.md):
  imu-jax run --config experiments/configs/unlearn_cifar100_subclass.py \
      --dataset imagefolder:../shared/data/cifar100-jpeg.zip \
      --out experiments/results/cifar100_subclass_rocket
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~10 min of unlearning runs.
Not run offline here.
"""


def get_config() -> dict:
    return {
        "dataset": "cifar100",
        "model": "resnet18",
        "forget": "subclass:rocket",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "npo", "ssd",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
