"""The runs a report shows and their statistics over seeds (shared by the tables, matched forgetting
and the plots)."""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np


# How a row is named in the tables (the runs keep the registry's name).
DISPLAY_NAMES = {"retrain_floor": "retrain vs retrain (noise floor)"}


REPORTED_ROLES = ("eval", "retain_free")


def reported_runs(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs that go into the tables: ``role`` ``"eval"`` (defaults or oracle-tuned) and
    ``"retain_free"`` (the stopping rule of ``imu_jax.unlearning.stopping``)."""
    return [r for r in runs if r.get("role", "eval") in REPORTED_ROLES]


def commands_of(results: Mapping) -> list[str]:
    """Every distinct command that made runs of ``results``, in the order of their first run
    (``run["command"]``, recorded per run since several commands may write one folder: a resume
    that adds seeds, one process per seed; an id spelled out in ``config["commands"]``); a folder
    of an older imu-jax, whose runs record none, gives its config's one command.

    >>> commands_of({"runs": [{"command": "a1"}, {"command": "b2"}, {"command": "a1"}],
    ...              "config": {"commands": {"a1": "imu-jax run --seeds 0",
    ...                                      "b2": "imu-jax run --seeds 1"}}})
    ['imu-jax run --seeds 0', 'imu-jax run --seeds 1']
    >>> commands_of({"runs": [{}], "config": {"command": "imu-jax run"}})
    ['imu-jax run']
    """
    config = results.get("config") or {}
    spelled = config.get("commands") or {}
    ids = dict.fromkeys(r["command"] for r in results.get("runs", []) if r.get("command"))
    found = [spelled.get(i, i) for i in ids]
    return found or ([config["command"]] if config.get("command") else [])


RUN_KEYS = ("avg_gap", "seconds", "compile_seconds", "run_seconds")


def run_seconds(run: Mapping) -> float | None:
    """The RTE: a run's wall-clock seconds without JAX compilation (``seconds −
    compile_seconds``); all its seconds when compile time was not recorded (runs stored before
    it was, Retrain's training time).

    >>> run_seconds({"seconds": 3.0, "compile_seconds": 1.25}), run_seconds({"seconds": 3.0})
    (1.75, 3.0)
    """
    seconds = run.get("seconds")
    if seconds is None:
        return None
    return max(0.0, float(seconds) - float(run.get("compile_seconds") or 0.0))


def _values(runs: Iterable[Mapping], key: str) -> list[float]:
    out = []
    for run in runs:
        if run.get("diverged"):  # a diverged run is shown as such, never scored
            continue
        if key == "run_seconds":
            value = run_seconds(run)
        else:
            value = run.get(key) if key in RUN_KEYS else run["metrics"].get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append(float(value))
    return out


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof = 1) of ``values``; 0.0 for a single value.

    >>> round(sample_std([0.8, 1.0]), 4), sample_std([3.0])
    (0.1414, 0.0)
    """
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(runs: Sequence[Mapping], keys: Sequence[str] | None = None
              ) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{row: {key: (mean, std, n)}}`` over the reported runs (sample std, ddof 1; 0 for one
    run), one row per :func:`row_label`; diverged runs are left out."""
    runs = reported_runs(runs)
    methods = list(dict.fromkeys(row_label(r) for r in runs))
    if keys is None:
        keys = sorted({k for r in runs for k in r["metrics"]}) + list(RUN_KEYS)
    summary = {}
    for method in methods:
        mine = [r for r in runs if row_label(r) == method]
        summary[method] = {}
        for key in keys:
            values = _values(mine, key)
            if values:
                summary[method][key] = (float(np.mean(values)), sample_std(values), len(values))
    return summary


def is_sequence(results: Mapping) -> bool:
    return any("kl_true_test" in r["metrics"] for r in results["runs"])


def rte_label(runs) -> str:
    """The RTE column's title: without compilation only where the runs recorded it apart
    (``compile_seconds``; runs stored before that include it).

    >>> rte_label([{"method": "imu", "compile_seconds": 0.5}]), rte_label([{"method": "imu"}])
    ('RTE (s, without compilation)', 'RTE (s, compilation included: measured before it was recorded apart)')
    """
    timed = [r for r in runs if r.get("method") not in ("original", "retrain", "retrain_floor")]
    apart = [r.get("compile_seconds") is not None for r in timed]
    if apart and all(apart):
        return "RTE (s, without compilation)"
    if any(apart):
        return "RTE (s, without compilation where recorded, else with)"
    return "RTE (s, compilation included: measured before it was recorded apart)"


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


# Two-sided 95 % quantiles of Student's t, t_{0.975, df}, for df = 1..30 (standard tables; they
# match scipy.stats.t.ppf(0.975, df) to 4 decimals — tests/test_protocol.py checks when SciPy is
# installed; SciPy is not a dependency). Beyond 30: :func:`t_quantile_975`'s expansion.
T_975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile_975(df: int) -> float:
    """``t_{0.975, df}``: :data:`T_975` for df ≤ 30, else the Cornish–Fisher expansion of the t
    quantile around the normal one (z = 1.959964; error < 1e-4 for df > 30).

    >>> t_quantile_975(4), round(t_quantile_975(60), 3), round(t_quantile_975(10 ** 6), 3)
    (2.7764, 2.0, 1.96)
    """
    df = int(df)
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}.")
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def paired_difference(runs: Sequence[Mapping], row: str, reference: str, key: str = "avg_gap"
                      ) -> dict | None:
    """The paired difference ``row − reference`` of ``key`` (default the Avg. Gap) over the seeds
    where both rows have a scored (not diverged) run: its mean, sample std, the 95 % t-interval
    ``mean ± t_{0.975, n−1} · std / √n`` and ``verdict``: ``"tie"`` where the interval covers
    zero, else ``"lower"`` / ``"higher"`` (``row``'s value is below / above ``reference``'s).
    Pairing by seed takes out what a seed's original and Retrain models share. One shared seed:
    no interval (``low`` / ``high`` ``None``, verdict ``"n=1"``). ``None`` when no seed is shared.

    >>> run = lambda m, s, g: {"method": m, "seed": s, "role": "eval", "metrics": {},
    ...                        "avg_gap": g}
    >>> runs = ([run("a", s, g) for s, g in ((0, .10), (1, .12), (2, .11))]
    ...         + [run("b", s, g) for s, g in ((0, .05), (1, .06), (2, .07))])
    >>> d = paired_difference(runs, "a", "b")
    >>> round(d["mean"], 3), round(d["low"], 3), round(d["high"], 3), d["n"], d["verdict"]
    (0.05, 0.025, 0.075, 3, 'higher')
    """
    seeds, diffs = paired_by_seed(runs, row, reference, key)
    if not seeds:
        return None
    return {**mean_interval(diffs), "seeds": seeds}


def paired_by_seed(runs: Sequence[Mapping], row: str, reference: str, key: str = "avg_gap"
                   ) -> tuple[list[int], list[float]]:
    """``(seeds, row − reference differences of key)`` over the seeds where both rows have a
    scored (not diverged, not NaN) reported run, in seed order.

    >>> run = lambda m, s, g: {"method": m, "seed": s, "role": "eval", "metrics": {},
    ...                        "avg_gap": g}
    >>> paired_by_seed([run("a", 0, .3), run("b", 0, .1), run("a", 1, .2)], "a", "b")
    ([0], [0.19999999999999998])
    """
    by_row: dict[str, dict[int, float]] = {row: {}, reference: {}}
    for run in reported_runs(runs):
        label = row_label(run)
        if label in by_row:
            values = _values([run], key)
            if values:
                by_row[label][run["seed"]] = values[0]
    seeds = sorted(set(by_row[row]) & set(by_row[reference]))
    return seeds, [by_row[row][s] - by_row[reference][s] for s in seeds]


def mean_interval(diffs: Sequence[float]) -> dict:
    """The mean of paired differences ``diffs`` with its 95 % t-interval
    ``mean ± t_{0.975, n−1} · std / √n`` (sample std) and ``verdict``: ``"tie"`` where the
    interval covers zero, else ``"lower"`` / ``"higher"``; one difference: no interval
    (``low`` / ``high`` ``None``, verdict ``"n=1"``).

    >>> d = mean_interval([0.05, 0.06, 0.04])
    >>> round(d["low"], 4), round(d["high"], 4), d["verdict"]
    (0.0252, 0.0748, 'higher')
    >>> mean_interval([0.1, -0.1])["verdict"]
    'tie'
    """
    if not len(diffs):
        raise ValueError("no paired differences to summarise.")
    mean, n = float(np.mean(diffs)), len(diffs)
    if n < 2:
        return {"mean": mean, "std": 0.0, "n": 1, "low": None, "high": None, "verdict": "n=1"}
    std = sample_std(diffs)
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = "tie" if low <= 0.0 <= high else ("lower" if high < 0 else "higher")
    return {"mean": mean, "std": std, "n": n, "low": low, "high": high, "verdict": verdict}
