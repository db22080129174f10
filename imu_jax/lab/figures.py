"""Figures of an experiment drawn on demand (``imu-jax plot``): each monitored run's stopping
curve from ``OUT/curves.jsonl.xz``, and the summary figures (``tradeoff.png``, ``steps.png``)
from ``OUT/results.json`` and its tuning sweep (``OUT/tune_runs.jsonl.xz``,
:mod:`imu_jax.lab.store`)."""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from imu_jax.lab import curves as curves_lib
from imu_jax.lab import report, store


CURVES_INTO = "curves"  # default folder of the curve PNGs, under OUT


def draw(out: str | os.PathLike, runs: Sequence[str] | None = None, *, summary: bool = False,
         into: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Draws the curve PNG ``<name>.png`` of each run in ``runs`` (names as in
    ``OUT/curves.jsonl.xz``; ``None``: every run; ``[]``: none) into ``into`` (default
    ``OUT/curves/``), and with ``summary`` ``tradeoff.png`` (and ``steps.png`` when runs have a
    per-step trace) into ``into`` (default ``OUT``). Returns the paths written.

    A folder without results, a folder without curves when curves are asked for, and an unknown
    run name (the message lists the names there are) are one-line ``ValueError``\\ s."""
    out = pathlib.Path(out)
    has_results = store.has_results(out)
    if not out.is_dir() or not (has_results or (out / curves_lib.CURVES_FILE).is_file()
                                or any((out / curves_lib.LEGACY_FOLDER).glob("*.json"))):
        raise ValueError(f"{out} holds no results (no {store.RESULTS_JSON} or "
                         f"{curves_lib.CURVES_FILE}): give the --out folder of an imu-jax run.")
    written = []
    if runs is None or runs:
        written += _draw_curves(out, runs, pathlib.Path(into) if into else out / CURVES_INTO)
    if summary:
        if not has_results:
            raise ValueError(f"{out} has no {store.RESULTS_JSON} to draw the summary figures "
                             "from.")
        written += _draw_summary(out, pathlib.Path(into) if into else out)
    return written


def _draw_curves(out: pathlib.Path, runs: Sequence[str] | None,
                 into: pathlib.Path) -> list[pathlib.Path]:
    found = curves_lib.read_curves(out)
    if not found:
        raise ValueError(f"{out} has no per-run curves ({curves_lib.CURVES_FILE}: only runs "
                         "stopped by the retain-free rule have one); --summary draws "
                         f"{store.TRADEOFF_PNG} from {store.RESULTS_JSON}.")
    names = list(found) if runs is None else [r.split("#", 1)[-1] for r in runs]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"no run named {', '.join(map(repr, unknown))} in "
                         f"{out / curves_lib.CURVES_FILE}; it has: {', '.join(found)}.")
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        record = found[name]
        method, _, seed = curves_lib.split_name(name)
        title = (f"{method} seed {seed}" if seed is not None else name) + (
            f": {record.get('stop_reason')} at step {record.get('stopped_at')}")
        path = into / f"{name}.png"
        report.plot_curve(record["curve"], str(path), title=title,
                          threshold=record.get("threshold"),
                          statistic=record.get("statistic", "statistic"),
                          utility_floor=record.get("utility_floor"))
        written.append(path)
    return written


def _draw_summary(out: pathlib.Path, into: pathlib.Path) -> list[pathlib.Path]:
    try:  # the tuning sweep (tune_runs.jsonl.xz) too: tradeoff.png draws it
        results = store.load_results(out)
    except store.UnreadableResults as err:
        raise ValueError(f"{err.path} is not the results of an imu-jax run ({err.problem})."
                         ) from None
    if not results["runs"]:
        raise ValueError(f"{out / store.RESULTS_JSON} is not the results of an imu-jax run "
                         "(no runs).")
    into.mkdir(parents=True, exist_ok=True)
    written = [into / store.TRADEOFF_PNG]
    report.tradeoff_plot(results, str(written[0]))
    if any(r.get("trace") for r in results["runs"]):
        written.append(into / store.STEPS_PNG)
        report.trace_plot(results, str(written[1]))
    return written
