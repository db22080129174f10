"""Markov-chain forgetting, the clean variant (spec §4): forget set = forget1 only.

Everything as ``unlearn_markov.py`` (same trained models, same unlearning settings, per-step KL,
Retrain-vs-Retrain floor) except the forget set: only the sequences the model was trained on.
forget2 (never seen) is reported apart as a control.

Command:
  imu-jax run --config experiments/configs/unlearn_markov_clean.py \
      --out experiments/results/markov_clean
Expected time: CPU (2 shared cores) ~20-30 min (~5 min when models/ is copied from the paper run).
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "unlearn_markov", pathlib.Path(__file__).with_name("unlearn_markov.py"))
_paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_paper)


def get_config() -> dict:
    return {**_paper.get_config(), "forget": "chain:1"}
