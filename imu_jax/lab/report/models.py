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

from imu_jax.lab.report.runs import reported_runs, summarize


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
    stats = summarize(runs, ["ta"]).get(method, {}).get("ta")
    if stats is None:
        return None
    mean, std, n = stats
    seeds = sorted(r["seed"] for r in reported_runs(runs)
                   if r["method"] == method and not r.get("diverged"))
    spread = f" ± {100 * std:.1f}" if n > 1 else ""
    return (f"{100 * mean:.1f}{spread} %",
            ("seeds " if n > 1 else "seed ") + ", ".join(map(str, seeds)))


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
        seconds = summarize(runs, ["seconds"]).get("retrain", {}).get("seconds")
        cost = ("" if not seconds else f", {seconds[0]:.0f} s a model" if seconds[0] < 60
                else f", {seconds[0] / 60:.1f} min a model")
        text += f"{';' if original else ''} Retrain: {retrain[0]} ({retrain[1]}){cost}"
    return text + ("." if original or retrain else "")
