"""The headline question of issue 11: at identical forgetting, how much test accuracy does IMU
keep compared with uniform gradient ascent on the head (GA-head) and on all parameters (GA)?

Two measurements, over any number of ``imu-jax run`` output folders (e.g. the ten MNIST-1D
classes):

* **oracle sweep** — each method's tuning grid (the same 12-configuration budget, tuning seeds,
  seed-averaged): at each forgetting level (UA ≥ f × Retrain's UA) the best TA any configuration
  of the method reaches. IMU's relative utility gain over a baseline is
  ``mean TA_imu / mean TA_base − 1`` over the folders where both reach the level.
* **retain-free** — the rows stopped by the retain-free rule. For class removal every method is
  stopped at the same target (forget accuracy ≤ chance), so their forgetting is matched by
  construction; their TA is compared the same way (folders where both reached the target).

Usage:
  python experiments/matched_forgetting.py experiments/results/mnist1d_class/class* \
      --out experiments/results/mnist1d_class/matched_forgetting.md
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from imu_jax.lab.report import best_at_forgetting, summarize
from imu_jax.lab.store import load_results

LEVELS = (0.5, 0.8, 0.9)
METHODS = ("imu", "ga_head", "ga")


def best_ta_at(results: Mapping, method: str, level: float) -> float | None:
    """Best seed-averaged TA among ``method``'s sweep configs with UA ≥ level × Retrain's UA
    (``report.best_at_forgetting``, the cell of each ``results.md``'s matched-forgetting table)."""
    best = best_at_forgetting(results, method, level)
    return None if best is None else best["metrics"]["ta"]


def retain_free_point(results: Mapping, method: str) -> tuple[float, float] | None:
    """(UA, TA) of ``method``'s retain-free row (mean over its non-diverged seeds, as in the
    tables); ``None`` without one."""
    row = summarize(results["runs"], ["ua", "ta"]).get(f"{method} (retain-free)")
    if not row or "ua" not in row or "ta" not in row:
        return None
    return row["ua"][0], row["ta"][0]


def gain(ours: list[float | None], theirs: list[float | None]) -> str:
    """Relative TA gain of the mean over the folders where both have a value (a ratio of means:
    a mean of per-folder ratios explodes where a baseline's TA is near 0), and the win count."""
    pairs = [(a, b) for a, b in zip(ours, theirs) if a is not None and b is not None]
    if not pairs or np.mean([b for _, b in pairs]) <= 0:
        return "—"
    rel = np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs]) - 1
    wins = sum(a >= b for a, b in pairs)
    return f"{100 * rel:+.1f}% (IMU ≥ in {wins}/{len(pairs)})"


def _cell(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    return f"{100 * np.mean(got):.1f} ({len(got)}/{len(values)})" if got else "not reached"


def matched_markdown(named: Mapping[str, Mapping], methods: Sequence[str] = METHODS,
                     levels: Sequence[float] = LEVELS, min_ua: float = 0.9) -> str:
    """Both tables as markdown (module docstring)."""
    names = list(named)
    lines = [f"Folders: {', '.join(names)}.", "",
             "**Oracle sweep** — best TA (%) at UA ≥ level × Retrain's UA, mean over the folders "
             "where the method reaches the level (reached / folders); then IMU's relative TA gain "
             "(ratio of the mean TAs) over each baseline in the folders where both reach it.", ""]
    head = ["level"] + [f"{m} TA" for m in methods] + [f"IMU vs {m}" for m in methods[1:]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in levels:
        per = {m: [best_ta_at(named[n], m, level) for n in names] for m in methods}
        row = [f"UA ≥ {level:g} × Retrain"] + [_cell(per[m]) for m in methods]
        row += [gain(per[methods[0]], per[m]) for m in methods[1:]]
        lines.append("| " + " | ".join(row) + " |")
    points = {m: [retain_free_point(named[n], m) for n in names] for m in methods}
    reached = {m: [p[1] if p and p[0] >= min_ua else None for p in points[m]] for m in methods}
    lines += ["", f"**Retain-free** — the rows stopped by the rule; TA (%) counted where the "
              f"method's mean UA ≥ {100 * min_ua:.0f}% (matched by the class-removal target; "
              "reached / folders), and IMU's relative TA gain where both did.", ""]
    head = ["rows"] + [f"{m} TA" for m in methods] + [f"IMU vs {m}" for m in methods[1:]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    row = ["retain-free"] + [_cell(reached[m]) for m in methods]
    row += [gain(reached[methods[0]], reached[m]) for m in methods[1:]]
    lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Per folder, retain-free UA / TA (%):", "",
              "| folder | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for i, name in enumerate(names):
        cells = [f"{100 * p[0]:.1f} / {100 * p[1]:.1f}" if p else "—"
                 for p in (points[m][i] for m in methods)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="imu-jax run output folders")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated; the first is compared with the others")
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args()
    named = {pathlib.Path(f).name: load_results(f) for f in args.folders}  # with the sweep
    text = matched_markdown(named, args.methods.split(","))
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
