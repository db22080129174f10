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
batch 256, constant learning rate.

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
                                  gradient_loop, model_loss, require, timed, xy)

DEFAULTS = {"learning_rate": 0.013, "epochs": 10, "batch_size": 256, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None, "threshold": 0.5}
GRID = {"learning_rate": (0.005, 0.013, 0.03), "epochs": (1, 2, 3, 5, 7, 10)}


def forget_gradient(model, params, state, forget: dict, *, batch_size: int) -> Any:
    """``Σ_batches ∇_θ (−mean CE of the batch)`` over mini-batches of ``forget`` (in order)."""
    grad = jax.jit(jax.grad(lambda p, x, y: -model_loss(model, p, state, x, y)))
    total = jax.tree.map(jnp.zeros_like, params)
    for i in range(0, len(forget["y"]), batch_size):
        g = grad(params, forget["x"][i:i + batch_size], forget["y"][i:i + batch_size])
        total = jax.tree.map(jnp.add, total, g)
    return total


def saliency_mask(gradient: Any, threshold: float) -> Any:
    """1 for the ``floor(threshold · P)`` entries with the largest ``|gradient|`` over the whole
    tree (ties broken by position), 0 elsewhere."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
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


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    threshold = hparams.pop("threshold")
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

        def loss(params, state, batch):
            return model_loss(model, masked_params(params, task.params, mask), state,
                              batch["x"], batch["y"])

        params, steps = gradient_loop(model, task.params, task.state, union, loss, seed=seed,
                                      **hparams)
        kept = sum(float(jnp.sum(m)) for m in jax.tree.leaves(mask))
        return masked_params(params, task.params, mask), task.state, {
            "steps": steps, "masked_fraction": kept / sum(m.size for m in jax.tree.leaves(mask))}

    return timed(fit)


METHOD = Method(name="salun", needs=FORGET_AND_RETAIN,
                summary="saliency-masked random-label fine-tuning on D_f ∪ D_r", run=run,
                defaults=DEFAULTS, grid=GRID)
