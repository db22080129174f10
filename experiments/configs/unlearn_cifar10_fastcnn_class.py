"""CIFAR-10 (real images, JPEG image folder), class-wise forgetting on CPU, ``fastcnn``.

The CPU recipe (experiments/configs/train_cifar10_fastcnn.py) for the original and Retrain
models. Every method runs retain-free (its defaults, stopped by the rule of docs/STOPPING.md on
the validation split) on seeds 0–2. The noise floor pairs the seeds' own Retrain models
(``"noise_floor": "next_seed"``: Retrain 1 vs 0, 2 vs 1, 0 vs 2) instead of training three more
models at ~14 minutes each. No oracle tuning: the shared grid's shortest point (10 epochs, 100–200 steps) collapses the
model where the head methods forget the class in 5–6 steps (5 of 12 IMU configurations measured,
``class0/partial_imu_oracle_sweep.json``). Only the methods that do not pass over the retain set
run here; the retain-set methods (SalUn, SCRUB, l1-sparse, GradDiff, NPO+RT, fine-tuning) are in
``unlearn_cifar10_fastcnn_retain_set.py``: one retain epoch costs as much as a training epoch.
On these 2 cores JiT and SCAR were run there too, at their fixed-length defaults: under the rule
they move towards its 2,000-step cap (hours here), so they are not in this list.

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
               "simnpo", "ssd"]


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "class:0",
        "methods": FORGET_ONLY,
        "seeds": [0, 1, 2],
        "noise_floor": "next_seed",
    }
