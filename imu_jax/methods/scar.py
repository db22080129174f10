"""SCAR (Bonato et al., ECCV 2024): Mahalanobis metric forgetting + distillation on auxiliary
out-of-distribution data. Forget set + auxiliary data; no retain set.

Auxiliary data: ``num_auxiliary`` images of i.i.d. N(0, 1) noise in the model's (normalised)
input space, shaped like the forget inputs — the reference code's ``subset_gaussian_noise``
surrogate, which needs no other data set. The original model labels each auxiliary image with
its arg-max class and keeps its logits as distillation targets; auxiliary batches are drawn
with replacement, each image weighted by 1 / (count of its predicted class) (counts below 3 set
to 5), as the reference code's ``WeightedRandomSampler``.

Class statistics (over the auxiliary data grouped by predicted class, see docs/DEVIATIONS.md):
``μ_c`` = mean and ``Σ_c`` = covariance of the Tukey-transformed features ``φ(h) = h^δ`` (the
input of the head, at the original model), shrunk twice with
``Σ + γ₁ V₁ I + γ₂ V₂ (1 − I)`` (V₁ = mean diagonal, V₂ = mean non-zero off-diagonal), turned into
a correlation matrix and pseudo-inverted. Distance of a feature ``h`` to class ``c``:
``d_c(h) = (u − v_c)ᵀ Σ_c⁺ (u − v_c)`` with ``u = φ(h)/‖φ(h)‖``, ``v_c = μ_c/‖μ_c‖``.
Vectors are normalised as ``torch.nn.functional.normalize`` does (``x / max(‖x‖, 1e-12)``), so
a class without statistics (zero mean) gives a finite distance column and finite gradients.
Each forget example's target is its closest class other than its label (at the original model).

Each epoch goes through the forget batches in order; each forget batch is paired with
``aux_batches_per_forget`` consecutive auxiliary batches, one Adam step each, minimising
``λ₁ mean_i d_{c_i}(h_i) + λ₂ KL(softmax(t/T) ‖ softmax(s))`` (t = original logits of the
auxiliary batch, s = the model's). Defaults are the authors': Adam lr 5e-4, no weight decay,
batch 1024, λ₁ 1, λ₂ 5, T 1, δ 0.5, γ₁ = γ₂ 3, 6 auxiliary batches per forget batch
(``num_retain_samp`` 5 for CIFAR-10), 10,000 noise images. BatchNorm in train mode for the
auxiliary (distillation) pass (the reference's ``model.train()``; the running statistics are
updated there); the forget features are taken with ``model.features`` (inference mode, which
has no train flag here; docs/DEVIATIONS.md). ``bn_mode="frozen"``: inference mode throughout.

>>> import numpy as np
>>> shrink_covariance(np.array([[2.0, 1.0], [1.0, 4.0]]), 1.0, 1.0).tolist()
[[5.0, 2.0], [2.0, 7.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.methods.base import (FORGET_AND_AUXILIARY, Method, MethodOutput, UnlearnTask,
                                  check_bn_mode, timed, xy)
from imu_jax.methods.grids import GRIDS, gradient_defaults
from imu_jax.methods.phases import one_phase_fit

DEFAULTS = gradient_defaults(learning_rate=5e-4, epochs=10, bn_mode="train", batch_size=1024,
                             weight_decay=0.0, optimizer="adamw", lambda_forget=1.0,
                             lambda_distill=5.0, temperature=1.0, delta=0.5, shrink1=3.0,
                             shrink2=3.0, aux_batches_per_forget=6, num_auxiliary=10_000)
GRID = GRIDS["scar"]


def shrink_covariance(cov: np.ndarray, gamma1: float, gamma2: float) -> np.ndarray:
    """``Σ + γ₁ V₁ I + γ₂ V₂ (1 − I)``, V₁ = mean diagonal, V₂ = mean of the non-zero
    off-diagonal entries (0 when there are none)."""
    eye = np.eye(len(cov))
    off = cov * (1 - eye)
    nonzero = off != 0
    v2 = off[nonzero].mean() if nonzero.any() else 0.0
    return cov + gamma1 * eye * np.mean(np.diag(cov)) + gamma2 * (1 - eye) * v2


def tukey(features, delta: float):
    """``sign(h) |h|^δ`` (= ``h^δ`` on the non-negative features of a ReLU network); 0 at 0,
    with a zero (not NaN) gradient there."""
    zero = features == 0
    safe = jnp.where(zero, 1.0, jnp.abs(features))
    return jnp.where(zero, 0.0, jnp.sign(features) * safe ** delta)


def class_statistics(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                     delta: float, gamma1: float, gamma2: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(means [C, D], inverse correlation matrices [C, D, D], valid [C])``; a class with fewer
    than two examples, or whose features are all constant (zero variance after shrinkage), is
    not valid: zero mean, identity inverse, never chosen as a target."""
    transformed = np.asarray(tukey(jnp.asarray(features, jnp.float32), delta), np.float64)
    dim = transformed.shape[1]
    means = np.zeros((num_classes, dim))
    inverses = np.tile(np.eye(dim), (num_classes, 1, 1))
    valid = np.zeros(num_classes, bool)
    for c in range(num_classes):
        samples = transformed[labels == c]
        if len(samples) < 2:
            continue
        cov = shrink_covariance(shrink_covariance(np.cov(samples.T), gamma1, gamma2),
                                gamma1, gamma2)
        if not np.all(np.diag(cov) > 0):  # every feature constant over the class: no metric
            continue
        sigma = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sigma, sigma)
        means[c], inverses[c], valid[c] = samples.mean(0), np.linalg.pinv(corr), True
    return means.astype(np.float32), inverses.astype(np.float32), valid


