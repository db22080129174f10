"""Hyperparameter selection: grid points, the selection rule every method shares, and the jobs
(tuning seeds, then reported seeds) it implies."""

from __future__ import annotations

import itertools
import json
from typing import Any, Mapping, Sequence

import numpy as np

from imu_jax import methods as methods_lib


SELECTION_RULE = ("every method gets the same budget: a grid of the same size over its own knobs "
                  "(lr × epochs, plus its second knob — IMU's top_fraction, Boundary Shrink's ε, "
                  "NPO's β — for every method that has one; SSD: α × λ; grids listed below) runs "
                  "on the tuning seeds, whose original and Retrain models are trained apart from "
                  "the reported seeds'; the config with the smallest mean Avg. Gap to Retrain "
                  "over the tuning seeds is selected (so top_fraction is never chosen on the "
                  "reported seeds), then run and reported on the reported seeds. One lr schedule "
                  "for all (milestones, default constant).")


RETAIN_FREE_RULE = ("retain-free: each method runs its default hyperparameters at a constant lr "
                    "and stops by the rule of imu_jax.unlearning.stopping on the forget set vs the held-out "
                    "split (class removal: forget accuracy ≤ 1/#classes; sample removal: "
                    "loss-membership AUC at chance, or earlier when held-out accuracy falls "
                    "below its start by more than its 5 % noise level, handing back the last "
                    "check within it: the utility guard), capped at 50 epochs; no Retrain "
                    "model, no retain set.")


def grid_points(grid: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    """Cartesian product of a grid, in order.

    >>> grid_points({"lr": (1, 2), "epochs": (5,)})
    [{'lr': 1, 'epochs': 5}, {'lr': 2, 'epochs': 5}]
    """
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def hparams_key(hparams: Mapping) -> str:
    return json.dumps(dict(sorted(hparams.items())), default=str)


def select_hparams(runs: Sequence[Mapping], method: str) -> dict | None:
    """The tuning config of ``method`` with the smallest mean Avg. Gap over the tuning seeds
    (the first in grid order on ties); ``None`` when there are no tuning runs."""
    tuned = [r for r in runs if r["method"] == method and r.get("role") == "tune"]
    if not tuned:
        return None
    by_config: dict[str, list[Mapping]] = {}
    for run in tuned:
        by_config.setdefault(hparams_key(run["hparams"]), []).append(run)
    best = min(by_config.values(), key=lambda rs: float(np.mean([r["avg_gap"] for r in rs])))
    return dict(best[0]["hparams"])


def plan_jobs(method: methods_lib.Method, tune_seeds: Sequence[int], *,
              overrides: Mapping[str, Any], grid: Mapping[str, Sequence] | None
              ) -> list[tuple[int, dict]]:
    """The tuning runs ``(seed, hparams)``: the method's grid on every tuning seed."""
    base = method.hparams(overrides) if method.defaults else dict(overrides)
    grid = method.grid if grid is None else grid
    if not grid:
        return []
    return [(seed, {**base, **point}) for seed in tune_seeds for point in grid_points(grid)]
