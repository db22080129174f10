"""Digits, forget the 10% of training examples whose labels were corrupted (``mislabeled:0.1``).

The original model is trained on the corrupted labels; Retrain never sees the mislabelled
examples. Forgetting them should *raise* test accuracy.

Command:
  imu-jax run --config experiments/configs/unlearn_digits_mislabeled.py \
      --out experiments/results/digits_mislabeled10
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
        "forget": "mislabeled:0.1",
        "methods": list(CLASSIFICATION_COMPARISON),
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
