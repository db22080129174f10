"""Figures drawn from stored results on demand: a monitored run's stopping curve, the per-step
trace, and the forgetting/utility trade-off. Matplotlib is imported inside each function (the
``[experiments]`` extra). Each is saved as a PNG with a 256-colour palette (:func:`save_png`)."""

from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import numpy as np

from imu_jax.lab.report.matched import sweep_points
from imu_jax.lab.report.runs import is_sequence, reported_runs, row_label, summarize
from imu_jax.lab.report.tables import CLASSIFICATION_COLUMNS, SEQUENCE_COLUMNS


def save_png(fig, path: str | os.PathLike, *, dpi: int) -> None:
    """Saves a Matplotlib figure as a PNG with a 256-colour palette: the plots' few flat colours
    and their anti-aliasing look the same, in a third of the bytes of Matplotlib's RGBA PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _palette_png(buffer, path)


def compact_png(path: str | os.PathLike) -> bool:
    """Rewrites a PNG with a 256-colour palette (as :func:`save_png` saves); ``False`` when it
    already has a palette (so it is idempotent)."""
    from PIL import Image  # Matplotlib's own dependency

    with Image.open(path) as image:
        if image.mode == "P":
            return False
        image.load()
    _palette_png(image, path)
    return True


def _palette_png(source, path) -> None:
    from PIL import Image  # Matplotlib's own dependency

    image = source if isinstance(source, Image.Image) else Image.open(source)
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"  # several runs may draw into one folder
    palette.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)


def plot_curve(curve: list[Mapping[str, float]], path: str, *, title: str = "",
               threshold: float | None = None, statistic: str = "statistic",
               utility_floor: float | None = None) -> None:
    """Writes the per-check curve (forget acc, held-out acc, the stopping statistic; the utility
    guard's floor when there is one) as a PNG."""
    from imu_jax import _extras

    matplotlib = _extras.require("matplotlib", "experiments", "plots")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [p["forget_acc"] for p in curve], "-o", ms=3, label="forget accuracy")
    ax.plot(steps, [p["held_out_acc"] for p in curve], "-o", ms=3, label="held-out accuracy")
    if curve and "utility_acc" in curve[0]:
        ax.plot(steps, [p["utility_acc"] for p in curve], "-o", ms=3,
                label="held-out accuracy, true labels")
    if statistic != "forget_acc":
        ax.plot(steps, [p["statistic"] for p in curve], "-o", ms=3, label=statistic)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"stop at {statistic} ≤ "
                   f"{threshold:.3f}")
    if utility_floor is not None:
        ax.axhline(utility_floor, color="tab:red", ls=":", lw=1,
                   label=f"utility guard: held-out accuracy ≥ {utility_floor:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    plt.close(fig)



def trace_plot(results: Mapping, path: str) -> None:
    """``steps.png``: each traced metric against the optimizer step, one line per method (mean
    over the reported seeds), with ``retrain_floor``'s value as a dashed horizontal line."""
    from imu_jax import _extras

    matplotlib = _extras.require("matplotlib", "experiments", "plots")

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
    save_png(fig, path, dpi=110)
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
    from imu_jax import _extras

    matplotlib = _extras.require("matplotlib", "experiments", "plots")

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
    save_png(fig, path, dpi=120)
    plt.close(fig)
