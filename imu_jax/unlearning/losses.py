"""Inputs, labels and per-example losses of a model's forget batch: what the unlearning loop, the
stopping rule and the methods all evaluate.

The model's logits decide the task: logits ``[N, C]`` take classes ``[N]`` or one-hot ``[N, C]``
labels (softmax cross-entropy), logits ``[N, T, V]`` take next tokens ``[N, T]`` with ``-1`` as
padding (mean token cross-entropy).
"""

from __future__ import annotations

import inspect
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import heads
from imu_jax.unlearning.config import LABEL_KEYS, PyTree


def input_and_labels(arrays: Mapping[str, np.ndarray]) -> tuple[PyTree, np.ndarray]:
    """``(inputs, labels)`` of a split dict: the labels are ``"label"``, the inputs every other
    key (``LABEL_KEYS`` aside): that array when there is one (``"image"``, ``"tokens"``, any
    name), else a dict of them, which the model receives as it is.

    >>> x, y = input_and_labels({"tokens": np.zeros((2, 3), np.int32), "label": np.zeros((2, 3))})
    >>> x.shape, y.shape
    ((2, 3), (2, 3))
    >>> x, _ = input_and_labels({"image": np.zeros((2, 4)), "mask": np.ones((2, 4)),
    ...                          "label": np.zeros(2, np.int32)})
    >>> sorted(x)
    ['image', 'mask']
    """
    keys = [k for k in arrays if k not in LABEL_KEYS]
    if not keys:
        raise ValueError(f"data needs input arrays next to 'label' (every key but "
                         f"{list(LABEL_KEYS)} is an input); got keys {sorted(arrays)}.")
    if "label" not in arrays:
        raise ValueError(f"data needs a 'label' array next to {', '.join(map(repr, keys))} "
                         f"(integer class or next-token labels); got keys {sorted(arrays)}.")
    y = np.asarray(arrays["label"])
    x = {k: np.asarray(arrays[k]) for k in keys}
    for key, value in x.items():
        if value.shape[:1] != y.shape[:1]:
            raise ValueError(f"data has {value.shape[0] if value.ndim else 0} {key!r} rows but "
                             f"{y.shape[0] if y.ndim else 0} 'label' rows.")
    return (x[keys[0]] if len(keys) == 1 else x), y


def describe_inputs(x: PyTree) -> str:
    """``float32[7]`` (one array) or ``{'image': float32[7], 'mask': bool[7]}``: per example.

    >>> describe_inputs({"image": np.zeros((5, 7), np.float32), "mask": np.ones((5, 7), bool)})
    "{'image': float32[7], 'mask': bool[7]}"
    """
    def one(a):
        return f"{np.asarray(a).dtype}[{','.join(map(str, np.shape(a)[1:]))}]"

    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k!r}: {one(v)}" for k, v in x.items()) + "}"
    return one(x)


def output_shape(model, params: PyTree, state: PyTree, x: PyTree, name: str, *,
                 key: str | None = None) -> tuple:
    """The logits' shape for one example of ``x`` (abstract, ``jax.eval_shape``), or a
    ``ValueError`` naming ``name``, the inputs (the data's ``key`` for one array) and, for
    several, that the model receives them as a dict.

    >>> class Linear:
    ...     def apply(self, params, state, x, *, train=False):
    ...         return x @ params, state
    >>> output_shape(Linear(), np.zeros((3, 2)), {}, np.zeros((4, 3)), "forget")
    (1, 2)

    A shape found is remembered per model (when it is hashable) and abstract inputs: a second run
    with the same shapes does not trace the model again.
    """
    one = jax.tree.map(lambda a: np.asarray(a[:1]), x)
    try:
        key = (model, _abstract(params), _abstract(state), _abstract(one))
        hash(key)
    except TypeError:  # an unhashable model: traced every time
        key = None
    if key is not None and key in _OUTPUT_SHAPES:
        return _OUTPUT_SHAPES[key]
    try:
        logits = jax.eval_shape(lambda p, s, xb: model.apply(p, s, xb, train=False)[0],
                                params, state, one)
    except Exception as err:  # noqa: BLE001 - any failure means the inputs do not fit
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if isinstance(x, Mapping):
            received = (f"the data has {len(x)} input keys, so the model receives them as one "
                        f"dict {{{', '.join(map(repr, x))}}}: make it take that dict, or drop the "
                        "keys it does not use")
        else:
            received = (f"the model receives the data's {key!r} array: every key but 'label' is "
                        "an input, one array as the library's 'image' or 'tokens', or a dict of "
                        "several" if key else "")
        raise ValueError(f"{name}: inputs {describe_inputs(x)} per example do not fit the model"
                         f"{f' ({received})' if received else ''}: {type(err).__name__}: "
                         f"{first}") from None
    if key is not None:
        if len(_OUTPUT_SHAPES) >= 256:
            _OUTPUT_SHAPES.clear()
        _OUTPUT_SHAPES[key] = tuple(logits.shape)
    return tuple(logits.shape)


_OUTPUT_SHAPES: dict = {}  # output_shape's (model, abstract inputs) -> logits shape


def _abstract(tree: PyTree) -> tuple:
    """``tree``'s structure with each leaf's shape and dtype: what ``jax.eval_shape`` reads."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(a), str(jnp.result_type(a))) for a in leaves)


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
    """``loss(head, example) -> scalar`` for the core: the model in inference mode, rest fixed;
    ``example["x"]`` is one array or a dict of the inputs."""

    def loss(head, example):
        params = heads.merge_head(head, rest)
        x = jax.tree.map(lambda a: a[None], example["x"])
        logits, _ = model.apply(params, state, x, train=False)
        return example_loss(logits[0], example["y"])

    return loss


def takes_rng(model) -> bool:
    """Whether ``model.apply`` takes ``rng=`` (a ``jax.random`` key for train-mode Dropout).

    >>> class M:
    ...     def apply(self, params, state, x, *, train=False, rng=None): ...
    >>> takes_rng(M()), takes_rng(object())
    (True, False)
    """
    try:
        parameters = inspect.signature(model.apply).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "rng" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                       for p in parameters.values())


def train_apply(model, params: PyTree, state: PyTree, x: PyTree, rng: jax.Array | None):
    """``model.apply(..., train=True)``, with ``rng=rng`` where the model takes it."""
    if rng is not None and takes_rng(model):
        return model.apply(params, state, x, train=True, rng=rng)
    return model.apply(params, state, x, train=True)
