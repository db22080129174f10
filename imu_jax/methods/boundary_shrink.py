"""Boundary Shrink (Chen et al., CVPR 2023). Forget set only.

On a frozen copy of the model, one FGSM step of size ε (0.1, in the model's normalized input
units) pushes each forget example toward its nearest decision boundary; the class predicted there
(excluding the true class) is its nearest wrong class. All parameters are then fine-tuned to
predict that class on the clean example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, gradient_loop,
                                  model_loss, monitor_for, stop_info, timed, xy)

DEFAULTS = {"learning_rate": 1e-2, "epochs": 5, "batch_size": 256, "momentum": 0.9,
            "weight_decay": 5e-4, "optimizer": "sgd", "max_steps": None, "epsilon": 0.1}
GRID = {"learning_rate": (3e-3, 1e-2, 3e-2), "epochs": (2, 5, 10, 15, 20, 30)}


def nearest_wrong_class(model, params, state, x: np.ndarray, y: np.ndarray, *,
                        epsilon: float) -> np.ndarray:
    """The arg-max class other than ``y`` after an FGSM step of size ``epsilon``.

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


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    epsilon = hparams.pop("epsilon")
    data = xy(task.forget)
    if data["y"].ndim != 1:
        raise ValueError("boundary_shrink needs class labels [N]; sequence data is not supported.")

    monitor = monitor_for(task, "boundary_shrink")

    def fit():
        targets = np.concatenate([
            nearest_wrong_class(model, task.params, task.state, data["x"][i:i + 512],
                                data["y"][i:i + 512], epsilon=epsilon)
            for i in range(0, len(data["y"]), 512)])
        loss = lambda params, state, batch: model_loss(model, params, state, batch["x"],
                                                       batch["y"])
        params, steps = gradient_loop(model, task.params, task.state,
                                      {"x": data["x"], "y": targets}, loss, seed=seed,
                                      monitor=monitor, **hparams)
        return params, task.state, stop_info(monitor, steps)

    return timed(fit)


METHOD = Method(name="boundary_shrink", needs=FORGET_ONLY,
                summary="fine-tune D_f toward its FGSM nearest wrong class", run=run,
                defaults=DEFAULTS, grid=GRID)
