"""CIFAR-100 (20 coarse labels), forget one superclass (vehicles_2: lawn_mower, rocket, streetcar,
tank, tractor; coarse class 19, ``superclass:vehicles_2`` = ``superclass:19``), ResNet-18.

Command (needs the TFDS cifar100 files in --data-dir, or network access to download them):
  imu-jax run --config experiments/configs/unlearn_cifar100_superclass.py \
      --out experiments/results/cifar100_superclass_vehicles_2
Offline, the shared CIFAR-100 JPEGs (their coarse_labels.json gives the same superclass ids;
converted into the data dir on first use; JPEG pixels, see ../shared/data/README.md):
  imu-jax run --config experiments/configs/unlearn_cifar100_superclass.py \
      --dataset imagefolder:../shared/data/cifar100-jpeg.zip \
      --out experiments/results/cifar100_superclass_vehicles_2
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~10 min of unlearning runs.
Not run offline here.
"""


def get_config() -> dict:
    return {
        "dataset": "cifar100",
        "model": "resnet18",
        "forget": "superclass:vehicles_2",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "npo", "ssd",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
