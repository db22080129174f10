"""MNIST-1D forget-set size sweep: random forgetting of 1%, 5%, 10%, 25% and 50%, 2x100 MLP.

The paper argues that retain-free methods other than IMU degrade as the forget set grows; the
plot is Avg. Gap against forget fraction, one line per method. ``FRACTIONS`` lists the sweep; the
config's own ``forget`` is the first point. Every method runs retain-free; GA, GA-head and IMU
are also oracle-tuned (``tune_methods``). Plot: ``python experiments/plot_forget_size.py``.

Commands (one directory per fraction; same methods, seeds and tuning rule as the others):
  for f in 0.01 0.05 0.1 0.25 0.5; do imu-jax run \
      --config experiments/configs/unlearn_mnist1d_forget_size.py --forget random:$f \
      --out experiments/results/mnist1d_forget_size/random$f --no-progress; done
Needs nothing but ``pip install``. Not run with the oracle rows (~4× the retain-free variant,
``unlearn_mnist1d_forget_size_retain_free.py``, which was: 6.5–16.5 min a fraction).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON

FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)


def get_config() -> dict:
    return {
        "dataset": "mnist1d",
        "model": "mlp",
        "forget": f"random:{FRACTIONS[0]}",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
        "tune_methods": ["ga", "ga_head", "imu"],
    }
