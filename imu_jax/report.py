"""Tables and plots from an experiment's ``results.json`` (see :mod:`imu_jax.experiment`).

A results dict is ``{"config": {...}, "runs": [{"method", "seed", "role", "hparams", "metrics",
"avg_gap", "seconds", "needs", ...}]}``. Runs with ``role == "eval"`` are the reported ones;
``role == "tune"`` runs are the tuning sweep on the tuning seeds (averaged per config, plotted in
``tradeoff.png`` and summarised at matched forgetting).

>>> runs = [{"method": "imu", "seed": s, "role": "eval", "metrics": {"ua": u}, "avg_gap": 0.1,
...          "seconds": 1.0, "hparams": {}, "needs": "forget set only"}
...         for s, u in ((1, 0.8), (2, 1.0))]
>>> summary = summarize(runs)
>>> summary["imu"]["ua"]
(0.9, 0.1, 2)
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

CLASSIFICATION_COLUMNS = (("ua", "UA"), ("ra", "RA"), ("ta", "TA"), ("mia_efficacy", "MIA-eff."))
MIA_COLUMNS = (("mia_entropy", "MIA entropy"), ("mia_m_entropy", "MIA m-entropy"),
               ("mia_correctness", "MIA correctness"), ("mia_prob", "MIA prob"),
               ("fta", "Forget-test acc."), ("w1_retrain", "W1 to Retrain"))
SEQUENCE_COLUMNS = (("kl_retrain_test", "KL→Retrain retain-test"),
                    ("kl_retrain_forget_test", "KL→Retrain forget-test"),
                    ("kl_retrain_control_test", "KL→Retrain forget2-test"),
                    ("kl_true_test", "KL→true retain-test"),
                    ("kl_true_forget_test", "KL→true forget-test"),
                    ("kl_true_control_test", "KL→true forget2-test"))
PERCENT_KEYS = {"ua", "ra", "ta", "fa", "fta", "mia_efficacy", "mia_entropy", "mia_m_entropy",
                "mia_correctness", "mia_prob"}


REPORTED_ROLES = ("eval", "retain_free")


def reported_runs(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs that go into the tables: ``role`` ``"eval"`` (defaults or oracle-tuned) and
    ``"retain_free"`` (the stopping rule of ``imu_jax.stopping``)."""
    return [r for r in runs if r.get("role", "eval") in REPORTED_ROLES]


def row_label(run: Mapping) -> str:
    """The table row of a run: ``"imu (retain-free)"``, ``"imu (oracle-tuned)"`` or ``"imu"``.

    >>> row_label({"method": "imu", "role": "retain_free"})
    'imu (retain-free)'
    """
    if run.get("role") == "retain_free":
        return f"{run['method']} (retain-free)"
    if run.get("selection") == "oracle-tuned":
        return f"{run['method']} (oracle-tuned)"
    return run["method"]


def stop_text(runs: Sequence[Mapping]) -> str:
    """How the runs of one row ended: ``"reached×2, cap×1"`` (empty for fixed-length runs).

    >>> stop_text([{"info": {"stop_reason": "reached"}}, {"info": {"stop_reason": "cap"}}])
    'reached×1, cap×1'
    """
    reasons = [r.get("info", {}).get("stop_reason") for r in runs]
    counts = {k: reasons.count(k) for k in dict.fromkeys(reasons) if k and k != "fixed"}
    return ", ".join(f"{k}×{n}" for k, n in counts.items())


def _values(runs: Iterable[Mapping], key: str) -> list[float]:
    out = []
    for run in runs:
        if run.get("diverged"):  # a diverged run is shown as such, never scored
            continue
        value = run.get(key) if key in ("avg_gap", "seconds") else run["metrics"].get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append(float(value))
    return out


