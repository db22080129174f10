"""MNIST-1D forget-set size sweep, retain-free rows only (no oracle tuning): the CPU-budget
version of ``unlearn_mnist1d_forget_size.py`` (same data, model, methods and seeds).

The question of the sweep — do retain-free methods degrade as the forget set grows? — needs only
the rows a retain-free user can run; dropping the tuning grids (GA, GA-head, IMU × 12
configurations × 2 tuning seeds) makes each fraction ~4× cheaper.

Commands (one directory per fraction; random 10% is ``results/mnist1d_random10``'s retain-free
rows, copied as ``random0.1``):
  for f in 0.01 0.05 0.25 0.5; do imu-jax run \
      --config experiments/configs/unlearn_mnist1d_forget_size_retain_free.py --forget random:$f \
      --out experiments/results/mnist1d_forget_size/random$f --no-progress; done
  python experiments/plot_forget_size.py experiments/results/mnist1d_forget_size
Expected time: see experiments/README.md (MNIST-1D).
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "unlearn_mnist1d_forget_size",
    pathlib.Path(__file__).with_name("unlearn_mnist1d_forget_size.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
FRACTIONS = _base.FRACTIONS


def get_config() -> dict:
    config = {**_base.get_config(), "tune_seeds": []}
    config.pop("tune_methods")
    return config
