"""JiT (Foster et al., 2024, "Zero-shot machine unlearning at scale via Lipschitz
regularization"). Forget set only.

For every forget batch, ``n_samples`` noisy copies ``x' = clip(x + σ ε, min x, max x)``
(``ε ~ N(0, I)``, clipped to the batch's value range, fresh noise each step) are compared with
``x``; the model is moved to make its output smooth around the forget examples by minimising

    L = (1 / n_samples) Σ_s Σ_i ‖f(x_i) − sg[f(x'_i,s)]‖₂ / ‖x_i − x'_i,s‖₂

(sum over the batch, mean over the copies; ``f`` = logits; no gradient through the noisy
outputs), with plain SGD (no momentum, no weight decay). Defaults are the reference code's
full-class VGG16 setting: σ 0.5, 25 copies, lr 3e-4, one epoch, batch 128; BatchNorm in train
mode (``model.train()``: the clean pass updates the running statistics, the noisy copies use
their own batch statistics); ``bn_mode="frozen"`` keeps inference mode.

>>> import jax.numpy as jnp
>>> f = lambda x: 2.0 * x                       # a 2-Lipschitz "model"
>>> x, noisy = jnp.ones((1, 3)), jnp.zeros((1, 1, 3))
>>> float(lipschitz_loss(f(x), jnp.stack([f(n) for n in noisy]), x, noisy))
2.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imu_jax.methods.base import (FORGET_ONLY, Method, MethodOutput, UnlearnTask, check_bn_mode,
                                  timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults
from imu_jax.methods.phases import one_phase_fit, shuffled_batches

DEFAULTS = gradient_defaults(learning_rate=3e-4, epochs=1, bn_mode="train", batch_size=128,
                             momentum=0.0, weight_decay=0.0, noise_std=0.5, n_samples=25)
GRID = GRIDS["jit"]


def lipschitz_loss(outputs: jax.Array, noisy_outputs: jax.Array, x: jax.Array,
                   noisy_x: jax.Array) -> jax.Array:
    """``mean_s Σ_i ‖outputs_i − noisy_outputs_{s,i}‖ / ‖x_i − noisy_x_{s,i}‖``.

    Shapes: ``outputs [N, ...]``, ``noisy_outputs [S, N, ...]``, ``x [N, ...]``,
    ``noisy_x [S, N, ...]``.
    """
    n = x.shape[0]
    out_dist = jnp.linalg.norm((outputs[None] - noisy_outputs).reshape(-1, n, outputs[0].size),
                               axis=-1)
    in_dist = jnp.linalg.norm((x[None] - noisy_x).reshape(-1, n, x[0].size), axis=-1)
    return jnp.mean(jnp.sum(out_dist / in_dist, axis=-1))


def perturb(key: jax.Array, x: jax.Array, *, noise_std: float, n_samples: int) -> jax.Array:
    """``[n_samples, *x.shape]`` noisy copies, clipped to ``[min x, max x]`` of the batch."""
    noise = noise_std * jax.random.normal(key, (n_samples, *x.shape), x.dtype)
    return jnp.clip(x[None] + noise, jnp.min(x), jnp.max(x))


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    noise_std, n_samples = hparams.pop("noise_std"), hparams.pop("n_samples")
    batch_size = hparams.pop("batch_size")
    train_mode = check_bn_mode(hparams.pop("bn_mode"))
    forget = xy(task.forget)
    if not jnp.issubdtype(forget["x"].dtype, jnp.floating):
        raise ValueError("jit needs real-valued inputs (images); token inputs cannot be perturbed "
                         f"with Gaussian noise, got dtype {forget['x'].dtype}.")
    base_key = jax.random.key(seed)

    def loss(params, state, batch, train):
        x = batch["x"]
        noisy = perturb(jax.random.fold_in(base_key, batch["step"]), x, noise_std=noise_std,
                        n_samples=n_samples)
        noisy_out = jax.lax.stop_gradient(
            jax.vmap(lambda xs: model.apply(params, state, xs, train=train)[0])(noisy))
        outputs, new_state = model.apply(params, state, x, train=train)
        return lipschitz_loss(outputs, noisy_out, x, noisy), new_state

    return timed(lambda: one_phase_fit(task, loss, shuffled_batches(forget, batch_size),
                                       label="jit", seed=seed, train_mode=train_mode,
                                       hparams=hparams))


METHOD = Method(name="jit", needs=FORGET_ONLY,
                summary="Lipschitz smoothing of the outputs around D_f (zero-shot)", run=run,
                defaults=DEFAULTS, grid=GRID)
