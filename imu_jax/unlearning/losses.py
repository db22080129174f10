"""Inputs, labels and per-example losses of a model's forget batch: what the unlearning loop, the
stopping rule and the methods all evaluate.

The model's logits decide the task: logits ``[N, C]`` take classes ``[N]`` or one-hot ``[N, C]``
labels (softmax cross-entropy), logits ``[N, T, V]`` take next tokens ``[N, T]`` with ``-1`` as
padding (mean token cross-entropy).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import heads
from imu_jax.unlearning.config import INPUT_KEYS, PyTree


def input_and_labels(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` of a split dict (``"image"`` or ``"tokens"``, and ``"label"``).

    >>> x, y = input_and_labels({"tokens": np.zeros((2, 3), np.int32), "label": np.zeros((2, 3))})
    >>> x.shape, y.shape
    ((2, 3), (2, 3))
    """
    for key in INPUT_KEYS:
        if key in arrays:
            if "label" not in arrays:
                raise ValueError(f"data needs a 'label' array next to {key!r} (integer class or "
                                 f"next-token labels); got keys {sorted(arrays)}.")
            x, y = np.asarray(arrays[key]), np.asarray(arrays["label"])
            if x.shape[:1] != y.shape[:1]:
                raise ValueError(f"data has {x.shape[0] if x.ndim else 0} {key!r} rows but "
                                 f"{y.shape[0] if y.ndim else 0} 'label' rows.")
            return x, y
    raise ValueError(f"data needs one of {INPUT_KEYS} and 'label'; got keys {sorted(arrays)}.")


def labels_for_logits(logits_shape: tuple, labels: np.ndarray) -> np.ndarray:
    """Labels in the form the losses take, decided from the model's logits (not the labels' rank).

    Logits ``[N, C]``: classes ``[N]``, or one-hot ``[N, C]`` (converted to classes). Logits
    ``[N, T, V]``: next tokens ``[N, T]`` (``-1`` = padding). Anything else is a ``ValueError``
    naming the expected shapes.

    >>> labels_for_logits((5, 3), np.eye(3)[[0, 2, 1, 1, 0]]).tolist()
    [0, 2, 1, 1, 0]
    >>> labels_for_logits((2, 4, 7), np.zeros((2, 4), np.int32)).shape
    (2, 4)
    """
    labels = np.asarray(labels)
    n = labels.shape[0] if labels.ndim else 0
    if len(logits_shape) == 2:
        classes = logits_shape[1]
        if labels.ndim == 2 and labels.shape[1] == classes and np.all(
                (labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1):
            return np.argmax(labels, axis=1).astype(np.int32)
        if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
            return labels
        raise ValueError(
            f"the model's logits are [N, C] = [N, {classes}] (classification), so labels must be "
            f"integer classes [N] = [{n}] or one-hot [N, C] = [{n}, {classes}]; got labels of "
            f"shape {labels.shape} and dtype {labels.dtype}.")
    if len(logits_shape) == 3:
        if labels.ndim == 2 and labels.shape[1] == logits_shape[1] and np.issubdtype(
                labels.dtype, np.integer):
            return labels
        raise ValueError(
            f"the model's logits are [N, T, V] = [N, {logits_shape[1]}, {logits_shape[2]}] "
            f"(sequences), so labels must be integer next tokens [N, T] = [{n}, "
            f"{logits_shape[1]}] (-1 = padding); got labels of shape {labels.shape} and dtype "
            f"{labels.dtype}.")
    raise ValueError(f"the model's logits must be [N, C] (classes) or [N, T, V] (sequences); got "
                     f"logits of shape {tuple(logits_shape)}.")


def example_loss(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Loss of ONE example: softmax CE for a class label, mean token CE (label ≥ 0) for sequences.

    >>> round(float(example_loss(jnp.zeros(4), jnp.array(2))), 4)  # log 4
    1.3863
    >>> round(float(example_loss(jnp.zeros((3, 2)), jnp.array([1, -1, -1]))), 4)  # log 2
    0.6931
    """
    if label.ndim == 0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, label)
    mask = label >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, label, 0))
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def batch_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example losses ``[N]`` of a batch (vmap of :func:`example_loss`)."""
    return jax.vmap(example_loss)(logits, labels)


def make_example_loss(model, rest: PyTree, state: PyTree):
    """``loss(head, example) -> scalar`` for the core: the model in inference mode, rest fixed."""

    def loss(head, example):
        params = heads.merge_head(head, rest)
        logits, _ = model.apply(params, state, example["x"][None], train=False)
        return example_loss(logits[0], example["y"])

    return loss
