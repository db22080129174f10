"""Every row of an experiment against IMU's: the paired difference of Avg. Gap over seeds, its
95 % t-interval and the verdict (``tie`` where the interval covers zero), for ``results.md``."""

from __future__ import annotations

from typing import Mapping, Sequence

from imu_jax.lab.report.runs import (DISPLAY_NAMES, is_sequence, paired_difference, reported_runs,
                                     row_label)


COMPARISON_NOTE = ("Difference of Avg. Gap, row − IMU (the IMU row of the same kind: retain-free "
                   "with retain-free, oracle-tuned with oracle-tuned; otherwise IMU's retain-free "
                   "row), paired by seed (each seed's runs share the original and Retrain "
                   "models), in percentage points: mean and 95 % t-interval over the seeds both "
                   "rows ran (t_{0.975, n−1} · sample std / √n; "
                   "imu_jax.lab.report.runs.paired_difference). **tie** = the interval covers 0; "
                   "lower / higher = the row's gap is below / above IMU's at that level.")


def comparison_reference(rows: Sequence[str], row: str, method: str = "imu") -> str | None:
    """The row of ``method`` that ``row`` is compared with: the same kind (retain-free,
    oracle-tuned) when there is one, else ``method``'s retain-free row, else its plain row.

    >>> rows = ["ga (retain-free)", "imu (retain-free)", "ga (oracle-tuned)", "imu (oracle-tuned)"]
    >>> comparison_reference(rows, "ga (oracle-tuned)"), comparison_reference(rows, "original")
    ('imu (oracle-tuned)', 'imu (retain-free)')
    """
    for suffix in (" (retain-free)", " (oracle-tuned)"):
        if row.endswith(suffix) and method + suffix in rows:
            return method + suffix
    for candidate in (f"{method} (retain-free)", method, f"{method} (oracle-tuned)"):
        if candidate in rows:
            return candidate
    return None


def comparison_table(results: Mapping, method: str = "imu") -> str:
    """Every row against ``method``'s (:func:`comparison_reference`): the paired difference of
    their Avg. Gap over seeds with its 95 % t-interval and the verdict (``tie`` where the interval
    covers zero). Empty when ``method`` has no row.

    >>> run = lambda m, s, g, role="retain_free": {"method": m, "seed": s, "role": role,
    ...     "metrics": {}, "avg_gap": g}
    >>> runs = [run("imu", s, 0.02) for s in (0, 1, 2)] + [run("ga", s, g) for s, g in
    ...        ((0, 0.03), (1, 0.01), (2, 0.02))] + [run("original", s, 0.5, "eval") for s in (0, 1, 2)]
    >>> text = comparison_table({"runs": runs})
    >>> "| ga (retain-free) | imu (retain-free) | +0.0 | [−2.5, +2.5] | 3 | tie |" in text
    True
    >>> "| original | imu (retain-free) | +48.0 | [+48.0, +48.0] | 3 | higher |" in text
    True
    """
    runs = results["runs"]
    rows = list(dict.fromkeys(row_label(r) for r in reported_runs(runs)))
    if not any(r == method or r.startswith(method + " (") for r in rows):
        return ""
    scale = 1.0 if is_sequence(results) else 100.0

    def number(value):
        if value is None:
            return "–"
        value = round(scale * value, 1) + 0.0  # no "−0.0"
        return f"{value:+.1f}".replace("-", "−")

    lines = ["| Row | vs | Δ Avg. Gap | 95 % CI | seeds | verdict |", "|---|---|---|---|---|---|"]
    for row in rows:
        reference = comparison_reference(rows, row, method)
        if reference is None or reference == row:
            continue
        diff = paired_difference(runs, row, reference)
        if diff is None:
            continue
        interval = ("–" if diff["low"] is None
                    else f"[{number(diff['low'])}, {number(diff['high'])}]")
        lines.append(f"| {DISPLAY_NAMES.get(row, row)} | {reference} | {number(diff['mean'])} | "
                     f"{interval} | {diff['n']} | {diff['verdict']} |")
    return "\n".join(lines) if len(lines) > 2 else ""
