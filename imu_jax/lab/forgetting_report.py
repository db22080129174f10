"""What the per-example forgetting evaluation writes (:mod:`imu_jax.lab.forgetting_experiment`):
``results.json`` (the whole record, per-example ε and AUC included), ``results.md`` (the table
ranked by F, N, seeds, the command, times and the data splits) and, on demand (``imu-jax plot
OUT``), ``epsilons.png``: the per-example ε and U-LiRA AUC distributions of every method.

Examples:
  >>> import tempfile, pathlib
  >>> m = {"n_models": 4, "F": 0.2, "F_bootstrap": {"std": 0.01}, "F_by_n": {"4": 0.2},
  ...      "ulira": {"auc": 0.5, "mean_example_auc": 0.5, "tpr_at_fpr": {"0.01": 0.0}},
  ...      "avg_gap": 0.01, "metrics": {"ua": 1.0, "ra": 1.0, "ta": 0.9, "mia_efficacy": 1.0},
  ...      "epsilons": [0.5, 1.0], "needs": "x"}
  >>> results = {"config": {"dataset": "digits", "forget": "class:3", "n_models": 4,
  ...            "seeds": {}, "command": "imu-jax ..."}, "times": {}, "methods": {"a": m}}
  >>> out = pathlib.Path(tempfile.mkdtemp())
  >>> write(out, results)
  >>> "| a | x | 4 | 0.200 ± 0.010" in (out / "results.md").read_text()
  True
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Mapping

RESULTS_JSON, RESULTS_MD, EPSILONS_PNG = "results.json", "results.md", "epsilons.png"


def is_forgetting_results(out) -> bool:
    """Whether ``out/results.json`` was written by the forgetting-score evaluation."""
    path = pathlib.Path(out) / RESULTS_JSON
    try:
        return json.loads(path.read_text()).get("config", {}).get("kind") == "forgetting_score"
    except (OSError, ValueError, AttributeError):
        return False


def _atomic(path: pathlib.Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the results private
    os.replace(tmp, path)


def ranked(results: Mapping) -> list[tuple[str, dict]]:
    """The methods, best F first (ties: smaller Avg. Gap first)."""
    return sorted(results["methods"].items(), key=lambda kv: (-kv[1]["F"], kv[1]["avg_gap"]))


def _pm(value, spread, digits=3) -> str:
    if spread is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {spread:.{digits}f}"


def table(results: Mapping) -> str:
    """The main table: methods ranked by F (± std over bootstrap resamples of the models)."""
    head = ("| Method | Data needed | N | F ↑ (± boot. std) | F by N | U-LiRA AUC ↓ | "
            "per-ex. AUC | TPR@1%FPR | Avg. Gap ↓ | UA | RA | TA | MIA-eff. (SVC) | steps |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for name, m in ranked(results):
        met = m["metrics"]
        by_n = ", ".join(f"{k}: {v:.3f}" for k, v in m["F_by_n"].items())
        tpr = m["ulira"]["tpr_at_fpr"].get("0.01")
        rows.append(
            f"| {name} | {m.get('needs', '')} | {m['n_models']} | "
            f"{_pm(m['F'], m['F_bootstrap']['std'])} | {by_n} | {m['ulira']['auc']:.3f} | "
            f"{m['ulira']['mean_example_auc']:.3f} | "
            f"{'' if tpr is None else f'{tpr:.3f}'} | {100 * m['avg_gap']:.1f} | "
            f"{100 * met['ua']:.1f} | {100 * met['ra']:.1f} | {100 * met['ta']:.1f} | "
            f"{100 * met['mia_efficacy']:.1f} | {m.get('steps', '—')} |")
    return "\n".join(rows)


def markdown(results: Mapping) -> str:
    """``results.md``: the table, the setting, N and seeds, the command, times, the splits."""
    cfg, times = results["config"], results.get("times", {})
    seeds = cfg.get("seeds", {})
    lines = [f"# Forgetting score: {cfg['dataset']} ({cfg.get('model')}), forget "
             f"{cfg['forget']}", "",
             f"Command: `{cfg.get('command') or 'run_forgetting_score(...)'}`", "",
             table(results), "",
             "F: the NeurIPS 2023 competition's forgetting score (mean over forget examples of "
             "2^-k for ε in bin k of width 0.5; 1 best), unlearned models vs the reference "
             "retrained population, ± the std over bootstrap resamples of the models "
             f"({cfg.get('bootstrap')} resamples); 'F by N': F on the first N models of each "
             "population (its ε range, ceil(log(N-1)), grows with N). U-LiRA: per-example "
             "Gaussian likelihood-ratio attack, half of each population as shadows, the other "
             "half as targets; AUC pooled over (target, example) pairs and the mean per-example "
             "AUC (0.5 = cannot tell). Avg. Gap (%): mean |UA, RA, TA, MIA-eff. − those of the "
             "retrained model of the same seed|, averaged over the models. steps: the fixed "
             "step count, from the retain-free stopping rule on the validation split.", "",
             f"N (populations): {cfg.get('n_models')}; original seeds "
             f"{_span(seeds.get('original'))}, reference retrained seeds "
             f"{_span(seeds.get('retrained'))}, floor retrained seeds "
             f"{_span(seeds.get('floor'))}. Models per method: "
             + ", ".join(f"{k} {v}" for k, v in (cfg.get("method_models") or {}).items()) + ".",
             "", f"Data splits: {json.dumps(cfg.get('counts'))}; held-out: "
             f"{json.dumps({k: v for k, v in (cfg.get('held_out') or {}).items() if k != 'roles'})}"
             f" (validation: the step counts; test: TA and the SVC attack).", "",
             (f"Wall time: {times['total_s'] / 60:.1f} min. " if "total_s" in times else "")
             + "Times (s): "
             + ", ".join(f"{k} {v:.1f}" for k, v in times.items()
                                        if isinstance(v, (int, float))) + "; per method: "
             + ", ".join(f"{k} {m.get('apply_s', 0):.1f} + {m.get('score_s', 0):.1f}"
                         for k, m in results["methods"].items()) + " (apply + score).", ""]
    return "\n".join(lines)


def _span(values) -> str:
    values = list(values or [])
    if len(values) > 2 and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}–{values[-1]}"
    return ", ".join(map(str, values))


def write(out: pathlib.Path, results: Mapping) -> None:
    """Writes ``results.json`` and ``results.md`` into ``out`` (atomically)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / RESULTS_JSON, json.dumps(results, separators=(",", ":"), default=float))
    _atomic(out / RESULTS_MD, markdown(results))