def summarize(runs: Sequence[Mapping], keys: Sequence[str] | None = None
              ) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{row: {key: (mean, std, n)}}`` over the reported runs (population std, ddof 0), one row
    per :func:`row_label`; diverged runs are left out."""
    runs = reported_runs(runs)
    methods = list(dict.fromkeys(row_label(r) for r in runs))
    if keys is None:
        keys = sorted({k for r in runs for k in r["metrics"]}) + ["avg_gap", "seconds"]
    summary = {}
    for method in methods:
        mine = [r for r in runs if row_label(r) == method]
        summary[method] = {}
        for key in keys:
            values = _values(mine, key)
            if values:
                summary[method][key] = (float(np.mean(values)), float(np.std(values)), len(values))
    return summary


def format_cell(stats: tuple[float, float, int] | None, key: str) -> str:
    """``"mean ± std"``; fractions as percentages with one decimal.

    >>> format_cell((0.91234, 0.0123, 3), "ta"), format_cell((1.5, 0.0, 1), "seconds")
    ('91.2 ± 1.2', '1.50')
    """
    if stats is None:
        return "–"
    mean, std, n = stats
    if key in PERCENT_KEYS or key == "avg_gap_percent":
        mean, std = 100 * mean, 100 * std
        return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"
    if key == "seconds":
        return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def is_sequence(results: Mapping) -> bool:
    return any("kl_true_test" in r["metrics"] for r in results["runs"])


def _hparam_text(runs: Sequence[Mapping], method: str,
                 keys=("learning_rate", "epochs", "max_steps", "alpha", "dampening",
                       "top_fraction", "epsilon", "beta", "milestones")) -> str:
    mine = [r for r in reported_runs(runs) if row_label(r) == method]
    if not mine:
        return ""
    hp = mine[0].get("hparams") or {}
    if mine[0].get("role") == "retain_free":  # the rule sets the length
        keys = [k for k in keys if k != "epochs"]
    return ", ".join(f"{k}={hp[k]}" for k in keys if hp.get(k) not in (None, (), []))


def bn_mode_text(runs: Sequence[Mapping], method: str) -> str:
    """How BatchNorm ran during the method's update (``info["bn_mode"]`` of its reported runs):
    ``train`` = batch statistics, running statistics updated; ``frozen`` = inference mode.

    >>> bn_mode_text([{"method": "ga", "role": "eval", "info": {"bn_mode": "train"}}], "ga")
    'train'
    """
    modes = {str((r.get("info") or {}).get("bn_mode")) for r in reported_runs(runs)
             if row_label(r) == method and (r.get("info") or {}).get("bn_mode")}
    return "/".join(sorted(modes)) or "–"


def _resumed_note(runs: Sequence[Mapping], method: str) -> str:
    """``" (N resumed)"`` when reported runs of ``method`` continued from a checkpoint: their
    seconds count only the part after it.

    >>> _resumed_note([{"method": "imu", "info": {"resumed_from_step": 40}}], "imu")
    ' (1 resumed)'
    """
    count = sum(1 for r in reported_runs(runs)
                if row_label(r) == method and (r.get("info") or {}).get("resumed_from_step"))
    return f" ({count} resumed)" if count else ""


def table(results: Mapping, columns: Sequence[tuple[str, str]], *, with_needs: bool = True,
          with_hparams: bool = False) -> str:
    """One markdown table: a row per method, a column per metric (mean ± std over eval seeds)."""
    runs = results["runs"]
    summary = summarize(runs)
    head = ["Method"] + (["Data needed"] if with_needs else [])
    head += [label for _, label in columns]
    head += ["Avg. Gap ↓", "RTE (s)", "seeds"] if with_needs else []
    head += ["BatchNorm", "hparams", "stopped"] if with_hparams else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    needs = {row_label(r): r.get("needs", "") for r in runs}
    rows = list(dict.fromkeys(row_label(r) for r in reported_runs(runs)))
    for method in rows:
        stats = summary.get(method, {})
        mine = [r for r in reported_runs(runs) if row_label(r) == method]
        diverged = sum(bool(r.get("diverged")) for r in mine)
        row = [method] + ([needs.get(method, "")] if with_needs else [])
        row += [format_cell(stats.get(key), key) if key in stats or not diverged
                else "diverged" for key, _ in columns]
        if with_needs:
            seeds = sorted({r["seed"] for r in mine})
            gap_format = "avg_gap" if is_sequence(results) else "avg_gap_percent"
            row += [format_cell(stats.get("avg_gap"), gap_format),
                    format_cell(stats.get("seconds"), "seconds") + _resumed_note(runs, method),
                    ",".join(map(str, seeds))]
        if with_hparams:
            row += [bn_mode_text(runs, method), _hparam_text(runs, method), stop_text(mine)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def retain_free_table(results: Mapping) -> str:
    """Per method: Avg. Gap and UA / TA of its retain-free run (the stopping rule, no oracle)
    next to its oracle-tuned run (smallest Avg. Gap to Retrain on the tuning seeds), and their
    ratio: the cost of not having Retrain. Empty when there are no retain-free runs."""
    runs = reported_runs(results["runs"])
    free = [r for r in runs if r.get("role") == "retain_free"]
    if not free:
        return ""
    summary = summarize(runs)
    head = ["Method", "Avg. Gap retain-free", "Avg. Gap oracle-tuned", "ratio",
            "UA / TA retain-free", "UA / TA oracle-tuned", "retain-free stopped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in dict.fromkeys(r["method"] for r in free):
        mine = [r for r in free if r["method"] == method]
        rf = summary.get(f"{method} (retain-free)", {})
        oracle = summary.get(f"{method} (oracle-tuned)", {})

        def pair(stats):
            if "ua" not in stats:
                return "–"
            return f"{100 * stats['ua'][0]:.1f} / {100 * stats['ta'][0]:.1f}"

        ratio = ("–" if "avg_gap" not in rf or "avg_gap" not in oracle
                 else "∞" if oracle["avg_gap"][0] == 0
                 else f"{rf['avg_gap'][0] / oracle['avg_gap'][0]:.2f}×")
        lines.append("| " + " | ".join([
            method, format_cell(rf.get("avg_gap"), "avg_gap_percent") if rf.get("avg_gap")
            else "diverged", format_cell(oracle.get("avg_gap"), "avg_gap_percent"), ratio,
            pair(rf), pair(oracle), stop_text(mine)]) + " |")
    return "\n".join(lines)


def sweep_points(runs: Sequence[Mapping], method: str) -> list[dict[str, Any]]:
    """The tuning sweep of ``method``: one point per config, metrics averaged over tuning seeds.

    >>> runs = [{"method": "ga", "role": "tune", "seed": s, "hparams": {"lr": 1},
    ...          "metrics": {"ua": u}, "avg_gap": 0.1} for s, u in ((0, 0.5), (1, 1.0))]
    >>> sweep_points(runs, "ga")
    [{'hparams': {'lr': 1}, 'metrics': {'ua': 0.75}, 'avg_gap': 0.1}]
    """
    groups: dict[str, list[Mapping]] = {}
    for run in runs:
        if run["method"] == method and run.get("role") == "tune":
            groups.setdefault(json.dumps(run["hparams"], sort_keys=True, default=str),
                              []).append(run)
    points = []
    for group in groups.values():
        keys = set.intersection(*(set(r["metrics"]) for r in group))
        points.append({"hparams": group[0]["hparams"],
                       "metrics": {k: float(np.mean([r["metrics"][k] for r in group]))
                                   for k in sorted(keys)},
                       "avg_gap": float(np.mean([r["avg_gap"] for r in group]))})
    return points


def retrain_ua(results: Mapping) -> float:
    """Retrain's mean UA on the reported seeds (1.0 when there is no Retrain run): the
    forgetting that "as much as Retrain" means in :func:`matched_forgetting`."""
    retrain = _values([r for r in reported_runs(results["runs"]) if r["method"] == "retrain"],
                      "ua")
    return float(np.mean(retrain)) if retrain else 1.0


def best_at_forgetting(results: Mapping, method: str, fraction: float) -> Mapping | None:
    """The tuning-sweep config of ``method`` (seed-averaged) with the best (TA, RA) among those
    whose UA ≥ ``fraction`` × :func:`retrain_ua`; ``None`` when none reaches it."""
    target = fraction * retrain_ua(results)
    ok = [p for p in sweep_points(results["runs"], method)
          if p["metrics"]["ua"] >= target - 1e-9]
    return max(ok, key=lambda r: (r["metrics"]["ta"], r["metrics"]["ra"])) if ok else None


def matched_forgetting(results: Mapping, fractions: Sequence[float] = (0.5, 0.8, 0.9, 0.99)
                       ) -> str:
    """For each method and UA level, the best TA (with its RA) among the tuning-sweep configs
    (seed-averaged) that reach that UA: utility at matched forgetting. The levels are
    ``fractions`` of Retrain's mean UA on the reported seeds (1.0 for a class removal; ~0.4 for
    a random forget set that Retrain still classifies at 60%), so "forgotten as much as
    Retrain" means the same in every setting. Empty without a sweep.

    >>> run = lambda m, role, ua, ta: {"method": m, "role": role, "seed": 0, "hparams": {"e": ta},
    ...     "metrics": {"ua": ua, "ta": ta, "ra": 1.0}, "avg_gap": 0.0}
    >>> r = {"runs": [run("retrain", "eval", 0.4, 0.6), run("imu", "tune", 0.38, 0.55),
    ...               run("imu", "tune", 0.2, 0.6)]}
    >>> print(matched_forgetting(r, fractions=(0.9,)).splitlines()[2])
    | imu | 55.0 (100.0) |
    """
    sweep = [r for r in results["runs"] if r.get("role") == "tune"]
    if not sweep or is_sequence(results):
        return ""
    target = retrain_ua(results)
    methods = list(dict.fromkeys(r["method"] for r in sweep))
    head = ["Method"] + [f"UA ≥ {f:g} × Retrain's ({100 * f * target:.1f}): best TA (RA)"
                         for f in fractions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        row = [method]
        for fraction in fractions:
            best = best_at_forgetting(results, method, fraction)
            row.append("not reached" if best is None else
                       f"{100 * best['metrics']['ta']:.1f} ({100 * best['metrics']['ra']:.1f})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results_markdown(results: Mapping) -> str:
    """The full ``results.md``: command, setup, main table, secondary metrics, sweep summary."""
    config = results.get("config", {})
    parts = [f"# Unlearning results: {config.get('dataset', '?')} / {config.get('model', '?')} / "
             f"forget `{config.get('forget', '?')}`", ""]
    if config.get("command"):
        parts += ["Reproduce with:", "", "```", config["command"], "```", ""]
    if config.get("counts"):
        parts += [f"Split sizes: {json.dumps(config['counts'])}.", ""]
    if config.get("selection_rule"):
        parts += [f"Tuning rule (oracle-tuned rows): {config['selection_rule']}", ""]
    if config.get("tuning_grids"):
        parts += ["Tuning grids (the same number of configurations per method):", ""]
        parts += [f"- {name}: {grid_text(grid)}" for name, grid in config["tuning_grids"].items()]
        parts += [""]
        if config.get("tune_methods") is not None:
            untuned = [m for m in config.get("methods", []) if m not in config["tune_methods"]
                       and m not in ("retrain", "retrain_floor")]
            if untuned:
                parts += [f"Oracle-tuned only: {', '.join(config['tune_methods'])} (to fit the "
                          f"CPU budget); {', '.join(untuned)} have retain-free rows only.", ""]
    elif "tune_seeds" in config and not config.get("tune_seeds"):
        parts += ["Not tuned: every method runs the hyperparameters shown in its row.", ""]
    if config.get("retain_free_rule"):
        rule = config["retain_free_rule"]
        parts += [f"Retain-free rows ({rule['removal']} removal): {rule['rule']} Diverged runs "
                  "are shown as such and left out of every mean.", ""]
    parts += ["Mean ± std over the reported seeds. Fractions in %. Avg. Gap = mean |metric − "
              "Retrain| over the main metric columns (lower is better). RTE = wall-clock seconds "
              "of the unlearning itself (Retrain: its training time; Original: 0; \"resumed\": "
              "runs continued from a checkpoint, timed from there). Seconds vary run to run; "
              "the other numbers repeat given the command on the same machine and software "
              "(the SVC membership attacks, MIA prob and entropy most of all, can move by a few "
              "points when a model differs in its last bits). BatchNorm = "
              "its mode during the update: train (batch statistics, running statistics "
              "updated, as the method's reference code) or frozen (inference mode). W1 to "
              "Retrain = mean over test examples of the W1 distance between the two models' "
              "predicted class distributions under the 0/1 ground metric (= total variation).",
              ""]
    if is_sequence(results):
        parts += [table(results, SEQUENCE_COLUMNS, with_hparams=True), ""]
    else:
        parts += [table(results, CLASSIFICATION_COLUMNS, with_hparams=True), ""]
        versus = retain_free_table(results)
        if versus:
            parts += ["## Retain-free vs oracle-tuned", "", versus, ""]
        parts += ["## Other attacks and distances", "",
                  table(results, MIA_COLUMNS, with_needs=False), ""]
        matched = matched_forgetting(results)
        if matched:
            parts += ["## Utility at matched forgetting (tuning sweep, mean over tuning seeds; "
                      "UA levels relative to Retrain's)",
                      "",
                      matched, ""]
    return "\n".join(parts)


def grid_text(grid: Mapping[str, Sequence]) -> str:
    """A tuning grid on one line.

    >>> grid_text({"learning_rate": [0.01, 0.02], "epochs": [10]})
    'learning_rate ∈ {0.01, 0.02} × epochs ∈ {10}'
    """
    return " × ".join(f"{k} ∈ {{{', '.join(str(v) for v in values)}}}"
                      for k, values in grid.items()) or "not tuned"


def trace_plot(results: Mapping, path: str) -> None:
    """``steps.png``: each traced metric against the optimizer step, one line per method (mean
    over the reported seeds), with ``retrain_floor``'s value as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in reported_runs(results["runs"]) if r.get("trace")]
    keys = [k for k in runs[0]["trace"][0] if k != "step"]
    floor = summarize([r for r in results["runs"] if r["method"] == "retrain_floor"], keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    for ax, key in zip(axes[0], keys):
        for i, method in enumerate(methods):
            curves: dict[int, list[float]] = {}
            for run in (r for r in runs if r["method"] == method):
                for point in run["trace"]:
                    curves.setdefault(point["step"], []).append(point[key])
            steps = sorted(curves)
            ax.plot(steps, [np.mean(curves[s]) for s in steps], label=method,
                    color=plt.cm.tab10(i % 10))
        if key in floor.get("retrain_floor", {}):
            ax.axhline(floor["retrain_floor"][key][0], color="black", ls="--",
                       label="Retrain vs Retrain (floor)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(dict(SEQUENCE_COLUMNS + CLASSIFICATION_COLUMNS).get(key, key))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    config = results.get("config", {})
    fig.suptitle(f"{config.get('dataset', '')} / forget {config.get('forget', '')}: per-step "
                 "metrics, mean over reported seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal x and higher-or-equal y (lower x is
    better: forget accuracy; higher y is better: test accuracy), sorted by x.

    >>> pareto_front([(0.0, 0.5), (0.1, 0.9), (0.2, 0.8), (0.0, 0.4), (0.3, 0.95)])
    [(0.0, 0.5), (0.1, 0.9), (0.3, 0.95)]
    """
    front = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def tradeoff_plot(results: Mapping, path: str) -> None:
    """``tradeoff.png``: forget accuracy vs test accuracy (sequences: KL to the true transitions on
    forget-test vs retain-test). Small dots: every config of a method's tuning sweep (mean over
    the tuning seeds); line: that sweep's Pareto front; large markers: the reported runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sequence = is_sequence(results)
    truth = all("kl_true_forget_test" in r["metrics"] for r in results["runs"])
    if sequence and truth:
        x_key, y_key = "kl_true_forget_test", "kl_true_test"
        x_label, y_label = ("KL(true ‖ model) on forget-test (higher = more forgotten)",
                            "KL(true ‖ model) on retain-test (lower = more utility)")
    elif sequence:  # a forget set from two chains has no single true matrix
        x_key, y_key = "kl_retrain_forget_test", "kl_retrain_test"
        x_label, y_label = ("KL(Retrain ‖ model) on forget-test (lower = closer to Retrain)",
                            "KL(Retrain ‖ model) on retain-test (lower = closer to Retrain)")
    else:
        x_key, y_key = "fa", "ta"
        x_label, y_label = "forget accuracy (1 − UA)", "test accuracy (TA)"
    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    methods = list(dict.fromkeys(row_label(r) for r in reported_runs(runs)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(methods) > len(colors):
        colors = [plt.cm.tab20(i) for i in range(20)]
    for i, method in enumerate(methods):
        color = colors[i % len(colors)]
        name = method.split(" (")[0]
        tuned = [r for r in runs if r.get("role") == "tune" and r["method"] == name]
        sweep = [(p["metrics"][x_key], p["metrics"][y_key]) for p in sweep_points(runs, name)]
        if sweep and (method == name or method.endswith("(oracle-tuned)")) and tuned:
            ax.scatter(*zip(*sweep), color=color, alpha=0.35, s=10)
            if not sequence:
                ax.plot(*zip(*pareto_front(sweep)), "-", color=color, alpha=0.5)
        shown = [r for r in reported_runs(runs) if row_label(r) == method
                 and not r.get("diverged")]
        marker = ("*" if method in ("retrain", "original")
                  else "s" if method.endswith("(retain-free)") else "o")
        ax.scatter([r["metrics"][x_key] for r in shown], [r["metrics"][y_key] for r in shown],
                   color=color, marker=marker, s=80 if marker == "*" else 30, label=method,
                   edgecolors="black", linewidths=0.5)
    config = results.get("config", {})
    legend = ("dots: tuning sweep (mean of tuning seeds), line: its Pareto front\n"
              if any(r.get("role") == "tune" for r in runs) else "")
    ax.set_title(f"{config.get('dataset', '')} / {config.get('model', '')} / forget "
                 f"{config.get('forget', '')}\n{legend}markers: reported seeds (squares: "
                 "retain-free rule)", fontsize=9)
    if sequence:  # diverged methods sit orders of magnitude away from the rest
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def combined_markdown(named_results: Mapping[str, Mapping]) -> str:
    """A summary over several experiments (e.g. the ten digits classes): for each method the mean
    ± std across experiments of its per-experiment mean, and a per-experiment Avg. Gap table.

    >>> run = lambda m, ua: {"method": m, "seed": 0, "role": "eval", "metrics": {
    ...     "ua": ua, "ra": 1.0, "ta": 0.9, "mia_efficacy": ua}, "avg_gap": 1 - ua, "seconds": 1.0}
    >>> text = combined_markdown({"a": {"runs": [run("imu", 1.0)]}, "b": {"runs": [run("imu", 0.5)]}})
    >>> "| imu | 75.0 ± 25.0 |" in text
    True
    """
    names = list(named_results)
    per_experiment = {name: summarize(named_results[name]["runs"]) for name in names}
    methods = list(dict.fromkeys(m for s in per_experiment.values() for m in s))
    keys = [k for k, _ in CLASSIFICATION_COLUMNS] + ["avg_gap", "seconds"]
    labels = [label for _, label in CLASSIFICATION_COLUMNS] + ["Avg. Gap ↓", "RTE (s)"]
    lines = [f"Mean ± std over {len(names)} experiments ({', '.join(names)}) of each "
             "experiment's seed mean. Fractions in %.", "",
             "| Method | " + " | ".join(labels) + " |", "|" + "---|" * (len(keys) + 1)]
    for method in methods:
        row = [method]
        for key in keys:
            values = [per_experiment[n][method][key][0] for n in names
                      if method in per_experiment[n] and key in per_experiment[n][method]]
            stats = (float(np.mean(values)), float(np.std(values)), len(values)) if values else None
            row.append(format_cell(stats, "avg_gap_percent" if key == "avg_gap" else key))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Avg. Gap (%) per experiment:", "",
              "| Method | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for method in methods:
        cells = [format_cell(per_experiment[n].get(method, {}).get("avg_gap"), "avg_gap_percent")
                 for n in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    check = retain_free_check(per_experiment)
    if check:
        lines += ["", check]
    return "\n".join(lines) + "\n"


def retain_free_check(per_experiment: Mapping[str, Mapping[str, Mapping]]) -> str:
    """Per experiment, for every method with both rows: its retain-free Avg. Gap against its
    oracle-tuned one (ratio) and against the original model's (doing nothing). Empty when no
    method has both rows.

    >>> s = lambda g: {"avg_gap": (g, 0.0, 1)}
    >>> text = retain_free_check({"a": {"original": s(0.5), "imu (retain-free)": s(0.02),
    ...                                 "imu (oracle-tuned)": s(0.01)}})
    >>> "| a | 2.0 | 1.0 | 2.00× | yes |" in text
    True
    """
    methods = [m.removesuffix(" (retain-free)") for m in dict.fromkeys(
        m for s in per_experiment.values() for m in s)
        if m.endswith(" (retain-free)") and any(f"{m.removesuffix(' (retain-free)')} "
                                                "(oracle-tuned)" in s
                                                for s in per_experiment.values())]
    if not methods:
        return ""
    lines = []
    for method in methods:
        lines += [f"Retain-free vs oracle-tuned, {method} (Avg. Gap %, seed means; 'better than "
                  "nothing' = retain-free gap ≤ the original model's):", "",
                  "| Experiment | retain-free | oracle-tuned | ratio | better than nothing |",
                  "|---|---|---|---|---|"]
        for name, summary in per_experiment.items():
            free = summary.get(f"{method} (retain-free)", {}).get("avg_gap")
            oracle = summary.get(f"{method} (oracle-tuned)", {}).get("avg_gap")
            nothing = summary.get("original", {}).get("avg_gap")
            if free is None or oracle is None:
                continue
            ratio = "∞" if oracle[0] == 0 else f"{free[0] / oracle[0]:.2f}×"
            better = "–" if nothing is None else ("yes" if free[0] <= nothing[0] else "**no**")
            lines.append(f"| {name} | {100 * free[0]:.1f} | {100 * oracle[0]:.1f} | {ratio} | "
                         f"{better} |")
        lines.append("")
    return "\n".join(lines).rstrip()
