"""The README section of the per-example forgetting evaluation (issue 29), drawn from the
``results.json`` of every setting under a folder (``imu-jax forgetting-score`` outputs).

Run (after the settings' runs; seconds)::

    python experiments/forgetting_score_section.py experiments/results/forgetting_score \
        --out experiments/results/forgetting_score/README_SECTION.md

Per setting: the methods ranked by F (± std over bootstrap resamples of the models) beside the
floor, U-LiRA, Avg. Gap and the SVC attack; F on the first 8, 16, 32 models; and, computed from
the numbers, where F and the Avg. Gap agree or disagree: the rank correlation of the two
orderings and every pair of methods that the Avg. Gap orders one way and F the other with F's
difference beyond twice its bootstrap spread. Nothing in the text is typed in by hand: a
setting without results is listed as not run.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from imu_jax.lab.forgetting_report import ranked  # noqa: E402


def _spearman(a, b) -> str:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return "undefined (every method ties on one of them)"
    return f"{float(spearmanr(a, b).statistic):.2f}"


def disagreements(results: dict, *, gap_margin: float = 0.01,
                  min_difference: float = 0.005) -> list[tuple[str, str]]:
    """Pairs ``(a, b)`` where ``a`` has the smaller Avg. Gap (by more than ``gap_margin``, i.e.
    one percentage point) but the clearly smaller F (difference > 2 × the root sum of squares
    of the two bootstrap stds, and > ``min_difference``: F values of 0.000 and 0.0003 with zero
    spread are not a disagreement): the Avg. Gap calls ``a`` better, F calls it worse."""
    out = []
    items = [(n, m) for n, m in results["methods"].items() if n != "retrain_floor"]
    for a, ma in items:
        for b, mb in items:
            if ma["avg_gap"] + gap_margin < mb["avg_gap"]:
                sa = ma["F_bootstrap"]["std"] or 0.0
                sb = mb["F_bootstrap"]["std"] or 0.0
                if mb["F"] - ma["F"] > max(2 * math.hypot(sa, sb), min_difference):
                    out.append((a, b))
    return out


def setting_section(name: str, results: dict) -> str:
    cfg = results["config"]
    lines = [f"#### {cfg['dataset']}, forget {cfg['forget']} ({cfg['model']}; "
             f"`{name}`)", "",
             f"`{cfg.get('command') or 'run_forgetting_score(...)'}` — N = {cfg['n_models']} "
             f"per population; forget set {cfg['counts']['forget']} examples; "
             f"{_minutes(results)} on the 2-core CPU.", "",
             "| Rank | Method | N | F ↑ (± boot. std) | U-LiRA AUC ↓ | TPR @ 1% FPR | "
             "Avg. Gap ↓ | MIA-eff. (SVC) | UA | TA |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rank, (method, m) in enumerate(ranked(results), 1):
        boot = m["F_bootstrap"]["std"]
        tpr = m["ulira"]["tpr_at_fpr"].get("0.01")
        lines.append(
            f"| {rank} | {method} | {m['n_models']} | {m['F']:.3f}"
            + (f" ± {boot:.3f}" if boot is not None else "")
            + f" | {m['ulira']['auc']:.3f} | {'' if tpr is None else f'{tpr:.3f}'} | "
            f"{100 * m['avg_gap']:.1f} | {100 * m['metrics']['mia_efficacy']:.1f} | "
            f"{100 * m['metrics']['ua']:.1f} | {100 * m['metrics']['ta']:.1f} |")
    methods = [(n, m) for n, m in results["methods"].items() if n != "retrain_floor"]
    rho = _spearman([-m["F"] for _, m in methods], [m["avg_gap"] for _, m in methods])
    flips = disagreements(results)
    floor = results["methods"].get("retrain_floor")
    saturated = [n for n, m in methods if m["metrics"]["mia_efficacy"] >= 0.99]
    lines += ["", f"- Rank correlation (Spearman) of the F ranking and the Avg. Gap ranking "
              f"(floor excluded): {rho}."]
    if floor:
        above = [n for n, m in methods if m["F"] >= floor["F"] - 2 * (
            floor["F_bootstrap"]["std"] or 0)]
        lines.append(f"- The floor (Retrain vs Retrain of other seeds) scores F = "
                     f"{floor['F']:.3f}, U-LiRA AUC {floor['ulira']['auc']:.3f}; within two "
                     f"bootstrap stds of it: {', '.join(above) or 'no method'}.")
    lines.append("- Pairs the Avg. Gap ranks one way and F clearly the other (a: smaller Avg. "
                 "Gap, b: larger F, by more than 2 bootstrap stds and 0.005): "
                 + ("; ".join(f"{a} < {b}" for a, b in flips) if flips else "none") + ".")
    if saturated:
        f_values = [results["methods"][n]["F"] for n in saturated]
        lines.append(f"- SVC MIA-efficacy ≥ 99 for {', '.join(saturated)}: the population "
                     f"attack cannot order them; their F spans {min(f_values):.3f} … "
                     f"{max(f_values):.3f}.")
    return "\n".join(lines)


def n_table(settings: dict[str, dict]) -> str:
    settings = {name: r for name, r in settings.items()
                if any(len(m["F_by_n"]) > 1 for m in r["methods"].values())}
    sizes = sorted({int(k) for r in settings.values() for m in r["methods"].values()
                    for k in m["F_by_n"]})
    lines = ["| Setting | Method | " + " | ".join(f"F, N = {k}" for k in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for name, r in settings.items():
        for method, m in ranked(r):
            cells = [f"{m['F_by_n'][str(k)]:.3f}" if str(k) in m["F_by_n"] else ""
                     for k in sizes]
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _minutes(results: dict) -> str:
    t = results.get("times", {})
    if "total_s" in t:
        return f"{t['total_s'] / 60:.1f} min"
    total = sum(v for v in t.values() if isinstance(v, (int, float))) + sum(
        m.get("apply_s", 0) + m.get("score_s", 0) for m in results["methods"].values())
    return f"{total / 60:.1f} min"


def section(root: pathlib.Path, expected=(), note: str = "") -> str:
    settings = {}
    for path in sorted(root.glob("**/results.json")):
        results = json.loads(path.read_text())
        if results.get("config", {}).get("kind") == "forgetting_score":
            settings[path.parent.relative_to(root).as_posix()] = results
    missing = [e for e in expected if e not in settings]
    parts = ["### Per-example forgetting: the competition's F and U-LiRA (issue 29)", "",
             "For each setting, N original models, N retrained models (the reference) and N "
             "more retrained models of other seeds (the Retrain-vs-Retrain floor) are trained "
             "at once with the vmapped ensemble trainer; each method is applied to each "
             "original, stopped by the retain-free rule on the validation split. For every "
             "forget example the competition's ε compares its logit-scaled confidence under the "
             "N unlearned models with that under the N retrained ones; F is the mean of 2^-k "
             "over the ε bins (1 best; the floor is not 1 but the score of retraining itself); "
             "± is the std of F over bootstrap resamples of the models. U-LiRA: per-example "
             "Gaussian likelihood ratio, half of each population as shadows, AUC over the other "
             "half (0.5 = cannot tell). Avg. Gap and the SVC MIA-efficacy are the per-model "
             "metrics of the other tables, averaged over the N models. Regenerate: "
             "`python experiments/forgetting_score_section.py "
             f"{root.as_posix()} --out OUT.md`.", ""]
    if note:
        parts += [f"**{note}**", ""]
    for name, results in settings.items():
        parts += [setting_section(name, results), ""]
    if any(len(m["F_by_n"]) > 1 for r in settings.values() for m in r["methods"].values()):
        parts += ["#### How F moves with N (F on the first N models of each population)", "",
                  "The ε range, ceil(log(N − 1)), grows with N, so larger N can tell larger "
                  "ε apart and F is comparable only at equal N.", "", n_table(settings), ""]
    if missing:
        parts += ["Not run yet: " + ", ".join(missing) + " (queued).", ""]
    return "\n".join(parts)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", help="folder holding one results folder per setting")
    ap.add_argument("--out", help="write the section here (default: print it)")
    ap.add_argument("--expect", default="digits_class3,mnist1d_class3,mnist1d_random10",
                    help="settings to list as not run when their results are missing")
    ap.add_argument("--note", default="", help="a line printed in bold under the introduction")
    args = ap.parse_args(argv)
    text = section(pathlib.Path(args.root), [e for e in args.expect.split(",") if e], args.note)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        print(text)
    return text


if __name__ == "__main__":
    main()
