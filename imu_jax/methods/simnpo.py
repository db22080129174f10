"""SimNPO (Fan et al., 2024, "Simplicity prevails: rethinking negative preference optimization
for LLM unlearning"): reference-free, length-normalised NPO. Forget set only.

    L = −(2/β) mean_{D_f} log σ(−(β/|y|) log π_θ(y|x) − γ)
      = (2/β) mean softplus((β/|y|) log π_θ(y|x) + γ)

with ``log π`` the sum of the token log-probabilities and ``|y|`` the number of (non-padding)
tokens; no reference model and no retain data (the forget-only ``simnpo`` loss of the authors'
TOFU code and ``SimNPO_loss`` of their Markov code). β 2.5 and γ 0 are the authors' TOFU
defaults; optimizer recipe (BatchNorm in train mode) as NPO; grid: NPO's rule, β in
(1.0, 2.5).

>>> import jax.numpy as jnp
>>> round(float(simnpo_loss(jnp.zeros(2), jnp.ones(2), beta=2.5, gamma=0.0)), 4)  # (2/β) log 2
0.5545
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imu_jax.methods import npo
from imu_jax.methods.base import FORGET_ONLY, Method, MethodOutput, UnlearnTask, timed, xy
from imu_jax.methods.graddiff import paired_loop
from imu_jax.methods.grids import GRIDS
from imu_jax.methods.likelihood import num_tokens, sequence_log_prob

DEFAULTS = {**npo.DEFAULTS, "beta": 2.5, "gamma": 0.0}
GRID = GRIDS["simnpo"]


def simnpo_loss(log_prob: jax.Array, lengths: jax.Array, *, beta: float,
                gamma: float) -> jax.Array:
    """``(2/β) mean softplus(β log π / |y| + γ)``."""
    return 2.0 / beta * jnp.mean(jax.nn.softplus(beta * log_prob / lengths + gamma))


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    beta, gamma = hparams.pop("beta"), hparams.pop("gamma")
    data = xy(task.forget)

    def loss(params, state, batch, train):
        logits, state = model.apply(params, state, batch["x"], train=train)
        log_prob = sequence_log_prob(logits, batch["y"])
        return simnpo_loss(log_prob, num_tokens(batch["y"]), beta=beta, gamma=gamma), state

    return timed(lambda: paired_loop(task, data, loss, hparams, seed, "simnpo"))


METHOD = Method(name="simnpo", needs=FORGET_ONLY,
                summary="reference-free, length-normalised NPO with margin γ", run=run,
                defaults=DEFAULTS, grid=GRID)
