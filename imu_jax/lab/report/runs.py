"""The runs a report shows and their statistics over seeds (shared by the tables, matched forgetting
and the plots)."""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np


REPORTED_ROLES = ("eval", "retain_free")


def reported_runs(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs that go into the tables: ``role`` ``"eval"`` (defaults or oracle-tuned) and
    ``"retain_free"`` (the stopping rule of ``imu_jax.unlearning.stopping``)."""
    return [r for r in runs if r.get("role", "eval") in REPORTED_ROLES]


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


def is_sequence(results: Mapping) -> bool:
    return any("kl_true_test" in r["metrics"] for r in results["runs"])


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
