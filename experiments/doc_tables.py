"""Regenerates the results tables of README.md and docs/STOPPING.md from committed results.

Each generated table sits in its document between ``<!-- table:NAME -->`` and
``<!-- /table:NAME -->``; this script recomputes every block from ``experiments/results/`` (the
``results.json`` trees, read with their tuning runs by ``imu_jax.lab.store.load_results``, and
the stopping rule's ``calibration.json`` files) and rewrites it. Nothing in a block is typed by
hand, so a table can never disagree with the files it cites.

  python experiments/doc_tables.py           # rewrite the blocks in place
  python experiments/doc_tables.py --check   # exit 1 and name the blocks that differ

Statistics: a setting's cell is the mean over its reported seeds (class-wise: the mean over the
ten classes of each class's seed mean); ``±`` is the sample standard deviation (ddof 1) over the
seeds (class-wise: over the classes). Paired differences pair a method's run with IMU's on the
same original and Retrain models (same seed, same class) and give the 95 % t-interval of the mean
difference (:func:`imu_jax.lab.report.runs.mean_interval`); "tie" where it covers zero. Results
written under an earlier evaluation protocol (``config["protocol"]`` below
:data:`imu_jax.lab.protocol.PROTOCOL`) are marked as such, never mixed in silently.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import re
import sys
from typing import Callable, Mapping, Sequence

import numpy as np

from imu_jax.lab.arguments import load_config_module
from imu_jax.lab.protocol import PROTOCOL
from imu_jax.lab.report.runs import (mean_interval, paired_by_seed, reported_runs, row_label,
                                     sample_std, summarize)
from imu_jax.lab.store import load_results

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"

# The rows the README's comparison tables show, in this order (every row of every method is in
# each experiment's results.md).
MAIN_ROWS = ("original", "retrain", "retrain_floor", "imu (retain-free)", "imu (oracle-tuned)",
             "ga_head (retain-free)", "ga_head (oracle-tuned)", "ga (retain-free)",
             "ga (oracle-tuned)", "imu_random (retain-free)",
             "boundary_shrink_runner_up (retain-free)", "boundary_shrink (retain-free)",
             "random_label_forget_only (retain-free)", "salun (retain-free)",
             "random_label_with_retain", "ssd (retain-free)", "jit (retain-free)")
ROW_NAMES = {"retrain_floor": "retrain vs retrain (noise floor)",
             "jit": "jit (fixed length)", "scar": "scar (fixed length)",  # the CIFAR eval rows
             "boundary_shrink_reference": "boundary_shrink_reference (fixed length)"}
# The rows the README's text compares IMU with (issue 26: say where the difference is noise).
COMPARED = ("original", "ga_head (retain-free)", "imu_random (retain-free)",
            "random_label_forget_only (retain-free)", "boundary_shrink (retain-free)",
            "boundary_shrink_runner_up (retain-free)", "retrain_floor")
REFERENCE = "imu (retain-free)"


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict:
    """An experiment's results, read once (every table shares the loaded dict)."""
    return load_results(RESULTS / name)


def summary_of(experiment: dict) -> dict:
    """``{row: {key: (mean, std, n)}}`` of an experiment's runs, computed once and kept on it."""
    if "summary" not in experiment:
        experiment["summary"] = summarize(experiment["runs"])
    return experiment["summary"]


def setting(names: Sequence[str]) -> list[dict]:
    """The experiments of one setting (one folder, or the ten class folders)."""
    return [load(name) for name in names]


def classes(folder: str) -> list[str]:
    return [f"{folder}/class{k}" for k in range(10)]


def stale(experiments: Sequence[Mapping]) -> bool:
    return any(e["config"].get("protocol", 1) < PROTOCOL for e in experiments)


