"""Tables and plots from an experiment's ``results.json`` (see :mod:`imu_jax.lab.runner`).

A results dict is ``{"config": {...}, "runs": [{"method", "seed", "role", "hparams", "metrics",
"avg_gap", "seconds", "needs", ...}]}``. Runs with ``role == "eval"`` are the reported ones;
``role == "tune"`` runs are the tuning sweep on the tuning seeds (averaged per config, plotted in
``tradeoff.png`` and summarised at matched forgetting); on disk they sit beside ``results.json`` in
``tune_runs.jsonl.xz``, and ``imu_jax.lab.store.load_results`` joins them back.

>>> runs = [{"method": "imu", "seed": s, "role": "eval", "metrics": {"ua": u}, "avg_gap": 0.1,
...          "seconds": 1.0, "hparams": {}, "needs": "forget set only"}
...         for s, u in ((1, 0.8), (2, 1.0))]
>>> mean, std, n = summarize(runs)["imu"]["ua"]  # sample std (ddof 1)
>>> round(mean, 4), round(std, 4), n
(0.9, 0.1414, 2)
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np

from imu_jax.lab.report.matched import matched_forgetting
from imu_jax.lab.report.models import models_text
from imu_jax.lab.report.comparison import COMPARISON_NOTE, comparison_table
from imu_jax.lab.report.runs import (DISPLAY_NAMES, commands_of, is_sequence, rte_label,
                                     reported_runs, row_label, sample_std, summarize)


CLASSIFICATION_COLUMNS = (("ua", "UA"), ("ra", "RA"), ("ta", "TA"), ("mia_efficacy", "MIA-eff."))


MIA_COLUMNS = (("mia_entropy", "MIA entropy"), ("mia_m_entropy", "MIA m-entropy"),
               ("mia_correctness", "MIA correctness"), ("mia_prob", "MIA prob"),
               ("fta", "Forget-test acc."), ("w1_retrain", "W1 to Retrain"))
# shown where some run has it: accuracy on held-out data that no other column measures
# (subclass:K: the other superclasses' test images)
CONTROL_COLUMN = ("cta", "Other classes acc.")


SEQUENCE_COLUMNS = (("kl_retrain_test", "KL→Retrain retain-test"),
                    ("kl_retrain_forget_test", "KL→Retrain forget-test"),
                    ("kl_retrain_control_test", "KL→Retrain forget2-test"),
                    ("kl_true_test", "KL→true retain-test"),
                    ("kl_true_forget_test", "KL→true forget-test"),
                    ("kl_true_control_test", "KL→true forget2-test"))


PERCENT_KEYS = {"ua", "ra", "ta", "fa", "fta", "cta", "mia_efficacy", "mia_entropy",
                "mia_m_entropy", "mia_correctness", "mia_prob"}


def stop_text(runs: Sequence[Mapping]) -> str:
    """How the runs of one row ended: ``"reached×2, cap×1"`` (empty for fixed-length runs).

    >>> stop_text([{"info": {"stop_reason": "reached"}}, {"info": {"stop_reason": "cap"}}])
    'reached×1, cap×1'
    """
    reasons = [r.get("info", {}).get("stop_reason") for r in runs]
    counts = {k: reasons.count(k) for k in dict.fromkeys(reasons) if k and k != "fixed"}
    return ", ".join(f"{k}×{n}" for k, n in counts.items())


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
    if key in ("seconds", "run_seconds", "compile_seconds"):
        return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


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
    head += ["Avg. Gap ↓", "RTE (s)", "compile (s)", "seeds"] if with_needs else []
    head += ["BatchNorm", "hparams", "stopped"] if with_hparams else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    needs = {row_label(r): r.get("needs", "") for r in runs}
    rows = list(dict.fromkeys(row_label(r) for r in reported_runs(runs)))
    for method in rows:
        stats = summary.get(method, {})
        mine = [r for r in reported_runs(runs) if row_label(r) == method]
        diverged = sum(bool(r.get("diverged")) for r in mine)
        collapsed = sum(bool(r.get("collapsed")) for r in mine)
        label = DISPLAY_NAMES.get(method, method) + (f" (collapsed ×{collapsed})" if collapsed
                                                     else "")
        row = [label] + ([needs.get(method, "")] if with_needs else [])
        row += [format_cell(stats.get(key), key) if key in stats or not diverged
                else "diverged" for key, _ in columns]
        if with_needs:
            seeds = sorted({r["seed"] for r in mine})
            gap_format = "avg_gap" if is_sequence(results) else "avg_gap_percent"
            row += [format_cell(stats.get("avg_gap"), gap_format),
                    format_cell(stats.get("run_seconds"), "seconds") + _resumed_note(runs, method),
                    format_cell(stats.get("compile_seconds"), "seconds"),
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


def results_markdown(results: Mapping) -> str:
    """The full ``results.md``: command, setup, main table, secondary metrics, sweep summary."""
    config = results.get("config", {})
    parts = [f"# Unlearning results: {config.get('dataset', '?')} / {config.get('model', '?')} / "
             f"forget `{config.get('forget', '?')}`", ""]
    commands = commands_of(results)
    if len(commands) > 1:  # several writers or a resume with other seeds or methods
        parts += [f"Reproduce with these {len(commands)} commands (each made some of the runs): "
                  "one after another into the same --out, the later ones with --resume:"]
    if commands:
        parts += ["Reproduce with:"] if len(commands) == 1 else []
        parts += ["", "```", *commands, "```", ""]
    if config.get("counts"):
        parts += [f"Split sizes: {json.dumps(config['counts'])}.", ""]
    parts += [text, ""] if (text := models_text(config, results.get("runs", []))) else []
    if config.get("held_out"):
        parts += [held_out_text(config["held_out"]), ""]
    if config.get("selection_rule"):
        parts += [f"Tuning rule (oracle-tuned rows): {config['selection_rule']}", ""]
    if config.get("tuning_grids"):
        cap = config.get("step_cap")
        parts += ["Tuning grid" + (f" (max_steps = optimizer steps; this setting's retain-free "
                                   f"cap is {cap} steps)" if cap else "") + ":", ""]
        groups: dict[str, list[str]] = {}
        for name, grid in config["tuning_grids"].items():
            groups.setdefault(grid_text(grid), []).append(name)
        parts += [f"- {text}: {', '.join(names)}" for text, names in groups.items()]
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
    parts += ["Mean ± sample std (ddof 1) over the reported seeds. Fractions in %. Avg. Gap = "
              "mean |metric − Retrain| over the main metric columns (lower is better). "
              "retrain vs retrain (noise floor) = " + (
                  "the Retrain model of the experiment's next seed (1 vs 0, 2 vs 1, 0 vs 2)"
                  if config.get("noise_floor") == "next_seed" else
                  "a second Retrain model (seed + 1000)") + " scored "
              "against the first: the gap training randomness alone makes, which no method can "
              "be expected to beat. RTE = wall-clock seconds "
              "of the unlearning itself without JAX compilation (Retrain: its training time; "
              "Original: 0; \"resumed\": runs continued from a checkpoint, timed from there); "
              "compile = the seconds of the same call spent tracing and compiling JAX programs "
              "(– where not recorded: Retrain, and runs stored before it was, whose RTE "
              "includes compilation); RTE + compile = the whole call. The paper's RTE times the "
              "whole unlearning call in PyTorch's eager mode, which compiles nothing: it "
              "corresponds to our RTE (run time), and to RTE + compile only for a first call "
              "that compiles every program. Seconds vary run to run; "
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
        compared = comparison_table(results)
        if compared:
            parts += ["## Paired comparison with IMU (Avg. Gap)", "", COMPARISON_NOTE, "",
                      compared, ""]
        versus = retain_free_table(results)
        if versus:
            parts += ["## Retain-free vs oracle-tuned", "", versus, ""]
        columns = MIA_COLUMNS + ((CONTROL_COLUMN,) if any(
            CONTROL_COLUMN[0] in r.get("metrics", {}) for r in results["runs"]) else ())
        parts += ["## Other attacks and distances", "",
                  table(results, columns, with_needs=False), ""]
        matched = matched_forgetting(results)
        if matched:
            parts += ["## Utility at matched forgetting (tuning sweep, mean over tuning seeds, "
                      "TA on the validation split; UA levels relative to Retrain's)",
                      "",
                      matched, ""]
    return "\n".join(parts)


def held_out_text(held: Mapping) -> str:
    """The paragraph of ``results.md`` naming the validation and test splits, their sizes, how
    the validation split was made and what reads each (``config["held_out"]``).

    >>> text = held_out_text({"validation": 162, "test": 161, "carve": {"fraction": 0.5,
    ...                       "seed": 0, "stratified_by": "label"}})
    >>> "validation split** (162 examples" in text and "test split** (161 examples" in text
    True
    """
    carve = held.get("carve") or {}
    how = (f"{100 * carve['fraction']:.0f} % of the released test split"
           + (f", stratified by {carve['stratified_by']}" if carve.get("stratified_by") else "")
           + f", split seed {carve.get('seed', 0)}") if carve.get("fraction") else \
        "carved from the test split"
    extra = [f"{name} {held[name]}" for name in ("forget_validation", "forget_test",
                                                   "control_validation", "control_test")
             if name in held]
    return (f"Held-out data, three disjoint roles: the **validation split** "
            f"({held.get('validation', '?')} examples; {how}) is what the retain-free stopping "
            f"rule and the oracle tuning's Avg. Gap read; the **test split** "
            f"({held.get('test', '?')} examples, the rest) is where TA, the membership attack's "
            "non-members and every reported distance are measured, on the reported seeds only"
            + (f" (forget / control parts: {', '.join(extra)})" if extra else "") + ". TA is "
            "therefore measured on the reduced test split, not the released one: compare it with "
            "published numbers (e.g. the paper's, on the full test split) with that in mind.")


def grid_text(grid: Mapping[str, Sequence]) -> str:
    """A tuning grid on one line.

    >>> grid_text({"learning_rate": [0.01, 0.02], "epochs": [10]})
    'learning_rate ∈ {0.01, 0.02} × epochs ∈ {10}'
    """
    return " × ".join(f"{k} ∈ {{{', '.join(str(v) for v in values)}}}"
                      for k, values in grid.items()) or "not tuned"


def combined_markdown(named_results: Mapping[str, Mapping]) -> str:
    """A summary over several experiments (e.g. the ten digits classes): for each method the mean
    ± std across experiments of its per-experiment mean, and a per-experiment Avg. Gap table.

    >>> run = lambda m, ua: {"method": m, "seed": 0, "role": "eval", "metrics": {
    ...     "ua": ua, "ra": 1.0, "ta": 0.9, "mia_efficacy": ua}, "avg_gap": 1 - ua, "seconds": 1.0}
    >>> text = combined_markdown({"a": {"runs": [run("imu", 1.0)]}, "b": {"runs": [run("imu", 0.5)]}})
    >>> "| imu | 75.0 ± 35.4 |" in text  # sample std (ddof 1) over the experiments
    True
    """
    names = list(named_results)
    per_experiment = {name: summarize(named_results[name]["runs"]) for name in names}
    methods = list(dict.fromkeys(m for s in per_experiment.values() for m in s))
    keys = [k for k, _ in CLASSIFICATION_COLUMNS] + ["avg_gap", "run_seconds"]
    labels = [label for _, label in CLASSIFICATION_COLUMNS] + [
        "Avg. Gap ↓", rte_label([r for res in named_results.values() for r in res["runs"]])]
    lines = [f"Mean ± sample std over {len(names)} experiments ({', '.join(names)}) of each "
             "experiment's seed mean. Fractions in %.", "",
             "| Method | " + " | ".join(labels) + " |", "|" + "---|" * (len(keys) + 1)]
    for method in methods:
        row = [DISPLAY_NAMES.get(method, method)]
        for key in keys:
            values = [per_experiment[n][method][key][0] for n in names
                      if method in per_experiment[n] and key in per_experiment[n][method]]
            stats = (float(np.mean(values)), sample_std(values), len(values)) if values else None
            row.append(format_cell(stats, "avg_gap_percent" if key == "avg_gap" else key))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Avg. Gap (%) per experiment:", "",
              "| Method | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for method in methods:
        cells = [format_cell(per_experiment[n].get(method, {}).get("avg_gap"), "avg_gap_percent")
                 for n in names]
        lines.append(f"| {DISPLAY_NAMES.get(method, method)} | " + " | ".join(cells) + " |")
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
