"""NPO (Zhang et al., 2024): negative preference optimization. Forget set + original model.

    L = (2/β) E_{D_f}[log(1 + (π_θ(y|x) / π_ref(y|x))^β)] = (2/β) E[softplus(β (log π_θ − log π_ref))]

with π_ref the frozen original model (inference mode), minimised over all parameters (the NPO
paper's loss; the public IMU classification code descends the forget CE instead, by mistake).
For sequences ``log π(y|x)`` is the SUM of the token log-probabilities (non-padding tokens), as in
the NPO paper and the public Markov code; the length-normalised (mean) form is SimNPO's, not NPO's.
BatchNorm in train mode during the update, as the public ``NPO.py`` (``model.train()``).

>>> import jax.numpy as jnp
>>> round(float(npo_loss(jnp.zeros(3), jnp.zeros(3), beta=0.1)), 4)  # (2/β) log 2
13.8629
>>> logits = jnp.log(jnp.array([[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]))
>>> round(float(sequence_log_prob(logits, jnp.array([0, 1, -1]))), 4)  # log 0.5 + log 0.75
-0.9808
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax.methods.base import (FORGET_AND_ORIGINAL, Method, MethodOutput, UnlearnTask,
                                  check_bn_mode, gradient_loop, monitor_for, stop_info,
                                  timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults

DEFAULTS = gradient_defaults(learning_rate=1e-2, epochs=5, bn_mode="train", beta=0.1)
GRID = GRIDS["npo"]


def npo_loss(log_prob: jax.Array, reference_log_prob: jax.Array, *, beta: float) -> jax.Array:
    """``(2/β) mean softplus(β (log π_θ − log π_ref))``."""
    return 2.0 / beta * jnp.mean(jax.nn.softplus(beta * (log_prob - reference_log_prob)))


def sequence_log_prob(logits: jax.Array, label: jax.Array) -> jax.Array:
    """``log π(y|x)`` of ONE example: the class log-probability for a class label ``[]``; for
    next-token labels ``[T]`` (−1 = padding) the sum of the token log-probabilities."""
    if label.ndim == 0:
        return -optax.softmax_cross_entropy_with_integer_labels(logits, label)
    mask = label >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, label, 0))
    return -jnp.sum(ce * mask)


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    beta = hparams.pop("beta")
    train_mode = check_bn_mode(hparams.pop("bn_mode"))
    data = xy(task.forget)

    def log_prob(params, state, x, y, train=False):
        logits, new_state = model.apply(params, state, x, train=train)
        return jax.vmap(sequence_log_prob)(logits, y), new_state

    def fit():
        reference = jax.jit(lambda x, y: log_prob(task.params, task.state, x, y)[0])
        ref = np.concatenate([np.asarray(reference(data["x"][i:i + 512], data["y"][i:i + 512]))
                              for i in range(0, len(data["y"]), 512)])

        def loss(params, state, batch):
            lp, new_state = log_prob(params, state, batch["x"], batch["y"], train=train_mode)
            value = npo_loss(lp, batch["ref"], beta=beta)
            return (value, new_state) if train_mode else value

        monitor = monitor_for(task, "npo")
        params, state, steps = gradient_loop(model, task.params, task.state, {**data, "ref": ref},
                                             loss, seed=seed, train_mode=train_mode,
                                             on_step=task.on_step, return_state=True,
                                             monitor=monitor, **hparams)
        return params, state, {**stop_info(monitor, steps),
                               "bn_mode": "train" if train_mode else "frozen"}

    return timed(fit)


METHOD = Method(name="npo", needs=FORGET_AND_ORIGINAL,
                summary="negative preference optimization against the original model", run=run,
                defaults=DEFAULTS, grid=GRID)