def row_stats(experiments: Sequence[Mapping], row: str, key: str) -> tuple[float, float, int] | None:
    """(mean, sample std, n) of ``key`` for ``row``: over seeds for one experiment, over the
    experiments' seed means for several."""
    means = []
    for experiment in experiments:
        stats = summary_of(experiment).get(row, {}).get(key)
        if stats is None:
            return None
        means.append(stats)
    if len(means) == 1:
        return means[0]
    values = [m for m, _, _ in means]
    return float(np.mean(values)), sample_std(values), len(values)


def needs_of(experiments: Sequence[Mapping], row: str) -> str:
    for experiment in experiments:
        for run in reported_runs(experiment["runs"]):
            if row_label(run) == row:
                return run.get("needs") or "—"
    return "—"


def percent(stats, digits: int = 1) -> str:
    return "–" if stats is None else f"{100 * stats[0]:.{digits}f}"


def collapsed_mark(experiments: Sequence[Mapping], row: str) -> str:
    """`` **collapsed k/n**`` when k of the row's n reported runs collapsed (TA below twice the
    test split's majority-class rate, ``run["collapsed"]``), else ``""``."""
    runs = [run for experiment in experiments for run in reported_runs(experiment["runs"])
            if row_label(run) == row]
    collapsed = sum(bool(run.get("collapsed")) for run in runs)
    return f" **collapsed {collapsed}/{len(runs)}**" if collapsed else ""


def gap_cell(experiments: Sequence[Mapping], row: str) -> str:
    gap = row_stats(experiments, row, "avg_gap")
    if gap is None:
        return "–"
    ua, ta = row_stats(experiments, row, "ua"), row_stats(experiments, row, "ta")
    return (f"{100 * gap[0]:.1f} ± {100 * gap[1]:.1f} ({percent(ua, 0)} / {percent(ta, 0)})"
            + collapsed_mark(experiments, row))


