"""ℓ1-sparse unlearning (Jia et al., NeurIPS 2023, "Model sparsity can simplify machine
unlearning"). Retain set.

Fine-tune all parameters on D_r, minimising ``CE + γ_e ‖θ‖₁`` where ``‖θ‖₁`` sums ``|θ|`` over
every parameter and the ℓ1 weight decays linearly with the (0-based) epoch ``e``:
``γ_e = γ (1 − e / epochs)`` (the reference code's ``FT_iter`` with ``no_l1_epochs = 0``).
SGD momentum 0.9, weight decay 5e-4, constant learning rate 0.01, 10 epochs, batch 256, as in
the authors' README; γ (their ``--alpha``) has no default there — 5e-4 is ours (see
docs/DEVIATIONS.md). BatchNorm in train mode (the reference's ``model.train()``). Under the
stopping rule the loop may run past ``epochs``; the weight then stays at 0 (never negative).

>>> [round(float(l1_weight(5e-4, epoch=e, epochs=10)), 8) for e in (0, 5, 12)]
[0.0005, 0.00025, 0.0]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imu_jax.methods.base import (RETAIN_SET, Method, MethodOutput, UnlearnTask, check_bn_mode,
                                  model_loss, require, timed, train_mode_loss, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults
from imu_jax.methods.phases import one_phase_fit, shuffled_batches

DEFAULTS = gradient_defaults(learning_rate=0.01, epochs=10, bn_mode="train", gamma=1e-4)
GRID = GRIDS["l1_sparse"]


def l1_weight(gamma, *, epoch, epochs: int):
    """``γ max(0, 1 − epoch / epochs)``: the ℓ1 weight of a 0-based epoch."""
    return gamma * jnp.maximum(0.0, 1 - epoch / epochs)


def l1_norm(params) -> jax.Array:
    """``Σ |θ|`` over every parameter."""
    return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    gamma, batch_size = hparams.pop("gamma"), hparams.pop("batch_size")
    retain = xy(require(task, "retain", "l1_sparse"))
    epochs = hparams["epochs"]
    train_mode = check_bn_mode(hparams.pop("bn_mode"))

    def loss(params, state, batch, train):
        weight = l1_weight(gamma, epoch=batch["epoch"], epochs=epochs)
        if train:
            ce, state = train_mode_loss(model, params, state, batch["x"], batch["y"])
        else:
            ce = model_loss(model, params, state, batch["x"], batch["y"])
        return ce + weight * l1_norm(params), state

    return timed(lambda: one_phase_fit(task, loss, shuffled_batches(retain, batch_size),
                                       label="l1_sparse", seed=seed, train_mode=train_mode,
                                       hparams=hparams))


METHOD = Method(name="l1_sparse", needs=RETAIN_SET,
                summary="fine-tune on D_r with a linearly decaying ℓ1 penalty", run=run,
                defaults=DEFAULTS, grid=GRID)
