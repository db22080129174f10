"""ℓ1-sparse unlearning (Jia et al., NeurIPS 2023, "Model sparsity can simplify machine
unlearning"). Retain set.

Fine-tune all parameters on D_r, minimising ``CE + γ_e ‖θ‖₁`` where ``‖θ‖₁`` sums ``|θ|`` over
every parameter and the ℓ1 weight decays linearly with the (0-based) epoch ``e``:
``γ_e = γ (1 − e / epochs)`` (the reference code's ``FT_iter`` with ``no_l1_epochs = 0``).
SGD momentum 0.9, weight decay 5e-4, constant learning rate 0.01, 10 epochs, batch 256, as in
the authors' README; γ (their ``--alpha``) has no default there — 5e-4 is ours (see
docs/DEVIATIONS.md).

>>> l1_weight(5e-4, epoch=0, epochs=10), l1_weight(5e-4, epoch=5, epochs=10)
(0.0005, 0.00025)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imu_jax.methods.base import (RETAIN_SET, Method, MethodOutput, UnlearnTask, model_loss,
                                  require, timed, xy)
from imu_jax.methods.phases import Phase, phased_loop, shuffled_batches

DEFAULTS = {"learning_rate": 0.01, "epochs": 10, "batch_size": 256, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None, "gamma": 5e-4}
GRID = {"learning_rate": (3e-3, 1e-2, 3e-2), "epochs": (1, 2, 3, 5, 7, 10)}


def l1_weight(gamma, *, epoch, epochs: int):
    """``γ (1 − epoch / epochs)``: the ℓ1 weight of a 0-based epoch."""
    return gamma * (1 - epoch / epochs)


def l1_norm(params) -> jax.Array:
    """``Σ |θ|`` over every parameter."""
    return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    gamma, batch_size = hparams.pop("gamma"), hparams.pop("batch_size")
    retain = xy(require(task, "retain", "l1_sparse"))
    epochs = hparams["epochs"]

    def loss(params, state, batch):
        weight = l1_weight(gamma, epoch=batch["epoch"], epochs=epochs)
        return model_loss(model, params, state, batch["x"], batch["y"]) + weight * l1_norm(params)

    def fit():
        params, steps = phased_loop(task.params, task.state,
                                    [Phase(loss, shuffled_batches(retain, batch_size))],
                                    seed=seed, **hparams)
        return params, task.state, {"steps": steps}

    return timed(fit)


METHOD = Method(name="l1_sparse", needs=RETAIN_SET,
                summary="fine-tune on D_r with a linearly decaying ℓ1 penalty", run=run,
                defaults=DEFAULTS, grid=GRID)
