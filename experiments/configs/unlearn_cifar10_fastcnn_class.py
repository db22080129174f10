"""CIFAR-10 (real images, JPEG image folder), class-wise forgetting on CPU, ``fastcnn``.

The CPU recipe (experiments/configs/train_cifar10_fastcnn.py) for the original and Retrain
models; every method tuned on 1 tuning seed, reported on 2 seeds. Class-wise for 2 classes: run
it once per class (airplane = 0, cat = 3):
  for k in 0 3; do imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_class.py \
      --forget class:$k --out experiments/results/cifar10_fastcnn_class/class$k --no-progress; done
  python experiments/summarize.py experiments/results/cifar10_fastcnn_class
The data is read from ../shared/data/cifar10-jpeg.zip (any CIFAR-10 image folder works: pass
``--dataset imagefolder:PATH``); it is converted once into the data dir (~1 CPU-minute).
Cost: 3 seeds x (original + Retrain) = 6 trainings of the CPU recipe per class, plus the
methods' grids. Not run yet (the 2 CPU cores were shared by ~7 jobs when it was written).
"""


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "class:0",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random",
                    "random_label", "boundary_shrink", "npo", "ssd"],
        "seeds": [0, 1],
        "tune_seeds": [100],
    }
