"""SalUn (Fan et al., ICLR 2024): saliency-masked Random-Label fine-tuning. Forget + retain set.

1. Saliency: ``g = |Σ_batches ∇_θ (−CE(D_f batch))|`` over all parameters at the original model
   (mini-batches of ``batch_size``, inference mode); the mask keeps the ``threshold`` fraction of
   entries with the largest ``g`` across the WHOLE network (authors' default 0.5, their
   ``with_0.5.pt``).
2. Random-Label fine-tuning of the masked weights on ``D_f ∪ D_r``: each forget example gets a
   label drawn uniformly from all classes, retain examples keep theirs, and cross-entropy is
   minimised over shuffled mini-batches of the union (the authors' CIFAR-100 / Tiny-ImageNet
   loop). Weights outside the mask never move (the reference code zeroes their gradients and
   restores them after each step): here the loss sees ``m ⊙ θ + (1 − m) ⊙ θ₀``, and the returned
   parameters are that same combination.

Defaults are the reference code's: SGD momentum 0.9, weight decay 5e-4, lr 0.013, 10 epochs,
batch 256, constant learning rate, BatchNorm in train mode during the fine-tuning
(``model.train()``; ``bn_mode="frozen"`` keeps inference mode). The saliency gradient is taken in
inference mode.

>>> import jax.numpy as jnp
>>> saliency_mask({"a": jnp.array([0.1, -3.0]), "b": jnp.array([2.0, 0.0])}, 0.5)
{'a': Array([0., 1.], dtype=float32), 'b': Array([1., 0.], dtype=float32)}
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.methods.base import (FORGET_AND_RETAIN, Method, MethodOutput, UnlearnTask,
                                  check_bn_mode, gradient_loop, model_loss, monitor_for, require,
                                  stop_info, timed, train_mode_loss, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults
from imu_jax.methods.phases import mode_loss
from imu_jax.unlearning import monitor as monitor_lib


DEFAULTS = gradient_defaults(learning_rate=0.013, epochs=10, bn_mode="train", threshold=0.5)
GRID = GRIDS["salun"]


def forget_gradient(model, params, state, forget: dict, *, batch_size: int) -> Any:
    """``Σ_batches ∇_θ (−mean CE of the batch)`` over mini-batches of ``forget`` (in order)."""
    grad = jax.jit(jax.grad(lambda p, x, y: -model_loss(model, p, state, x, y)))
    total = jax.tree.map(jnp.zeros_like, params)
    for i in range(0, len(forget["y"]), batch_size):
        g = grad(params, forget["x"][i:i + batch_size], forget["y"][i:i + batch_size])
        total = jax.tree.map(jnp.add, total, g)
    return total


def check_threshold(threshold: float) -> None:
    """The saliency threshold is a fraction of the parameters, in [0, 1]."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}.")


def saliency_mask(gradient: Any, threshold: float) -> Any:
    """1 for the ``floor(threshold · P)`` entries with the largest ``|gradient|`` over the whole
    tree (ties broken by position), 0 elsewhere."""
    check_threshold(threshold)
    leaves, treedef = jax.tree.flatten(gradient)
    flat = jnp.concatenate([jnp.abs(leaf).ravel() for leaf in leaves])
    keep = int(flat.size * threshold)
    ranks = jnp.argsort(jnp.argsort(-flat, stable=True), stable=True)
    chosen = (ranks < keep).astype(jnp.float32)
    out, start = [], 0
    for leaf in leaves:
        out.append(chosen[start:start + leaf.size].reshape(leaf.shape))
        start += leaf.size
    return jax.tree.unflatten(treedef, out)


def masked_params(params: Any, original: Any, mask: Any) -> Any:
    """``m ⊙ θ + (1 − m) ⊙ θ₀``: the masked-out entries stay at the original model's values."""
    return jax.tree.map(lambda p, p0, m: m * p + (1 - m) * p0, params, original, mask)


def _masked_on_step(on_step, original, mask):
    if on_step is None:
        return None
    return lambda step, params, state: on_step(step, masked_params(params, original, mask), state)


class MaskedMonitor:
    """A loop monitor (``monitor_lib.Monitor``; ``None`` = the divergence guard only) that sees the
    effective model ``m ⊙ θ + (1 − m) ⊙ θ₀``, not the raw trained parameters."""

    def __init__(self, monitor, original, mask):
        self.inner = monitor if monitor is not None else monitor_lib.Monitor.fixed()
        self.original, self.mask = original, mask
        self.monitoring, self.rule = self.inner.monitoring, self.inner.rule

    def _masked(self, params):
        return masked_params(params, self.original, self.mask)

    def start(self, params, state, **kwargs):
        return self.inner.start(self._masked(params), state, **kwargs)

    def after_step(self, step, params, state):
        return self.inner.after_step(step, self._masked(params), state)

    def finish(self, steps_run):
        self.inner.finish(steps_run)

    def params_to_return(self, params, state=None):
        return self.inner.params_to_return(self._masked(params), state)

    @property
    def steps(self):
        return self.inner.steps


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    threshold = hparams.pop("threshold")
    train_mode = check_bn_mode(hparams.pop("bn_mode"))
    forget, retain = xy(task.forget), xy(require(task, "retain", "salun"))
    if forget["y"].ndim != 1:
        raise ValueError("salun needs class labels [N]; sequence data is not supported.")

    def fit():
        mask = saliency_mask(forget_gradient(model, task.params, task.state, forget,
                                             batch_size=hparams["batch_size"]), threshold)
        random_labels = np.random.default_rng(seed).integers(
            0, task.num_classes, size=forget["y"].shape).astype(forget["y"].dtype)
        union = {"x": np.concatenate([forget["x"], retain["x"]]),
                 "y": np.concatenate([random_labels, retain["y"]])}

        def loss(params, state, batch, train):
            masked = masked_params(params, task.params, mask)
            if train:
                return train_mode_loss(model, masked, state, batch["x"], batch["y"])
            return model_loss(model, masked, state, batch["x"], batch["y"]), state

        monitor = monitor_for(task, "salun")
        params, state, steps = gradient_loop(
            model, task.params, task.state, union, mode_loss(loss, train_mode), seed=seed,
            train_mode=train_mode, on_step=_masked_on_step(task.on_step, task.params, mask),
            return_state=True, monitor=MaskedMonitor(monitor, task.params, mask), **hparams)
        kept = sum(float(jnp.sum(m)) for m in jax.tree.leaves(mask))
        return masked_params(params, task.params, mask), state, {
            **stop_info(monitor, steps), "bn_mode": "train" if train_mode else "frozen",
            "masked_fraction": kept / sum(m.size for m in jax.tree.leaves(mask))}

    return timed(fit)


METHOD = Method(name="salun", needs=FORGET_AND_RETAIN,
                summary="saliency-masked random-label fine-tuning on D_f ∪ D_r", run=run,
                defaults=DEFAULTS, grid=GRID,
                check=lambda hparams: check_threshold(hparams["threshold"]))