def gap_table(columns: Mapping[str, Sequence[Mapping]], rows: Sequence[str] = MAIN_ROWS,
              names: Mapping[str, str] = ROW_NAMES) -> str:
    """Avg. Gap ± std (UA / TA) of each row in each setting (rows no setting has are left out)."""
    lines = ["| Row | Data needed | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        if all(row_stats(e, row, "avg_gap") is None for e in columns.values()):
            continue
        needs = next((needs_of(e, row) for e in columns.values()
                      if row_stats(e, row, "avg_gap") is not None), "—")
        if row == "original":
            needs = "— (before unlearning)"
        cells = [gap_cell(e, row) for e in columns.values()]
        lines.append(f"| {names.get(row, row)} | {needs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_gaps(experiments: Sequence[Mapping], row: str, reference: str = REFERENCE) -> list[float]:
    """``row − reference`` Avg. Gap per (experiment, seed) where both ran and neither diverged."""
    return [d for experiment in experiments
            for d in paired_by_seed(experiment["runs"], row, reference)[1]]


def noise_table(columns: Mapping[str, Sequence[Mapping]], rows: Sequence[str] = COMPARED,
                names: Mapping[str, str] = ROW_NAMES) -> str:
    """Per setting, the paired Avg. Gap difference row − IMU (retain-free): mean [95 % CI],
    verdict, and the number of pairs (rows no setting has are left out)."""
    lines = ["| Row − IMU (retain-free) | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for experiments in columns.values():
            diffs = paired_gaps(experiments, row)
            if not diffs:
                cells.append("–")
                continue
            interval = mean_interval(diffs)
            if interval["low"] is None:
                cells.append(f"{100 * interval['mean']:+.1f} (n=1)")
                continue
            cells.append(f"{100 * interval['mean']:+.1f} [{100 * interval['low']:+.1f}, "
                         f"{100 * interval['high']:+.1f}] **{interval['verdict']}** "
                         f"(n={interval['n']})")
        if any(cell != "–" for cell in cells):
            lines.append(f"| {names.get(row, row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(experiments: Sequence[Mapping], rows: Sequence[str]) -> str:
    """UA, TA, MIA-efficacy and Avg. Gap (± over experiments) of ``rows``, sorted by Avg. Gap."""
    present = [r for r in rows if row_stats(experiments, r, "avg_gap") is not None]
    present.sort(key=lambda r: row_stats(experiments, r, "avg_gap")[0])
    lines = ["| Row | Data needed | UA | TA | MIA-eff. | Avg. Gap ↓ (± over classes) |",
             "|---|---|---|---|---|---|"]
    for row in present:
        gap = row_stats(experiments, row, "avg_gap")
        needs = "— (before unlearning)" if row == "original" else needs_of(experiments, row)
        lines.append(f"| {ROW_NAMES.get(row, row)} | {needs} | "
                     f"{percent(row_stats(experiments, row, 'ua'))} | "
                     f"{percent(row_stats(experiments, row, 'ta'))} | "
                     f"{percent(row_stats(experiments, row, 'mia_efficacy'))} | "
                     f"{100 * gap[0]:.1f} ± {100 * gap[1]:.1f}"
                     f"{collapsed_mark(experiments, row)} |")
    return "\n".join(lines)


def stale_note(columns: Mapping[str, Sequence[Mapping]]) -> str:
    old = [name for name, experiments in columns.items() if stale(experiments)]
    if not old:
        return ""
    return ("\n\n*Measured under the previous evaluation protocol (not yet rerun): "
            + ", ".join(old) + ".*")


# --- the README's tables -------------------------------------------------------------------

def mnist1d_columns() -> dict[str, list[dict]]:
    return {"class-wise, 10 classes": setting(classes("mnist1d_class")),
            "random 10%": setting(["mnist1d_random10"]),
            "mislabelled 10%": setting(["mnist1d_mislabeled10"])}


def digits_columns() -> dict[str, list[dict]]:
    return {"digits class-wise, 10 classes": setting(classes("digits_class"))}


def digits_sample_columns() -> dict[str, list[dict]]:
    return {"digits random 10%": setting(["digits_random10"]),
            "digits mislabelled 10%": setting(["digits_mislabeled10"])}


def readme_digits_samples() -> str:
    columns = digits_sample_columns()
    return gap_table(columns) + stale_note(columns)


def readme_mnist1d() -> str:
    columns = mnist1d_columns()
    return gap_table(columns) + stale_note(columns)


def readme_digits() -> str:
    columns = digits_columns()
    rows = [r for r in MAIN_ROWS if r != "retrain"] + ["retrain"]
    return metric_table(columns["digits class-wise, 10 classes"], rows) + stale_note(columns)


def readme_noise() -> str:
    columns = {**digits_columns(), **digits_sample_columns(),
               **{f"MNIST-1D {k}": v for k, v in mnist1d_columns().items()}}
    return noise_table(columns) + stale_note(columns)


# --- CIFAR-10 and CIFAR-100 (fastcnn on the shared JPEG images) ----------------------------

# The forget-only methods run retain-free in one folder per setting; JiT, SCAR and Boundary
# Shrink with its reference code's optimiser run at fixed length in a second folder (the
# retain-set config with --methods retrain,jit,scar,boundary_shrink_reference --fixed-length),
# on copies of the same models; the retain-set methods (:data:`RETAIN_SET`, the same config
# without --methods) in a third. A setting shows once its first folder holds results of this
# protocol; the other folders' rows join when they do too.
CIFAR10 = {"class 0": ("cifar10_fastcnn_class/class0", "cifar10_fastcnn_jit_scar/class0",
                       "cifar10_fastcnn_retain_set/class0"),
           "class 3": ("cifar10_fastcnn_class/class3", "cifar10_fastcnn_jit_scar/class3",
                       "cifar10_fastcnn_retain_set/class3"),
           "random 10%": ("cifar10_fastcnn_random10", "cifar10_fastcnn_jit_scar/random10",
                          "cifar10_fastcnn_retain_set/random10")}
CIFAR100 = {"superclass vehicles_2": ("cifar100_superclass_vehicles_2",
                                      "cifar100_jit_scar/superclass_vehicles_2",
                                      "cifar100_retain_set/superclass_vehicles_2"),
            "subclass rocket": ("cifar100_subclass_rocket", "cifar100_jit_scar/subclass_rocket",
                                "cifar100_retain_set/subclass_rocket"),
            "random 10%": ("cifar100_random10", "cifar100_jit_scar/random10",
                           "cifar100_retain_set/random10")}
FIXED_LENGTH = ("jit", "scar", "boundary_shrink_reference")
# The methods that pass over the retain set, at fixed length in a third folder of the same
# models where one has run: the retain-set configs' list without Retrain, JiT and SCAR.
RETAIN_SET = tuple(m for m in load_config_module(str(
    ROOT / "experiments" / "configs" / "unlearn_cifar10_fastcnn_retain_set.py")).RETAIN_SET
    if m != "retrain" and m not in FIXED_LENGTH)
FIXED_LENGTH += RETAIN_SET
CIFAR_NAMES = {**ROW_NAMES, **{m: f"{m} (fixed length)" for m in RETAIN_SET}}
CIFAR_ROWS = ("original", "retrain", "retrain_floor", "imu (retain-free)",
              "imu_batch (retain-free)", "imu_random (retain-free)", "ga_head (retain-free)",
              "ga (retain-free)", "npo (retain-free)", "simnpo (retain-free)",
              "random_label_forget_only (retain-free)",
              "boundary_shrink_runner_up (retain-free)", "boundary_shrink (retain-free)",
              "boundary_shrink_reference", "ssd (retain-free)", "jit", "scar") + RETAIN_SET
CIFAR_NOISE_ROWS = [r for r in COMPARED if r != "boundary_shrink_runner_up (retain-free)"] + [
    "boundary_shrink_runner_up (retain-free)", "boundary_shrink_reference",
    "imu_batch (retain-free)", "ga (retain-free)", "npo (retain-free)", "ssd (retain-free)",
    *RETAIN_SET]


def cifar_columns(settings: Mapping[str, tuple[str, str]]) -> dict[str, list[dict]]:
    """The settings rerun under this protocol: the forget-only folder's runs, plus the
    fixed-length runs (:data:`FIXED_LENGTH`) of the other folders on the same models."""
    columns = {}
    for name, (forget_only, *fixed_folders) in settings.items():
        if not (RESULTS / forget_only / "results.json").exists():
            continue
        main = load(forget_only)
        if stale([main]):
            continue
        runs = list(main["runs"])
        for fixed in fixed_folders:
            if (RESULTS / fixed / "results.json").exists() and not stale([load(fixed)]):
                runs += [r for r in load(fixed)["runs"] if r["method"] in FIXED_LENGTH]
        columns[name] = [{"config": main["config"], "runs": runs}]
    return columns


def baselines_table(columns: Mapping[str, Sequence[Mapping]]) -> str:
    """What issue 26 asked to see of the baselines, per seed: SCAR's steps (or the step it
    diverged at), SSD's dampened parameters, and the runs that collapsed."""
    lines = ["| setting | SCAR steps (fixed length) | SSD dampened parameters | collapsed runs |",
             "|---|---|---|---|"]
    for name, (experiment,) in columns.items():
        runs = sorted(reported_runs(experiment["runs"]), key=lambda r: r["seed"])
        scar = [(f"diverged at {r['info'].get('stopped_at')}" if r.get("diverged")
                 else str(r["info"].get("steps"))) for r in runs if r["method"] == "scar"]
        ssd = [r["info"] for r in runs if r["method"] == "ssd"]
        collapsed = sorted({row_label(r) for r in runs if r.get("collapsed")})
        lines.append(f"| {name} | {' / '.join(scar) or '–'} | "
                     + (" / ".join(dampened(info) for info in ssd) or "–")
                     + f" | {', '.join(collapsed) or 'none'} |")
    return "\n".join(lines)


def dampened(info: Mapping) -> str:
    """SSD's dampened count and share; runs before SSD recorded its parameter count were all
    CIFAR-10's fastcnn."""
    total = info.get("parameters", CIFAR10_FASTCNN_PARAMETERS)
    return f"{info['dampened_parameters']:,} ({100 * info['dampened_parameters'] / total:.2f} %)"


CIFAR10_FASTCNN_PARAMETERS = 75_290  # the CIFAR-10 CPU recipe's network (experiments/README.md)


def cifar_tables(name: str, settings: Mapping[str, tuple[str, str]]) -> dict[str, tuple]:
    """The three README blocks of one CIFAR benchmark: Avg. Gap, paired differences from IMU,
    and the baselines' per-seed facts."""
    return {name: ("README.md",
                   lambda: gap_table(cifar_columns(settings), CIFAR_ROWS, CIFAR_NAMES)),
            f"{name}-noise": ("README.md", lambda: noise_table(
                cifar_columns(settings), CIFAR_NOISE_ROWS, CIFAR_NAMES)),
            f"{name}-baselines": ("README.md", lambda: baselines_table(cifar_columns(settings)))}


# --- docs/STOPPING.md ----------------------------------------------------------------------

CALIBRATION = RESULTS / "stopping_calibration"


def calibration(name: str) -> list[dict]:
    return json.loads((CALIBRATION / name / "calibration.json").read_text())


def stopping_learning_rate() -> str:
    """IMU and GA at each learning rate, per class: mean Avg. Gap over the tuning seeds."""
    rows = [r for r in calibration("learning_rate") if r["option"] == "chance"
            and r["utility_drop"] == "auto"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = [(m, lr) for m in methods
               for lr in sorted({r["lr"] for r in rows if r["method"] == m})]
    specs = list(dict.fromkeys(r["spec"] for r in rows))
    lines = ["| forget | " + " | ".join(f"{m} lr {lr:g}" for m, lr in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for spec in specs:
        cells = []
        for method, lr in columns:
            match = [r for r in rows if (r["spec"], r["method"], r["lr"]) == (spec, method, lr)]
            if not match:
                cells.append("–")
                continue
            r = match[0]
            caps = sum(stop == "cap" for stop in r["stop"])
            cells.append(f"{100 * r['avg_gap']:.2f}" + (f" ({caps} cap)" if caps else ""))
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    steps = []
    for method, lr in columns:
        counts = [s for r in rows if (r["method"], r["lr"]) == (method, lr) for s in r["steps"]]
        steps.append(f"{min(counts)}–{max(counts)}" if counts else "–")
    lines.append("| steps (min–max) | " + " | ".join(steps) + " |")
    return "\n".join(lines)


def stopping_guard() -> str:
    """Each method at its default lr under each utility-guard tolerance: mean Avg. Gap."""
    lines = []
    for name, title in (("guard_mnist1d", "MNIST-1D random 10 %"),
                        ("guard_digits", "digits mislabelled 10 %")):
        rows = calibration(name)
        drops = list(dict.fromkeys(r["utility_drop"] for r in rows))
        if not lines:
            lines = ["| setting, method | " + " | ".join(drops) + " |",
                     "|---|" + "---|" * len(drops)]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        means = {d: [] for d in drops}
        for i, method in enumerate(methods):
            cells = []
            for drop in drops:
                r = next(r for r in rows if (r["method"], r["utility_drop"]) == (method, drop))
                means[drop].append(r["avg_gap"])
                caps = sum(stop == "cap" for stop in r["stop"])
                cells.append(f"{100 * r['avg_gap']:.1f}" + (" (cap)" if caps else ""))
            label = f"{title}, {method}" if i == 0 else method
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append(f"| *mean of {len(methods)}* | "
                     + " | ".join(f"*{100 * np.mean(means[d]):.1f}*" for d in drops) + " |")
    return "\n".join(lines)


def stopping_must_show() -> str:
    """Doing nothing vs retain-free IMU vs oracle-tuned IMU, per setting (reported seeds)."""
    settings = {"digits class-wise, 10 classes": classes("digits_class"),
                "digits mislabelled 10%": ["digits_mislabeled10"],
                "MNIST-1D class-wise, 10 classes": classes("mnist1d_class"),
                "MNIST-1D random 10%": ["mnist1d_random10"],
                "MNIST-1D mislabelled 10%": ["mnist1d_mislabeled10"]}
    lines = ["| setting | doing nothing | IMU retain-free | IMU oracle-tuned | retain-free / "
             "oracle | retain-free better than nothing | protocol |",
             "|---|---|---|---|---|---|---|"]
    for name, folders in settings.items():
        experiments = setting(folders)
        nothing = row_stats(experiments, "original", "avg_gap")
        free = row_stats(experiments, "imu (retain-free)", "avg_gap")
        oracle = row_stats(experiments, "imu (oracle-tuned)", "avg_gap")
        per_experiment = [(summary_of(e)["imu (retain-free)"]["avg_gap"][0],
                           summary_of(e)["original"]["avg_gap"][0]) for e in experiments]
        better = sum(f <= n for f, n in per_experiment)
        lines.append(
            f"| {name} | {100 * nothing[0]:.1f} | {100 * free[0]:.1f} ± {100 * free[1]:.1f} | "
            + (f"{100 * oracle[0]:.1f} ± {100 * oracle[1]:.1f} | {free[0] / oracle[0]:.2f}× | "
               if oracle else "– | – | ")
            + f"{better}/{len(experiments)} | "
            + ("previous (not rerun)" if stale(experiments) else f"{PROTOCOL}") + " |")
    return "\n".join(lines)


def stopping_class3() -> str:
    """Retain-free vs oracle-tuned rows of digits class 3, seeds 0–2."""
    experiment = load("digits_class/class3")
    summary = summary_of(experiment)
    lines = ["| method | retain-free Avg. Gap | UA / TA | oracle-tuned Avg. Gap | UA / TA |",
             "|---|---|---|---|---|"]

    def cell(row):
        s = summary.get(row)
        if not s:
            return "– | –"
        return (f"{100 * s['avg_gap'][0]:.1f} ± {100 * s['avg_gap'][1]:.1f} | "
                f"{100 * s['ua'][0]:.1f} / {100 * s['ta'][0]:.1f}")

    for method in ("imu", "ga", "ga_head", "imu_random"):
        lines.append(f"| {method} | {cell(method + ' (retain-free)')} | "
                     f"{cell(method + ' (oracle-tuned)')} |")
    lines.append(f"| original (nothing done) | {cell('original')} | | |")
    return "\n".join(lines)


TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "mnist1d": ("README.md", readme_mnist1d),
    "digits": ("README.md", readme_digits),
    "digits-samples": ("README.md", readme_digits_samples),
    "noise": ("README.md", readme_noise),
    **cifar_tables("cifar10", CIFAR10),
    **cifar_tables("cifar100", CIFAR100),
    "stopping-lr": ("docs/STOPPING.md", stopping_learning_rate),
    "stopping-guard": ("docs/STOPPING.md", stopping_guard),
    "stopping-must-show": ("docs/STOPPING.md", stopping_must_show),
    "stopping-class3": ("docs/STOPPING.md", stopping_class3),
}


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(.*?)(<!-- /table:{re.escape(name)} -->)",
                      re.S)


def render(text: str, name: str, table: str) -> str:
    pattern = block(name)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- table:{name} --> block in the document")
    return pattern.sub(lambda m: m.group(1) + table.rstrip("\n") + "\n" + m.group(3), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a document's block differs from what the results give")
    parser.add_argument("--only", default=None, help="comma-separated table names")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(TABLES)
    differ = []
    for name in names:
        doc, make = TABLES[name]
        path = ROOT / doc
        text = path.read_text()
        if not block(name).search(text):
            continue  # the document does not show this table (yet)
        new = render(text, name, make())
        if new != text:
            differ.append(f"{doc}: {name}")
            if not args.check:
                path.write_text(new)
    if differ:
        print(("differs from the results: " if args.check else "rewrote: ") + ", ".join(differ))
    return 1 if (differ and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
