"""SSD, Selective Synaptic Dampening (Foster et al., AAAI 2024). Forget set + full-set statistics.

Importance = diagonal Fisher estimated as the mean over mini-batches of the squared gradient of the
batch's mean cross-entropy (the SSD code's estimator), on D_f (``I_f``) and on the whole training
set (``I_D``), each visited in a seeded random order (docs/DEVIATIONS.md). Every parameter with ``I_f > α I_D`` is multiplied by ``min(λ I_D / I_f, 1)``; no
gradient step is taken.

>>> import jax.numpy as jnp
>>> dampen({"w": jnp.array([1.0, 1.0])}, {"w": jnp.array([1.0, 1.0])},
...        {"w": jnp.array([20.0, 5.0])}, alpha=10.0, dampening=1.0)["w"].tolist()
[0.05000000074505806, 1.0]
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.methods.base import (FULL_SET_STATISTICS, Method, MethodOutput, UnlearnTask,
                                  model_loss, require, timed, xy)
from imu_jax.methods.grids import GRIDS

DEFAULTS = {"alpha": 10.0, "dampening": 1.0, "batch_size": 64}
GRID = GRIDS["ssd"]


def importance(model, params, state, arrays: Mapping[str, np.ndarray], *,
               batch_size: int, seed: int | None = None) -> Any:
    """Mean over mini-batches of the squared gradient of the mean batch loss.

    ``seed``: the rows are visited in a random order drawn from it (``None``: in stored order).
    The estimator depends on which examples share a batch: over a split stored in class order,
    every batch holds one class, a class's gradient is never averaged with the others', and the
    full-set importance of a class-specific parameter is at least ``1 / C`` of that class's own
    importance, so ``I_f > α I_D`` with ``α ≥ C`` can never hold.
    """
    grad = jax.jit(jax.grad(lambda p, x, y: model_loss(model, p, state, x, y)))
    n = len(arrays["y"])
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    total, count = jax.tree.map(jnp.zeros_like, params), 0
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        g = grad(params, arrays["x"][idx], arrays["y"][idx])
        total = jax.tree.map(lambda t, gi: t + gi * gi, total, g)
        count += 1
    return jax.tree.map(lambda t: t / count, total)


def dampen(params, full_importance, forget_importance, *, alpha: float, dampening: float):
    """``θ ← θ · min(λ I_D / I_f, 1)`` where ``I_f > α I_D``, unchanged elsewhere."""

    def one(p, imp_d, imp_f):
        selected = imp_f > alpha * imp_d
        factor = jnp.minimum(dampening * imp_d / jnp.where(selected, imp_f, 1.0), 1.0)
        return jnp.where(selected, p * factor, p)

    return jax.tree.map(one, params, full_importance, forget_importance)


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    train = require(task, "train", "ssd")

    def fit():
        # both sets in a seeded random order: the splits may be stored in class order
        full = importance(task.model, task.params, task.state, xy(train),
                          batch_size=hparams["batch_size"], seed=seed)
        forget = importance(task.model, task.params, task.state, xy(task.forget),
                            batch_size=hparams["batch_size"], seed=seed + 1)
        params = dampen(task.params, full, forget, alpha=hparams["alpha"],
                        dampening=hparams["dampening"])
        changed = sum(int(jnp.sum(a != b)) for a, b in zip(jax.tree.leaves(params),
                                                           jax.tree.leaves(task.params)))
        total = sum(int(a.size) for a in jax.tree.leaves(params))
        return params, task.state, {"dampened_parameters": changed, "parameters": total}

    return timed(fit)


METHOD = Method(name="ssd", needs=FULL_SET_STATISTICS,
                summary="dampen parameters far more important to D_f than to D", run=run,
                defaults=DEFAULTS, grid=GRID)
