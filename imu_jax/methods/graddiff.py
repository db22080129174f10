"""GradDiff: gradient ascent on the forget set plus descent on the retain set. Forget + retain
set.

Each step takes a forget batch and a retain batch of the same size and minimises
``−CE(D_f batch) + CE(D_r batch)``, CE being the mean cross-entropy over every (non-padding)
token of the batch — the ``grad_diff_loss`` of the public Markov-chain code (SimNPO repository,
``synthetic/``), which zips a shuffled forget loader with a shuffled retain loader. Here each
forget example is paired once per run with a distinct random retain example (see
:func:`pair_with_retain`), and the pairs are shuffled every epoch. Same optimizer recipe and grid
as GA, BatchNorm in train mode (``model.train()``: the forget pass, then the retain pass,
update the running statistics in that order); ``bn_mode="frozen"`` keeps inference mode.

Default length: ONE pass over D_f (``epochs=1``), the public code's single unlearning epoch.
Scaled to the forget set, the public run takes 50 ascent steps over its 8,000 forget sequences
(``--max_iterations 50``), 1/160 of a step per forget example; one pass of batches of 256 takes
1/256, the nearest whole number of passes that does not exceed it. GA's default of 20 passes
took 400 steps on a 5,000-image CIFAR-10 class (12.8× the public ascent per example): every
CIFAR-10 run collapsed to test accuracy 10-11 % (docs/DEVIATIONS.md). Markov runs use the public
setting itself (``experiments/configs/unlearn_markov.py``).

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
                                  check_bn_mode, gradient_loop, monitor_for, require, stop_info,
                                  timed, xy)
from imu_jax.methods.grids import GRIDS
from imu_jax.methods.likelihood import token_cross_entropy
from imu_jax.methods.phases import mode_loss

# The public Markov run: 50 ascent steps (``--max_iterations 50``) over 8,000 forget sequences.
PUBLIC_STEPS_PER_FORGET_EXAMPLE = 50 / 8000
DEFAULTS = {**ga.DEFAULTS, "epochs": 1}
GRID = GRIDS["graddiff"]


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


def paired_loop(task: UnlearnTask, data: dict, loss_fn, hparams: dict, seed: int, label: str):
    """``gradient_loop`` over paired forget / retain batches with ``loss_fn(params, state,
    batch, train) -> (loss, new_state)``, BatchNorm per ``hparams["bn_mode"]``, under the task's
    stopping rule; returns ``(params, state, info)`` for :func:`timed`."""
    hparams = dict(hparams)
    train_mode = check_bn_mode(hparams.pop("bn_mode"))
    monitor = monitor_for(task, label)
    params, state, steps = gradient_loop(task.model, task.params, task.state, data,
                                         mode_loss(loss_fn, train_mode), seed=seed,
                                         train_mode=train_mode, on_step=task.on_step,
                                         return_state=True, monitor=monitor, **hparams)
    return params, state, {**stop_info(monitor, steps),
                           "bn_mode": "train" if train_mode else "frozen"}


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    data = pair_with_retain(xy(task.forget), xy(require(task, "retain", "graddiff")), seed=seed)

    def loss(params, state, batch, train):
        forget_logits, state = model.apply(params, state, batch["x"], train=train)
        retain_logits, state = model.apply(params, state, batch["rx"], train=train)
        return (-token_cross_entropy(forget_logits, batch["y"])
                + token_cross_entropy(retain_logits, batch["ry"])), state

    return timed(lambda: paired_loop(task, data, loss, hparams, seed, "graddiff"))


METHOD = Method(name="graddiff", needs=FORGET_AND_RETAIN,
                summary="ascent on D_f + descent on D_r (gradient difference)", run=run,
                defaults=DEFAULTS, grid=GRID)
