"""Per-example forgetting evaluation (issue 29): MNIST-1D, class-wise (class 3), the
mnist1d package's 2x100 MLP (its recipe: Adam 1e-2, batch 100, 150 epochs).

N = 32 original, 32 reference retrained and 32 floor retrained models (vmapped ensemble
trainer); every method on all 32 originals, each run stopped by the retain-free rule on the
validation split; F with 10 bootstrap resamples of the models, U-LiRA, Avg. Gap, SVC MIA.

Command:
  imu-jax forgetting-score --config experiments/configs/forgetting_score_mnist1d_class.py \
      --out experiments/results/forgetting_score/mnist1d_class3
  imu-jax plot experiments/results/forgetting_score/mnist1d_class3   # epsilons.png
Measured time: 5.0 min from the experiment queue on 2 CPU cores shared with other sessions
(experiments/results/forgetting_score/mnist1d_class3/results.md has the parts); the N = 4 probe of
all ten rows (probe_n4/mnist1d_class3) took 4.6 min at load ~12.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base(name: str) -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name(name)))


def get_config() -> dict:  # the digits setting's methods, models and resamples
    return {**_base("forgetting_score_digits_class.py"), "dataset": "mnist1d"}
