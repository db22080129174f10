"""Hyperparameter selection: grid points, the selection rule every method shares, and the jobs
(tuning seeds, then reported seeds) it implies."""

from __future__ import annotations

import itertools
import json
from typing import Any, Mapping, Sequence

import numpy as np

from imu_jax import methods as methods_lib


SELECTION_RULE = ("one protocol for every method: the same grid — optimizer steps ∈ {1, 2, 4, …, "
                  "the retain-free cap} × learning rate ∈ {1e-4, 1e-3, 1e-2, 1e-1}, every other "
                  "hyperparameter at the method's default (SSD, which takes no step: its α × λ "
                  "grid) — runs on the tuning seeds, whose original and Retrain models are "
                  "trained apart from the reported seeds'; each configuration is scored on the "
                  "VALIDATION split (never the test split), and the one with the smallest mean "
                  "Avg. Gap to Retrain over the tuning seeds is selected (the first in grid order "
                  "on ties), then run and reported on the reported seeds, scored on the test "
                  "split. One lr schedule for all (constant).")


RETAIN_FREE_RULE = ("retain-free: each method runs its default hyperparameters at a constant lr "
                    "and stops by the rule of imu_jax.unlearning.stopping on the forget set vs the "
                    "VALIDATION split (class removal: forget accuracy ≤ 1/#classes; sample "
                    "removal: loss-membership AUC at chance; subclass removal: forget accuracy "
                    "≤ 1/#classes; sample and subclass removal stop earlier when validation "
                    "accuracy falls below its start by more than its 5 % noise level, handing "
                    "back the last check within it: the utility guard), capped at 50 epochs; no "
                    "Retrain model, no retain set, no test data.")


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


def resolve_grid(grid: Mapping[str, Sequence], cap: int) -> dict[str, tuple]:
    """The grid a method is tuned over in a setting whose retain-free cap is ``cap`` steps: the
    shared grid's step axis (``imu_jax.methods.grids.StepCounts``) becomes
    ``step_counts(cap)``; a grid that names ``epochs`` (``--grid imu.epochs=10,20``) but not
    ``max_steps`` is tuned in epochs, and the shared step axis is dropped. Axes given as plain
    sequences are kept as they are.

    >>> from imu_jax.methods.grids import STEP_GRID
    >>> resolve_grid(STEP_GRID, 8)["max_steps"]
    (1, 2, 4, 8)
    >>> resolve_grid({**STEP_GRID, "epochs": [10]}, 8)
    {'learning_rate': (0.0001, 0.001, 0.01, 0.1), 'epochs': (10,)}
    """
    from imu_jax.methods.grids import StepCounts, step_counts

    out = {}
    for key, values in grid.items():
        if isinstance(values, StepCounts):
            if "epochs" in grid:  # tuned in epochs: the user's axis replaces the step axis
                continue
            values = step_counts(cap)
        out[key] = tuple(values)
    return out


def tuning_grids(chosen: Sequence[methods_lib.Method], tuned: set[str],
                 grids: Mapping[str, Mapping[str, Sequence]], num_forget: int
                 ) -> tuple[dict[str, dict[str, tuple]], int]:
    """``({method: resolved grid}, cap)``: the grid of every tuned method (``grids[name]``, else
    its own) with the shared step axis resized to the retain-free cap ``cap`` of a forget set of
    ``num_forget`` examples (:func:`resolve_grid`); methods without a grid are left out."""
    from imu_jax.methods.grids import retain_free_cap

    cap = retain_free_cap(num_forget)
    resolved = {m.name: resolve_grid(grids.get(m.name) or m.grid, cap) for m in chosen
                if m.name in tuned}
    return {name: grid for name, grid in resolved.items() if grid}, cap


def plan_jobs(method: methods_lib.Method, tune_seeds: Sequence[int], *,
              overrides: Mapping[str, Any], grid: Mapping[str, Sequence] | None,
              sizes: Mapping[str, int | None] | None = None) -> list[tuple[int, dict]]:
    """The tuning runs ``(seed, hparams)``: the method's grid on every tuning seed. A point that
    sets ``max_steps`` but not ``epochs`` gets an ``epochs`` under which the run holds that many
    steps (``imu_jax.methods.grids.epochs_for_steps`` with ``sizes = {"forget": n_f,
    "retain": n_r}``), so the step count, not the epoch count, ends it."""
    from imu_jax.methods.base import RETAIN_SET
    from imu_jax.methods.grids import epochs_for_steps

    base = method.hparams(overrides) if method.defaults else dict(overrides)
    grid = method.grid if grid is None else grid
    if not grid:
        return []
    points = []
    for point in grid_points(grid):
        hparams = {**base, **point}
        if (sizes and point.get("max_steps") and "epochs" not in point
                and "epochs" in hparams):
            hparams["epochs"] = epochs_for_steps(
                point["max_steps"], hparams, num_forget=sizes["forget"],
                num_retain=sizes.get("retain"), iterates_retain=method.needs == RETAIN_SET)
        points.append(hparams)
    return [(seed, dict(hparams)) for seed in tune_seeds for hparams in points]
