"""Per-example forgetting evaluation (issue 29): MNIST-1D, random 10% of the
training set (split seed 0), the mnist1d package's 2x100 MLP (Adam 1e-2, batch 100, 150 epochs).

N = 32 original, 32 reference retrained and 32 floor retrained models (vmapped ensemble
trainer); every method on all 32 originals, each run stopped by the retain-free rule on the
validation split; F with 10 bootstrap resamples of the models, U-LiRA, Avg. Gap, SVC MIA.

Command:
  imu-jax forgetting-score --config experiments/configs/forgetting_score_mnist1d_random.py \
      --out experiments/results/forgetting_score/mnist1d_random10
  imu-jax plot experiments/results/forgetting_score/mnist1d_random10   # epsilons.png
Measured time: 5.1 min from the experiment queue on 2 CPU cores shared with other sessions
(experiments/results/forgetting_score/mnist1d_random10/results.md has the parts); the N = 4
probe of all ten rows (probe_n4/mnist1d_random10) took 3.5 min at load ~10.
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base(name: str) -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name(name)))


def get_config() -> dict:  # the MNIST-1D class-wise setting, forget a random 10% instead
    return {**_base("forgetting_score_mnist1d_class.py"), "forget": "random:0.1"}
