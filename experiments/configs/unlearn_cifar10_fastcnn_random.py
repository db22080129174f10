"""CIFAR-10 (real images, JPEG image folder), forget a random 10% on CPU, ``fastcnn``.

The CPU recipe (experiments/configs/train_cifar10_fastcnn.py) for the original and Retrain
models; every method tuned on 1 tuning seed, reported on 2 seeds.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_random.py \
      --out experiments/results/cifar10_fastcnn_random10
The data is read from ../shared/data/cifar10-jpeg.zip (or ``--dataset imagefolder:PATH``).
Cost: 6 trainings of the CPU recipe plus the methods' grids. Not run yet.
"""


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "random:0.1",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random",
                    "random_label", "boundary_shrink", "npo", "ssd"],
        "seeds": [0, 1],
        "tune_seeds": [100],
    }
