"""CIFAR-100 (real images, JPEG image folder), forget one fine class on CPU, ``fastcnn``: rocket
(fine 69, in vehicles_2; ``subclass:rocket`` = ``subclass:69``). The models train on the 20
superclasses; retain and test are the other 4 fine classes of vehicles_2 (lawn_mower, streetcar,
tank, tractor), and Retrain trains on everything but the rocket images (the CIFAR-20 subclass
setting; how it differs from the paper's public code: docs/DEVIATIONS.md).

Everything else as ``unlearn_cifar100_superclass.py`` (recipe, methods retain-free, seeds 0-2).

Command (copy the superclass run's ``models/original_seed*`` in first: same 20-superclass
training set, so the original models are shared):
  mkdir -p experiments/results/cifar100_subclass_rocket/models
  cp -r experiments/results/cifar100_superclass_vehicles_2/models/original_seed* \
      experiments/results/cifar100_subclass_rocket/models/
  imu-jax run --config experiments/configs/unlearn_cifar100_subclass.py \
      --out experiments/results/cifar100_subclass_rocket --no-progress
Measured 2026-12-07 (2 cores, the experiment queue alone): three Retrains of 13.2 minutes
(66.3 +- 0.6 % on the siblings' test half, UA 97.9: a model that never saw a rocket calls 2 % of
them vehicles_2), then the methods in ~8 minutes (SSD 5.5 of them; the originals: the
superclass run's, 64.8 +- 2.0 % here). The retain-free rule is the subclass removal of
docs/STOPPING.md.
The data is read from ../shared/data/cifar100-jpeg.zip; JPEG pixels, see ../shared/data/README.md.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base() -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name("unlearn_cifar100_superclass.py")))


def get_config() -> dict:
    return {**_base(), "forget": "subclass:rocket"}