def _boxes(ax, data, names) -> None:
    """Horizontal box plots (whiskers 5–95 %), one row per method, best F on top."""
    ax.boxplot(data[::-1], orientation="horizontal", whis=(5, 95), showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), names[::-1])


def plot(out, into=None) -> pathlib.Path:
    """``epsilons.png``: per method (ranked by F), the distribution of per-example ε (left) and
    of the per-example U-LiRA AUC (right), drawn from ``out/results.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out)
    results = json.loads((out / RESULTS_JSON).read_text())
    order = ranked(results)
    names = [f"{n} (F {m['F']:.2f}, N {m['n_models']})" for n, m in order]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(order) + 1.5), sharey=True)
    eps = [[min(e, 8.0) for e in m["epsilons"]] for _, m in order]
    _boxes(axes[0], eps, names)
    axes[0].set_xlabel("per-example ε (capped at 8 for display)")
    _boxes(axes[1], [m["ulira"]["per_example_auc"] for _, m in order], names)
    axes[1].axvline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set_xlabel("per-example U-LiRA AUC (0.5 = indistinguishable)")
    cfg = results["config"]
    fig.suptitle(f"{cfg['dataset']} {cfg['forget']}: forget examples, unlearned vs retrained")
    fig.tight_layout()
    into = pathlib.Path(into) if into else out
    into.mkdir(parents=True, exist_ok=True)
    path = into / EPSILONS_PNG
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["EPSILONS_PNG", "is_forgetting_results", "markdown", "plot", "ranked", "table",
           "write"]
