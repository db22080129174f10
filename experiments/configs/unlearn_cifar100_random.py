"""CIFAR-100 (100 fine labels), forget a random 10% of the training set, ResNet-18.

Command (needs the TFDS cifar100 files in --data-dir, or network access to download them):
  imu-jax run --config experiments/configs/unlearn_cifar100_random.py \
      --out experiments/results/cifar100_random10
Offline, the shared CIFAR-100 JPEGs (converted into the data dir on first use; JPEG pixels, see
../shared/data/README.md):
  imu-jax run --config experiments/configs/unlearn_cifar100_random.py \
      --dataset imagefolder:../shared/data/cifar100-jpeg.zip \
      --out experiments/results/cifar100_random10
Expected GPU time (one H100): ~1.5 h (8 ResNet-18 trainings) plus ~15 min of unlearning runs.
Not run offline here.
"""


def get_config() -> dict:
    return {
        "dataset": "cifar100",
        "model": "resnet18",
        "forget": "random:0.1",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "npo", "ssd",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100],
    }
