"""Matched forgetting: each method at the step where it first forgets as much as a given fraction
of Retrain's forgetting, read off its sweep (compares methods at equal forgetting, not equal
steps)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from imu_jax.lab.report.runs import _values, is_sequence, reported_runs


def sweep_points(runs: Sequence[Mapping], method: str) -> list[dict[str, Any]]:
    """The tuning sweep of ``method``: one point per config, metrics averaged over tuning seeds.

    >>> runs = [{"method": "ga", "role": "tune", "seed": s, "hparams": {"lr": 1},
    ...          "metrics": {"ua": u}, "avg_gap": 0.1} for s, u in ((0, 0.5), (1, 1.0))]
    >>> sweep_points(runs, "ga")
    [{'hparams': {'lr': 1}, 'metrics': {'ua': 0.75}, 'avg_gap': 0.1}]
    """
    groups: dict[str, list[Mapping]] = {}
    for run in runs:
        if run["method"] == method and run.get("role") == "tune":
            groups.setdefault(json.dumps(run["hparams"], sort_keys=True, default=str),
                              []).append(run)
    points = []
    for group in groups.values():
        keys = set.intersection(*(set(r["metrics"]) for r in group))
        points.append({"hparams": group[0]["hparams"],
                       "metrics": {k: float(np.mean([r["metrics"][k] for r in group]))
                                   for k in sorted(keys)},
                       "avg_gap": float(np.mean([r["avg_gap"] for r in group]))})
    return points


def retrain_ua(results: Mapping) -> float:
    """Retrain's mean UA on the reported seeds (1.0 when there is no Retrain run): the
    forgetting that "as much as Retrain" means in :func:`matched_forgetting`."""
    retrain = _values([r for r in reported_runs(results["runs"]) if r["method"] == "retrain"],
                      "ua")
    return float(np.mean(retrain)) if retrain else 1.0


def best_at_forgetting(results: Mapping, method: str, fraction: float) -> Mapping | None:
    """The tuning-sweep config of ``method`` (seed-averaged) with the best (TA, RA) among those
    whose UA ≥ ``fraction`` × :func:`retrain_ua`; ``None`` when none reaches it."""
    target = fraction * retrain_ua(results)
    ok = [p for p in sweep_points(results["runs"], method)
          if p["metrics"]["ua"] >= target - 1e-9]
    return max(ok, key=lambda r: (r["metrics"]["ta"], r["metrics"]["ra"])) if ok else None


def matched_forgetting(results: Mapping, fractions: Sequence[float] = (0.5, 0.8, 0.9, 0.99)
                       ) -> str:
    """For each method and UA level, the best TA (with its RA) among the tuning-sweep configs
    (seed-averaged) that reach that UA: utility at matched forgetting. The levels are
    ``fractions`` of Retrain's mean UA on the reported seeds (1.0 for a class removal; ~0.4 for
    a random forget set that Retrain still classifies at 60%), so "forgotten as much as
    Retrain" means the same in every setting. Empty without a sweep.

    >>> run = lambda m, role, ua, ta: {"method": m, "role": role, "seed": 0, "hparams": {"e": ta},
    ...     "metrics": {"ua": ua, "ta": ta, "ra": 1.0}, "avg_gap": 0.0}
    >>> r = {"runs": [run("retrain", "eval", 0.4, 0.6), run("imu", "tune", 0.38, 0.55),
    ...               run("imu", "tune", 0.2, 0.6)]}
    >>> print(matched_forgetting(r, fractions=(0.9,)).splitlines()[2])
    | imu | 55.0 (100.0) |
    """
    sweep = [r for r in results["runs"] if r.get("role") == "tune"]
    if not sweep or is_sequence(results):
        return ""
    target = retrain_ua(results)
    methods = list(dict.fromkeys(r["method"] for r in sweep))
    head = ["Method"] + [f"UA ≥ {f:g} × Retrain's ({100 * f * target:.1f}): best TA (RA)"
                         for f in fractions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        row = [method]
        for fraction in fractions:
            best = best_at_forgetting(results, method, fraction)
            row.append("not reached" if best is None else
                       f"{100 * best['metrics']['ta']:.1f} ({100 * best['metrics']['ra']:.1f})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
