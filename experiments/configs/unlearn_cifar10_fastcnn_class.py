"""CIFAR-10 (real images, JPEG image folder), class-wise forgetting on CPU, ``fastcnn``.

The CPU recipe (experiments/configs/train_cifar10_fastcnn.py) for the original and Retrain
models. Every method runs retain-free (its defaults, stopped by the rule of docs/STOPPING.md);
IMU is also oracle-tuned on 1 tuning seed (``tune_methods``; the grid of any other method costs
tens of CPU-minutes here). Reported on 2 seeds. Only the methods that do not pass over the retain
set run here: one retain epoch costs as much as a training epoch on these 2 cores (SalUn, SCRUB,
l1-sparse, fine-tuning, GradDiff and NPO+RT are compared on digits and MNIST-1D).

Class-wise for 2 classes, once per class (airplane = 0, cat = 3); the original models do not
depend on the class, so copy them into the second folder first:
  for k in 0 3; do imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_class.py \
      --forget class:$k --out experiments/results/cifar10_fastcnn_class/class$k --no-progress; done
  python experiments/summarize.py experiments/results/cifar10_fastcnn_class
The data is read from ../shared/data/cifar10-jpeg.zip (any CIFAR-10 image folder works: pass
``--dataset imagefolder:PATH``); it is converted once into the data dir (~1 CPU-minute).
Expected time: see experiments/README.md (CIFAR-10) for what was measured.
"""

FORGET_ONLY = ["retrain", "ga", "ga_head", "imu", "imu_random", "imu_batch",
               "random_label_forget_only", "boundary_shrink", "boundary_shrink_runner_up", "npo",
               "simnpo", "ssd", "jit", "scar"]


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "class:0",
        "methods": FORGET_ONLY,
        "seeds": [0, 1],
        "tune_seeds": [100],
        "tune_methods": ["imu"],
    }
