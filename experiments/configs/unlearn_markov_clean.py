"""Markov-chain forgetting, the clean variant (spec §4): forget set = forget1 only.

Everything as ``unlearn_markov.py`` (same trained models, same unlearning settings, per-step KL,
Retrain-vs-Retrain floor) except the forget set: only the sequences the model was trained on.
forget2 (never seen) is reported apart as a control.

Command:
  imu-jax run --config experiments/configs/unlearn_markov_clean.py \
      --out experiments/results/markov_clean
Expected time: CPU (2 shared cores) ~20-30 min (~5 min when models/ is copied from the paper run).
"""

import pathlib

from imu_jax.lab.arguments import load_config_file


def _base() -> dict:
    return load_config_file(str(pathlib.Path(__file__).with_name("unlearn_markov.py")))


def get_config() -> dict:
    return {**_base(), "forget": "chain:1"}
