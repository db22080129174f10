"""Tiny self-contained models and data for the unlearning tests (no imu_jax.models needed).

``TinyClassifier`` follows the FunctionalModel contract: ``apply(params, state, x, *, train)``,
``features``; its state holds a running mean of the features (BatchNorm-like) so that
``update_batch_stats`` has something to change.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


class TinyClassifier:
    name = "tiny"

    def __init__(self, num_classes: int = 4, dim: int = 8, width: int = 16):
        self.num_classes, self.dim, self.width = num_classes, dim, width
        self.config = {"name": "tiny", "num_classes": num_classes, "dim": dim, "width": width}

    def init(self, seed: int = 0):
        k1, k2 = jax.random.split(jax.random.key(seed))
        params = {
            "body": {"kernel": jax.random.normal(k1, (self.dim, self.width)) / np.sqrt(self.dim),
                     "bias": jnp.zeros(self.width)},
            "head": {"kernel": jax.random.normal(k2, (self.width, self.num_classes)) * 0.1,
                     "bias": jnp.zeros(self.num_classes)},
        }
        return params, {"mean": jnp.zeros(self.width)}

    def _hidden(self, params, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params["body"]["kernel"]
                        + params["body"]["bias"])

    def features(self, params, state, x):
        return self._hidden(params, x) - state["mean"]

    def apply(self, params, state, x, *, train=False):
        hidden = self._hidden(params, x)
        if train:
            state = {"mean": 0.9 * state["mean"] + 0.1 * jnp.mean(hidden, axis=0)}
        features = hidden - state["mean"]
        return features @ params["head"]["kernel"] + params["head"]["bias"], state


class TinySequenceModel:
    """Embedding → per-position head; tokens ``[N, T]`` → logits ``[N, T, V]`` (no features)."""

    name = "tiny_seq"

    def __init__(self, vocab: int = 5, width: int = 8):
        self.vocab, self.width = vocab, width

    def init(self, seed: int = 0):
        k1, k2 = jax.random.split(jax.random.key(seed))
        return {"embed": jax.random.normal(k1, (self.vocab, self.width)),
                "head": {"kernel": jax.random.normal(k2, (self.width, self.vocab)) * 0.3,
                         "bias": jnp.zeros(self.vocab)}}, {}

    def apply(self, params, state, tokens, *, train=False):
        h = params["embed"][tokens]
        return h @ params["head"]["kernel"] + params["head"]["bias"], state


def blobs(num_per_class: int = 40, num_classes: int = 4, dim: int = 8, seed: int = 0):
    """Gaussian blobs as a split dict ``{"image": f32 [N, dim], "label": i32 [N]}``."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(123).normal(size=(num_classes, dim)) * 1.2
    labels = np.repeat(np.arange(num_classes), num_per_class).astype(np.int32)
    images = (centers[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    return {"image": images, "label": labels}


def split_by_class(data, forget_class: int):
    mask = data["label"] == forget_class
    return ({k: v[mask] for k, v in data.items()}, {k: v[~mask] for k, v in data.items()})


@functools.lru_cache(maxsize=None)
def trained_classifier(seed: int = 0, steps: int = 300):
    """A TinyClassifier trained on all four blobs, with its data splits (cached per process)."""
    model = TinyClassifier()
    params, state = model.init(seed)
    train = blobs(seed=seed)
    test = blobs(num_per_class=20, seed=seed + 100)
    tx = optax.adam(0.03)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        def loss(p):
            logits, _ = model.apply(p, state, train["image"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, train["label"]).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    forget, retain = split_by_class(train, 3)
    return model, params, state, {"train": train, "forget": forget, "retain": retain,
                                  "test": test}


def accuracy(model, params, state, data) -> float:
    logits, _ = model.apply(params, state, data["image"])
    return float(np.mean(np.argmax(np.asarray(logits), -1) == data["label"]))
