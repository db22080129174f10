"""CIFAR-100 (real images, JPEG image folder), forget one superclass on CPU, ``fastcnn``:
vehicles_2 (lawn_mower, rocket, streetcar, tank, tractor; ``superclass:vehicles_2`` =
``superclass:19``). The models train on the 20 superclasses (CIFAR-20;
the paper's public code trains on the fine labels: docs/DEVIATIONS.md).

Original and Retrain: the CPU recipe of ``train_cifar100_fastcnn.py`` (its docstring gives the
measured accuracy and cost). Every method that does not pass over the retain set runs retain-free
(its defaults, stopped by the rule of docs/STOPPING.md), seeds 0-2, the noise floor from the
seeds' own Retrain models, no oracle tuning, as for
CIFAR-10 (``unlearn_cifar10_fastcnn_class.py``, whose method list this shares); the retain-set
methods are in ``unlearn_cifar100_retain_set.py`` (``--fixed-length``).

Command:
  imu-jax run --config experiments/configs/unlearn_cifar100_superclass.py \
      --out experiments/results/cifar100_superclass_vehicles_2 --no-progress
  python experiments/summarize.py experiments/results/cifar100_superclass_vehicles_2
Measured 2026-12-07 (2 cores, the experiment queue, a low-priority test suite beside it for half
an hour): 1 h 41 min in all; six models of 12.6-14 minutes (originals 63.6 +- 0.5 % test accuracy
on the other 19 superclasses, Retrains 64.9 +- 0.1 %), then the methods in ~16 minutes.
The original models (20 superclasses, the whole training set) are the subclass setting's too:
copy ``models/original_seed*`` into ``experiments/results/cifar100_subclass_rocket/models/``
before running that one. The data is read from ../shared/data/cifar100-jpeg.zip (converted into
the data dir on first use, ~1 CPU-minute); JPEG pixels, see ../shared/data/README.md.
The paper's ResNet-18 (GPU) on the same folder: ``imu-jax run --dataset
imagefolder:../shared/data/cifar100-jpeg.zip --model resnet18 --forget superclass:vehicles_2
--seeds 0,1,2 --out ...`` (recipe ``imu_jax.train.recipe("imagefolder:...", "resnet18")``).
"""

import pathlib

from imu_jax.lab.arguments import load_config_module


def _sibling(name: str):
    return load_config_module(str(pathlib.Path(__file__).with_name(name + ".py")))


def get_config() -> dict:
    train = _sibling("train_cifar100_fastcnn").get_config()
    return {
        "dataset": train.pop("dataset"),
        "model": train.pop("model"),
        "forget": "superclass:vehicles_2",
        "methods": list(_sibling("unlearn_cifar10_fastcnn_class").FORGET_ONLY),
        "seeds": [0, 1, 2],
        "noise_floor": "next_seed",  # Retrain 1 vs 0, 2 vs 1, 0 vs 2: no extra model
        "train_config": train,
    }
