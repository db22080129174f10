"""Digits, forget a random 10% of the training set (the CPU stand-in for CIFAR-10 random 10%).

Nearly degenerate on digits: Retrain still classifies ~97% of the forgotten examples correctly
(they are ordinary digits), so the original model is already close to Retrain; compare each
method's Avg. Gap with the ``original`` row.

Command:
  imu-jax run --config experiments/configs/unlearn_digits_random.py \
      --out experiments/results/digits_random10
Expected time: ~5-7 min on 2 CPU cores; no GPU needed.
The issue-14 baselines (SalUn ... SimNPO) were added after that timing and add an
estimated 20-30 min (not measured: SalUn, SCRUB and l1-sparse pass over D_r every epoch,
SCAR takes 6 steps of 1024 noise images per forget batch).
"""

from imu_jax.methods import CLASSIFICATION_COMPARISON


def get_config() -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "forget": "random:0.1",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
