"""Digits class:3 with every baseline (the must-show setting plus the full comparison).

Command:
  imu-jax run --config experiments/configs/unlearn_digits_class3_all.py \
      --out experiments/results/digits_class3_all
The 3-method × 3-seed timing check (from scratch, training included):
  imu-jax run --config experiments/configs/unlearn_digits_class3_all.py \
      --methods retrain,ga,imu --out /tmp/digits_3x3
Expected time: ~6-8 min on 2 CPU cores (every method: its grid on 2 tuning seeds, 3 reported
seeds); the 3 × 3 check takes ~1.5-2 min. No GPU needed.
The issue-14 baselines (SalUn ... SimNPO) were added after that timing and add an
estimated 20-30 min (not measured: SalUn, SCRUB and l1-sparse pass over D_r every epoch,
SCAR takes 6 steps of 1024 noise images per forget batch).
"""


def get_config() -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "forget": "class:3",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "imu_batch",
                    "random_label_forget_only", "boundary_shrink",
                    "boundary_shrink_runner_up", "npo", "ssd", "random_label_with_retain",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
