"""CIFAR-100 (real images, JPEG image folder), forget a random 10% on CPU, ``fastcnn``. The models
train on the 100 fine classes.

Everything else as ``unlearn_cifar100_superclass.py`` (recipe, methods retain-free, seeds 0-2).
The original model of seed 0 is the one ``train_cifar100_fastcnn.py`` trains (same data and
recipe): copy it in as ``models/original_seed0`` to skip its training.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar100_random.py \
      --out experiments/results/cifar100_random10 --no-progress
The data is read from ../shared/data/cifar100-jpeg.zip; JPEG pixels, see ../shared/data/README.md.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base() -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name("unlearn_cifar100_superclass.py")))


def get_config() -> dict:
    return {**_base(), "forget": "random:0.1"}
