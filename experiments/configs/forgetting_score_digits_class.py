"""Per-example forgetting evaluation (issue 29): digits, class-wise (class 3), MLP 256-256.

N = 32 original, 32 reference retrained and 32 floor retrained models (vmapped ensemble
trainer); every method on all 32 originals, each run stopped by the retain-free rule on the
validation split; F with 10 bootstrap resamples of the models, U-LiRA, Avg. Gap, SVC MIA.

Command:
  imu-jax forgetting-score --config experiments/configs/forgetting_score_digits_class.py \
      --out experiments/results/forgetting_score/digits_class3
  imu-jax plot experiments/results/forgetting_score/digits_class3   # epsilons.png
Measured time: 3.1 min from the experiment queue on 2 CPU cores shared with other sessions
(experiments/results/forgetting_score/digits_class3/results.md has the parts); the N = 4 probe of
all ten rows (probe_n4/digits_class3) took 3.7 min at load ~10.
"""

METHODS = ("retrain_floor", "original", "imu", "ga_head", "imu_random",
           "random_label_forget_only", "boundary_shrink", "boundary_shrink_runner_up", "salun",
           "scrub")


def get_config() -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "forget": "class:3",
        "n_models": 32,
        "methods": {name: 32 for name in METHODS},
        "bootstrap": 10,
    }
