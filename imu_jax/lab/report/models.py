"""The paragraph of ``results.md`` that says which models an experiment trained and how accurate
they are: the architecture and training recipe from ``config["train_config"]``, the original
and Retrain models' accuracy on this setting's test split, and what a Retrain cost.

>>> config = {"model": "fastcnn", "train_config": {"model_options": {"widths": [16, 32, 64]},
...           "epochs": 8, "batch_size": 512, "learning_rate": 0.2, "schedule": "onecycle"}}
>>> runs = [{"method": "original", "seed": s, "role": "eval", "metrics": {"ta": t},
...          "seconds": 0.0} for s, t in ((0, 0.78), (1, 0.76))]
>>> runs += [{"method": "retrain", "seed": 0, "role": "eval", "metrics": {"ta": 0.77},
...           "seconds": 360.0}]
>>> print(models_text(config, runs))
Models: `fastcnn` (widths [16, 32, 64]), trained 8 epochs, batch 512, learning rate 0.2 (onecycle). Original models: TA 77.0 ± 1.4 % on this setting's test split (seeds 0, 1); Retrain: 77.0 % (seed 0), 6.0 min a model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from imu_jax.lab.report.runs import reported_runs, sample_std


def recipe_text(model: str, train: Mapping) -> str:
    """``model`` with its options, then the recipe's epochs, batch and learning rate."""
    options = ", ".join(f"{k} {v}" for k, v in (train.get("model_options") or {}).items())
    text = f"`{model}`" + (f" ({options})" if options else "")
    steps = []
    if "epochs" in train:
        steps.append(f"{train['epochs']} epochs")
    if "batch_size" in train:
        steps.append(f"batch {train['batch_size']}")
    if "learning_rate" in train:
        schedule = f" ({train['schedule']})" if train.get("schedule") else ""
        steps.append(f"learning rate {train['learning_rate']}{schedule}")
    return text + (", trained " + ", ".join(steps) if steps else "")


def accuracy(runs: Sequence[Mapping], method: str) -> tuple[str, str] | None:
    """``method``'s TA over its reported seeds as (``"mean ± sample std %"``, ``"seeds 0, 1"``);
    one seed has no ±."""
    chosen = sorted((r for r in reported_runs(runs) if r["method"] == method
                     and "ta" in r.get("metrics", {})), key=lambda r: r["seed"])
    if not chosen:
        return None
    values = [100 * r["metrics"]["ta"] for r in chosen]
    spread = f" ± {sample_std(values):.1f}" if len(values) > 1 else ""
    seeds = ("seeds " if len(values) > 1 else "seed ") + ", ".join(str(r["seed"]) for r in chosen)
    return f"{np.mean(values):.1f}{spread} %", seeds


def models_text(config: Mapping, runs: Sequence[Mapping]) -> str | None:
    """The models paragraph, or ``None`` for a results file that records no training recipe."""
    train = config.get("train_config")
    if not train:
        return None
    text = f"Models: {recipe_text(config.get('model', train.get('model', '?')), train)}."
    original, retrain = accuracy(runs, "original"), accuracy(runs, "retrain")
    if original:
        text += f" Original models: TA {original[0]} on this setting's test split ({original[1]})"
    if retrain:
        seconds = [r["seconds"] for r in reported_runs(runs)
                   if r["method"] == "retrain" and r.get("seconds")]
        cost = ("" if not seconds else f", {np.mean(seconds):.0f} s a model"
                if np.mean(seconds) < 60 else f", {np.mean(seconds) / 60:.1f} min a model")
        text += f"{';' if original else ''} Retrain: {retrain[0]} ({retrain[1]}){cost}"
    return text + ("." if original or retrain else "")
