"""CIFAR-10 (real images, JPEG image folder), forget a random 10% on CPU, ``fastcnn``.

Everything as ``unlearn_cifar10_fastcnn_class.py`` (same methods, seeds, retain-free rule, no
oracle tuning) except the forget set. The original models are the class-wise
run's: copy ``models/original_seed*`` from there to skip their training.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_random.py \
      --out experiments/results/cifar10_fastcnn_random10
The data is read from ../shared/data/cifar10-jpeg.zip (or ``--dataset imagefolder:PATH``).
Expected time: see experiments/README.md (CIFAR-10) for what was measured.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base() -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name("unlearn_cifar10_fastcnn_class.py")))


def get_config() -> dict:
    return {**_base(), "forget": "random:0.1"}
