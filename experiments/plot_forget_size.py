"""Avg. Gap against forget-set size: one line per method (MNIST-1D random forgetting sweep).

Usage (after the commands of configs/unlearn_mnist1d_forget_size.py):
  python experiments/plot_forget_size.py experiments/results/mnist1d_forget_size
Reads every DIR/random<F>/results.json and writes DIR/forget_size.png (retain-free rows solid,
oracle-tuned rows dashed, the original model — nothing unlearned — in black) and
DIR/forget_size.md (the same numbers as a table, mean ± sample std over the reported seeds).
The noise floor (a second Retrain against the first) is a grey dotted line and a table row. A
panel is drawn for each kind of row measured at two fractions or more.
"""

from __future__ import annotations

import pathlib
import sys

from imu_jax.lab.report import format_cell, summarize
from imu_jax.lab.report.runs import DISPLAY_NAMES
from imu_jax.lab.store import load_results


def load(root: pathlib.Path) -> dict[float, dict]:
    """``{fraction: summary}`` for every ``random<F>`` folder under ``root``."""
    found = {}
    for path in sorted(root.glob("random*/results.json")):
        fraction = float(path.parent.name.removeprefix("random"))
        found[fraction] = summarize(load_results(path.parent)["runs"], ["avg_gap", "ua", "ta"])
    if not found:
        raise SystemExit(f"no random*/results.json under {root}")
    return dict(sorted(found.items()))


FLOOR = "retrain_floor"  # a second Retrain (another seed) scored against the first
LABELS = DISPLAY_NAMES  # the row names of results.md


def rows(by_fraction: dict[float, dict]) -> list[str]:
    """Every table row (method), in first-seen order, without Retrain itself (its gap is 0);
    the noise floor stays."""
    names = dict.fromkeys(m for s in by_fraction.values() for m in s)
    return [m for m in names if m != "retrain"]


def markdown(by_fraction: dict[float, dict]) -> str:
    fractions = list(by_fraction)
    lines = ["Avg. Gap to Retrain (%, mean ± sample std over the reported seeds) by forget "
             "fraction; the noise floor is a second Retrain scored against the first.", "",
             "| Method | " + " | ".join(f"{100 * f:g}%" for f in fractions) + " |",
             "|" + "---|" * (len(fractions) + 1)]
    for name in rows(by_fraction):
        cells = [format_cell(by_fraction[f].get(name, {}).get("avg_gap"), "avg_gap_percent")
                 for f in fractions]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(by_fraction: dict[float, dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = rows(by_fraction)
    # a panel per kind of row measured at two fractions or more (the sweep may skip the oracle)
    kinds = [kind for kind in ("retain-free", "oracle-tuned")
             if any(sum(name in s for s in by_fraction.values()) >= 2
                    for name in names if name.endswith(f"({kind})"))]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 5), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, kind in zip(axes, kinds):
        for name in names:
            if not (name in ("original", FLOOR) or name.endswith(f"({kind})")):
                continue
            points = [(f, 100 * s[name]["avg_gap"][0]) for f, s in by_fraction.items()
                      if name in s and "avg_gap" in s[name]]
            if not points:
                continue
            xs, ys = zip(*points)
            i = names.index(name)  # twenty lines: 20 colours, three line styles, two markers
            style = dict(color=plt.cm.tab20(i % 20), ls=("-", "--", ":")[i % 3],
                         marker="os"[i // 10 % 2], lw=1.3, ms=4)
            if name == "original":
                style.update(color="black", lw=2.5, ls="-", zorder=5)
            if name == FLOOR:
                style.update(color="grey", lw=2.5, ls=":", marker="", zorder=5)
            if name.startswith(("imu ", "imu(")):
                style.update(color="tab:red", lw=3, ls="-", zorder=6)
            ax.plot(xs, ys, label=LABELS.get(name, name).replace(f" ({kind})", ""), **style)
        ax.set_xscale("log")
        ax.set_xticks(list(by_fraction), [f"{100 * f:g}%" for f in by_fraction])
        ax.set_xlabel("forget set (fraction of the training set)")
        ax.set_title(f"{kind} rows")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("Avg. Gap to Retrain (%) ↓")
    fig.suptitle("MNIST-1D random forgetting: Avg. Gap against forget-set size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(directory: str) -> None:
    root = pathlib.Path(directory)
    by_fraction = load(root)
    (root / "forget_size.md").write_text(markdown(by_fraction))
    plot(by_fraction, root / "forget_size.png")
    print(root / "forget_size.md", root / "forget_size.png")


if __name__ == "__main__":
    main(sys.argv[1])
