"""GradDiff: gradient ascent on the forget set plus descent on the retain set. Forget + retain
set.

Each step takes a forget batch and a retain batch of the same size and minimises
``−CE(D_f batch) + CE(D_r batch)``, CE being the mean cross-entropy over every (non-padding)
token of the batch — the ``grad_diff_loss`` of the public Markov-chain code (SimNPO repository,
``synthetic/``), which zips a shuffled forget loader with a shuffled retain loader. Here each
forget example is paired once per run with a distinct random retain example (see
:func:`pair_with_retain`), and the pairs are shuffled every epoch. Same optimizer recipe and grid
as GA.

>>> import numpy as np
>>> pairs = pair_with_retain({"x": np.zeros(3), "y": np.arange(3)},
...                          {"x": np.ones(5), "y": np.arange(5) + 10}, seed=0)
>>> sorted(pairs), len(set(pairs["ry"].tolist()))
(['rx', 'ry', 'x', 'y'], 3)
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from imu_jax.methods import ga
from imu_jax.methods.base import (FORGET_AND_RETAIN, Method, MethodOutput, UnlearnTask,
                                  gradient_loop, require, timed, xy)
from imu_jax.methods.likelihood import token_cross_entropy

DEFAULTS = dict(ga.DEFAULTS)
GRID = dict(ga.GRID)


def pair_with_retain(forget: Mapping[str, np.ndarray], retain: Mapping[str, np.ndarray], *,
                     seed: int) -> dict[str, np.ndarray]:
    """``forget`` plus ``rx`` / ``ry``: one retain example per forget example, drawn without
    replacement (a random permutation of D_r, repeated when D_r is smaller than D_f)."""
    n_f, n_r = len(forget["y"]), len(retain["y"])
    if n_r == 0:
        raise ValueError("the retain set is empty; this method needs retain examples.")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_r) for _ in range(-(-n_f // n_r))])[:n_f]
    return {**forget, "rx": retain["x"][order], "ry": retain["y"][order]}


def logits_of(model, params, state, x):
    return model.apply(params, state, x, train=False)[0]


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    data = pair_with_retain(xy(task.forget), xy(require(task, "retain", "graddiff")), seed=seed)

    def loss(params, state, batch):
        forget_ce = token_cross_entropy(logits_of(model, params, state, batch["x"]), batch["y"])
        retain_ce = token_cross_entropy(logits_of(model, params, state, batch["rx"]),
                                        batch["ry"])
        return -forget_ce + retain_ce

    def fit():
        params, steps = gradient_loop(model, task.params, task.state, data, loss, seed=seed,
                                      **hparams)
        return params, task.state, {"steps": steps}

    return timed(fit)


METHOD = Method(name="graddiff", needs=FORGET_AND_RETAIN,
                summary="ascent on D_f + descent on D_r (gradient difference)", run=run,
                defaults=DEFAULTS, grid=GRID)
