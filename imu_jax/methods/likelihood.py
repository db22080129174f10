"""Likelihoods shared by the preference-style and gradient-difference baselines.

Labels ``[N]`` are classes; labels ``[N, T]`` are next tokens with ``-1`` as padding. For a
class label a "sequence" has one token, so every function here also works on classifiers.

>>> import jax.numpy as jnp
>>> logits = jnp.zeros((1, 3, 4))                     # uniform over 4 tokens
>>> labels = jnp.array([[1, 2, -1]])                  # two real tokens, one pad
>>> round(float(sequence_log_prob(logits, labels)[0]), 4), int(num_tokens(labels)[0])
(-2.7726, 2)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _token_log_probs(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log p(label), mask)`` per token; class labels are treated as length-1 sequences."""
    if labels.ndim == 1:
        logits, labels = logits[:, None, :], labels[:, None]
    mask = labels >= 0
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.where(mask, labels, 0)[..., None], axis=-1)
    return jnp.where(mask, picked[..., 0], 0.0), mask


def sequence_log_prob(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``log π(y|x)`` per example ``[N]``: the SUM of the non-padding token log-probabilities."""
    token_lp, _ = _token_log_probs(logits, labels)
    return jnp.sum(token_lp, axis=-1)


def num_tokens(labels: jax.Array) -> jax.Array:
    """``|y|`` per example ``[N]``: the number of non-padding tokens (1 for a class label)."""
    if labels.ndim == 1:
        return jnp.ones(labels.shape, jnp.float32)
    return jnp.sum(labels >= 0, axis=-1).astype(jnp.float32)


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy over every non-padding token of the batch (PyTorch's
    ``cross_entropy(..., ignore_index)`` on the flattened batch); for classes the mean CE.

    >>> import jax.numpy as jnp
    >>> round(float(token_cross_entropy(jnp.zeros((2, 2, 4)), jnp.array([[0, -1], [1, 2]]))), 4)
    1.3863
    """
    token_lp, mask = _token_log_probs(logits, labels)
    return -jnp.sum(token_lp) / jnp.maximum(jnp.sum(mask), 1)
