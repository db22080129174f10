"""Boundary Shrink (Chen et al., CVPR 2023), as the reference code does it (spec §6). Forget set only.

On a frozen copy of the original model (inference mode), one FGSM step of ε = 0.1 in [0, 1]
PIXEL units — ε / std per channel when the pipeline standardises inputs (``UnlearnTask.
input_normalization``) — moves each forget image up its loss; the perturbed image is clamped to
the pixel range and rounded to the 1/255 grid (the reference's ``discretize``). Its target is the
plain arg-max of the frozen model on the perturbed image, which is the true class when the attack
does not cross the boundary. The model is then fine-tuned on the CLEAN images toward those
targets, in train mode (``model.train()`` in the reference; ``bn_mode``).

Optimiser: this library's shared recipe by default (SGD momentum 0.9, weight decay 5e-4, batch
256, lr 1e-2 for 5 epochs, tuned over lr {3e-3, 1e-2} × epochs {2, 5, 10}).
``boundary_shrink_reference`` is the same method with the reference code's optimiser and length
(``REFERENCE_DEFAULTS``: SGD lr 1e-5, momentum 0.9, no weight decay, batches of 64, 10 epochs;
``boundary_unlearning.py`` of the authors' code), not tuned, so that both can be reported
(docs/DEVIATIONS.md).

``boundary_shrink_runner_up`` keeps this library's earlier variant under its own name: ε in
standardised units, the true class excluded from the target (so it is always the runner-up class
after the step), no clamping, BatchNorm frozen — in effect "fine-tune toward the runner-up class".

>>> from imu_jax.methods import get_method
>>> get_method("boundary_shrink").defaults["epsilon"], get_method("boundary_shrink").defaults["bn_mode"]
(0.1, 'train')
>>> get_method("boundary_shrink_reference").defaults["learning_rate"]
1e-05
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, ce_loop,
                                  model_loss, timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults

DEFAULTS = gradient_defaults(learning_rate=1e-2, epochs=5, bn_mode="train", epsilon=0.1)
RUNNER_UP_DEFAULTS = {**DEFAULTS, "bn_mode": "frozen"}
# The reference code's fine-tuning: torch.optim.SGD(lr=0.00001, momentum=0.9) (no weight decay),
# poison_epoch=10 passes over the forget loader, batch_size 64 (its main.py default).
REFERENCE_DEFAULTS = {**DEFAULTS, "learning_rate": 1e-5, "momentum": 0.9, "weight_decay": 0.0,
                      "batch_size": 64, "epochs": 10}
PIXEL_LEVELS = 255.0  # the reference's discretize(): round(x * 255) / 255


def fgsm_targets(model, params, state, x: np.ndarray, y: np.ndarray, *, epsilon: float,
                 normalization: tuple[Sequence[float], Sequence[float]] | None
                 ) -> np.ndarray:
    """Boundary Shrink's targets: arg-max of the frozen model after one FGSM step of ``epsilon``
    pixel units (``normalization`` = per-channel ``(mean, std)`` of the standardisation applied
    to ``x``, last axis; ``None``: ``x`` is in pixel units already, or unknown: no clamping).

    >>> import jax.numpy as jnp, numpy as np
    >>> class Linear:
    ...   def apply(self, params, state, x, *, train=False):
    ...     return x @ params, state
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> x = np.array([[0.3, 0.0], [0.3, 0.25]], np.float32)  # margins 0.3 and 0.05
    >>> fgsm_targets(Linear(), w, {}, x, np.array([0, 0]), epsilon=0.1, normalization=None).tolist()
    [0, 1]
    """
    def loss(inputs):
        return model_loss(model, params, state, inputs, jnp.asarray(y))

    step = jnp.sign(jax.grad(loss)(jnp.asarray(x)))
    if normalization is None:
        adversarial = jnp.asarray(x) + epsilon * step
    else:
        mean, std = (jnp.asarray(v, jnp.float32) for v in normalization)
        pixels = jnp.asarray(x) * std + mean + epsilon * step
        pixels = jnp.round(jnp.clip(pixels, 0.0, 1.0) * PIXEL_LEVELS) / PIXEL_LEVELS
        adversarial = (pixels - mean) / std
    logits, _ = model.apply(params, state, adversarial, train=False)
    return np.asarray(jnp.argmax(logits, axis=-1)).astype(y.dtype)


def nearest_wrong_class(model, params, state, x: np.ndarray, y: np.ndarray, *,
                        epsilon: float) -> np.ndarray:
    """The runner-up variant's target: the arg-max class other than ``y`` after an FGSM step of
    ``epsilon`` in the model's (standardised) input units, no clamping.

    >>> import jax.numpy as jnp, numpy as np
    >>> class Linear:
    ...   def apply(self, params, state, x, *, train=False):
    ...     return x @ params, state
    >>> w = jnp.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    >>> nearest_wrong_class(Linear(), w, {}, np.array([[1.0, 0.0]], np.float32), np.array([0]),
    ...                     epsilon=0.1).tolist()
    [1]
    """

    def loss(inputs):
        return model_loss(model, params, state, inputs, jnp.asarray(y))

    adversarial = x + epsilon * jnp.sign(jax.grad(loss)(jnp.asarray(x)))
    logits, _ = model.apply(params, state, adversarial, train=False)
    masked = jnp.where(jax.nn.one_hot(y, logits.shape[-1]) > 0, -jnp.inf, logits)
    return np.asarray(jnp.argmax(masked, axis=-1)).astype(y.dtype)


def _run(task: UnlearnTask, hparams: dict, seed: int, *, runner_up: bool) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    epsilon = hparams.pop("epsilon")
    data = xy(task.forget)
    if data["y"].ndim != 1:
        raise ValueError("boundary_shrink needs class labels [N]; sequence data is not supported.")

    def targets_of(xb, yb):
        if runner_up:
            return nearest_wrong_class(model, task.params, task.state, xb, yb, epsilon=epsilon)
        return fgsm_targets(model, task.params, task.state, xb, yb, epsilon=epsilon,
                            normalization=task.input_normalization)

    def fit():
        targets = np.concatenate([targets_of(data["x"][i:i + 512], data["y"][i:i + 512])
                                  for i in range(0, len(data["y"]), 512)])
        params, state, info = ce_loop(model, task, {"x": data["x"], "y": targets}, hparams, seed)
        info["crossed_fraction"] = float(np.mean(targets != data["y"]))
        info["epsilon_units"] = ("standardised" if runner_up or task.input_normalization is None
                                 else "pixel")
        return params, state, info

    return timed(fit)


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    return _run(task, hparams, seed, runner_up=False)


def run_runner_up(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    return _run(task, hparams, seed, runner_up=True)


METHOD = Method(name="boundary_shrink", needs=FORGET_ONLY,
                summary="fine-tune D_f toward the frozen model's arg-max after an FGSM step "
                "(reference code)", run=run, defaults=DEFAULTS, grid=GRIDS["boundary_shrink"])
RUNNER_UP = dataclasses.replace(
    METHOD, name="boundary_shrink_runner_up",
    summary="variant: fine-tune D_f toward the runner-up class after an FGSM step (true class "
    "excluded, standardised ε, BN frozen)", run=run_runner_up, defaults=RUNNER_UP_DEFAULTS,
    grid=GRIDS["boundary_shrink_runner_up"])
REFERENCE = dataclasses.replace(
    METHOD, name="boundary_shrink_reference",
    summary="Boundary Shrink with the reference code's optimiser (SGD lr 1e-5, no weight "
    "decay, batch 64, 10 epochs), not tuned", defaults=REFERENCE_DEFAULTS, grid={})