def normalize(vectors, eps: float = 1e-12):
    """``x / max(‖x‖, eps)`` along the last axis (``torch.nn.functional.normalize``, as the
    reference code): a zero vector stays zero, and the gradient is finite everywhere.

    >>> normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    squared = jnp.sum(jnp.square(vectors), axis=-1, keepdims=True)
    return vectors / jnp.sqrt(jnp.maximum(squared, eps * eps))


def mahalanobis(features, means, inverses, *, delta: float):
    """``[N, C]`` distances between normalised Tukey features and normalised class means.

    Classes without statistics have a zero mean: normalised to zero (not 0/0), their column is
    finite and so is the gradient of any other column (a NaN column would make every gradient
    NaN through the einsum's backward pass, ``0 · NaN``: SCAR diverged at step 1 on CIFAR-10,
    where the original model predicts 6 of the 10 classes on the noise images)."""
    u = normalize(tukey(features, delta))
    v = normalize(jnp.asarray(means))
    diff = u[:, None, :] - v[None]                              # [N, C, D]
    return jnp.einsum("ncd,cde,nce->nc", diff, inverses, diff)


def closest_wrong_class(distances: np.ndarray, labels: np.ndarray,
                        valid: np.ndarray) -> np.ndarray:
    """Arg-min distance over the valid classes other than the label.

    >>> closest_wrong_class(np.array([[0.1, 0.5, 0.2]]), np.array([0]), np.ones(3, bool)).tolist()
    [2]
    """
    masked = np.where(valid[None] & (np.arange(distances.shape[1])[None] != labels[:, None]),
                      distances, np.inf)
    return np.argmin(masked, axis=1).astype(labels.dtype)


def gaussian_auxiliary(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` images of N(0, 1) noise of shape ``shape`` (the reference's Gaussian surrogate)."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def scar_loss(model, params, state, batch: dict, means, inverses, *, delta: float,
              temperature: float, lambda_forget: float, lambda_distill: float,
              train: bool = False):
    """``λ₁ mean_i d_{target_i}(h(xf_i)) + λ₂ mean_j KL(softmax(ta_j / T) ‖ softmax(s(xa_j)))``
    for a batch ``{"xf", "target", "xa", "ta"}`` (``ta`` = the original model's logits); with
    ``train=True`` returns ``(loss, new_state)`` (the auxiliary pass in train mode)."""
    feats = model.features(params, state, batch["xf"])
    d = mahalanobis(feats, means, inverses, delta=delta)
    forget_term = jnp.mean(jnp.take_along_axis(d, batch["target"][:, None], axis=1))
    student_logits, new_state = model.apply(params, state, batch["xa"], train=train)
    student = jax.nn.log_softmax(student_logits)
    teacher = jax.nn.log_softmax(batch["ta"] / temperature)
    distill = jnp.mean(jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1))
    value = lambda_forget * forget_term + lambda_distill * distill
    return (value, new_state) if train else value


def _batched(fn, x: np.ndarray, size: int = 512) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i:i + size])) for i in range(0, len(x), size)])


def run(task: UnlearnTask, hparams: dict, seed: int) -> MethodOutput:
    model = task.model
    hparams = dict(hparams)
    k = {name: hparams.pop(name) for name in (
        "lambda_forget", "lambda_distill", "temperature", "delta", "shrink1", "shrink2",
        "aux_batches_per_forget", "num_auxiliary", "batch_size")}
    train_mode = check_bn_mode(hparams.pop("bn_mode"))
    forget = xy(task.forget)
    if forget["y"].ndim != 1 or not hasattr(model, "features"):
        raise ValueError("scar needs class labels [N] and a model with features() (the input "
                         "of its head); sequence models are not supported.")
    delta = k["delta"]

    def fit():
        aux = gaussian_auxiliary(forget["x"].shape[1:], k["num_auxiliary"], seed)
        logits = jax.jit(lambda x: model.apply(task.params, task.state, x, train=False)[0])
        features = jax.jit(lambda x: model.features(task.params, task.state, x))
        aux_logits = _batched(logits, aux)
        aux_pred = aux_logits.argmax(-1)
        means, inverses, valid = class_statistics(
            _batched(features, aux), aux_pred, task.num_classes, delta=delta,
            gamma1=k["shrink1"], gamma2=k["shrink2"])
        if valid.sum() < 2:
            raise ValueError("scar: the original model predicts fewer than two classes on the "
                             "auxiliary data, so no class distributions can be estimated.")
        distances = _batched(lambda x: mahalanobis(features(x), means, inverses, delta=delta),
                             forget["x"])
        targets = closest_wrong_class(distances, forget["y"], valid)
        counts = np.bincount(aux_pred, minlength=task.num_classes)[aux_pred].astype(np.float64)
        counts[counts < 3] = 5
        weights = (1 / counts) / np.sum(1 / counts)
        bs, per_forget = k["batch_size"], k["aux_batches_per_forget"]

        def batches(epoch, rng):
            del epoch
            for i in range(0, len(targets), bs):
                for _ in range(per_forget):
                    j = rng.choice(len(aux), size=min(bs, len(aux)), p=weights)
                    yield {"xf": forget["x"][i:i + bs], "target": targets[i:i + bs],
                           "xa": aux[j], "ta": aux_logits[j], "means": means,
                           "inverses": inverses}

        def loss(params, state, batch, train):  # statistics travel as arguments
            out = scar_loss(model, params, state, batch, batch["means"], batch["inverses"],
                            delta=delta, temperature=k["temperature"],
                            lambda_forget=k["lambda_forget"],
                            lambda_distill=k["lambda_distill"], train=train)
            return out if train else (out, state)

        params, state, info = one_phase_fit(task, loss, batches, label="scar", seed=seed,
                                            train_mode=train_mode, hparams=hparams)
        return params, state, {**info, "auxiliary": "gaussian_noise",
                               "auxiliary_classes": int(valid.sum())}

    return timed(fit)


METHOD = Method(name="scar", needs=FORGET_AND_AUXILIARY,
                summary="pull D_f features to the nearest wrong class (Mahalanobis), distil "
                        "the original on Gaussian-noise images",
                run=run, defaults=DEFAULTS, grid=GRID)
