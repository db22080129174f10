"""CIFAR-100 (real images), at fixed length on CPU: the retain-set methods, JiT, SCAR.

The companion of ``unlearn_cifar100_{superclass,subclass,random}.py`` (same data, recipe and
models: copy that setting's ``models/*_seed*`` folders into the output folder first), as
``unlearn_cifar10_fastcnn_retain_set.py`` is for CIFAR-10 and with its method list. These run
their authors' fixed-length defaults (``--fixed-length``): one pass over the retain set costs a
training epoch on 2 CPU cores, and JiT and SCAR move the forget accuracy so slowly that under the
retain-free rule they run towards its cap. Seeds 0-2 (the issue's protocol); on 2 cores each
retain-set method costs about a training run a seed, so ``--seeds 0`` first is a fair start.

Command (superclass vehicles_2; for the others add ``--forget subclass:rocket`` or
``--forget random:0.1`` and the matching ``--out``):
  mkdir -p experiments/results/cifar100_retain_set/superclass_vehicles_2/models
  cp -r experiments/results/cifar100_superclass_vehicles_2/models/* \
      experiments/results/cifar100_retain_set/superclass_vehicles_2/models/
  imu-jax run --config experiments/configs/unlearn_cifar100_retain_set.py --fixed-length \
      --out experiments/results/cifar100_retain_set/superclass_vehicles_2 --no-progress
The data is read from ../shared/data/cifar100-jpeg.zip; JPEG pixels, see ../shared/data/README.md.
"""

import pathlib

from imu_jax.lab.arguments import load_config_module


def _sibling(name: str):
    return load_config_module(str(pathlib.Path(__file__).with_name(name + ".py")))


def get_config() -> dict:
    return {**_sibling("unlearn_cifar100_superclass").get_config(),
            "methods": list(_sibling("unlearn_cifar10_fastcnn_retain_set").RETAIN_SET),
            "seeds": [0, 1, 2]}
