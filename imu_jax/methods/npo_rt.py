"""NPO+RT: NPO on the forget set plus the retain cross-entropy. Forget + retain set.

``L = (2/β) mean_{D_f batch} softplus(β (log π_θ(y|x) − log π_ref(y|x))) + CE(D_r batch)`` with
``log π`` the SUM of the token log-probabilities (the NPO paper's and the public Markov code's
``NPO_RT``), π_ref the frozen original model, CE the mean token cross-entropy of the retain
batch (π_ref in inference mode). Forget and retain batches are paired as in GradDiff. NPO's
defaults (β 0.1, BatchNorm in train mode) and grid.

>>> from imu_jax.methods import get_method
>>> get_method("npo_rt").defaults["beta"]
0.1
"""

from __future__ import annotations

import jax
import numpy as np

from imu_jax.methods import npo
from imu_jax.methods.base import (FORGET_AND_RETAIN, Method, MethodOutput, UnlearnTask,
                                  require, timed, xy)
from imu_jax.methods.graddiff import logits_of, paired_loop, pair_with_retain
from imu_jax.methods.grids import GRIDS
from imu_jax.methods.likelihood import sequence_log_prob, token_cross_entropy

DEFAULTS = dict(npo.DEFAULTS)
GRID = GRIDS["npo_rt"]


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    beta = hparams.pop("beta")
    data = pair_with_retain(xy(task.forget), xy(require(task, "retain", "npo_rt")), seed=seed)

    def fit():
        reference = jax.jit(lambda x, y: sequence_log_prob(
            logits_of(model, task.params, task.state, x), y))
        ref = np.concatenate([np.asarray(reference(data["x"][i:i + 512], data["y"][i:i + 512]))
                              for i in range(0, len(data["y"]), 512)])

        def loss(params, state, batch, train):
            forget_logits, state = model.apply(params, state, batch["x"], train=train)
            retain_logits, state = model.apply(params, state, batch["rx"], train=train)
            log_prob = sequence_log_prob(forget_logits, batch["y"])
            return (npo.npo_loss(log_prob, batch["ref"], beta=beta)
                    + token_cross_entropy(retain_logits, batch["ry"])), state

        return paired_loop(task, {**data, "ref": ref}, loss, hparams, seed, "npo_rt")

    return timed(fit)


METHOD = Method(name="npo_rt", needs=FORGET_AND_RETAIN,
                summary="NPO (summed token log-prob) + retain cross-entropy", run=run,
                defaults=DEFAULTS, grid=GRID)
