"""Head selection: which parameters define influence and get unlearned.

A parameter's *path* is its keys joined by ``/`` (``"head/kernel"``, ``"blocks/3/attn/q/kernel"``);
Flax NNX's ``.value`` accessor is dropped, so ``nnx.State`` and pure dicts give the same paths. A
*selector* is a regular expression (matched with ``re.search``) or a predicate
``fn(path, leaf) -> bool``.

:func:`split_head` returns two trees with the structure of ``params``: the head, with ``None`` where
a leaf is not selected, and the rest, with ``None`` where it is. Optax transforms and
:func:`imu_jax.per_example_grads` treat ``None`` as an empty subtree, so the head tree can be
optimized on its own; :func:`merge_head` puts the two back together. This is the pattern for
IMU's per-example transforms (``imu_sgd``, ``weighted_ascent``, ``influence_weighted_ascent``):
differentiate the head only and update it.

The masks serve whole-tree optimizers. :func:`frozen_mask` freezes the rest *after* IMU has
aggregated the per-example gradients (global mode; exact, tested):
``optax.chain(imu_sgd(...), optax.masked(optax.set_to_zero(), frozen_mask(params, sel)))``.
:func:`head_mask` / :func:`head_labels` plug into ``optax.masked`` / ``optax.partition`` for
ordinary (already aggregated) gradients; IMU's per-example transforms raise a ``ValueError``
inside them, because the leaves outside the mask would keep their example axis.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Union

import jax

__all__ = [
    "Selector",
    "param_path",
    "param_paths",
    "head_mask",
    "frozen_mask",
    "head_labels",
    "split_head",
    "merge_head",
]

PyTree = Any
Selector = Union[str, "re.Pattern[str]", Callable[[str, Any], bool]]


def _key_name(key: Any) -> str | None:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return None if key.name == "value" else key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def param_path(key_path: tuple) -> str:
    """``"a/b/c"`` for a JAX key path (as from ``jax.tree_util.tree_flatten_with_path``)."""
    return "/".join(name for name in map(_key_name, key_path) if name is not None)


def param_paths(params: PyTree) -> list[str]:
    """Every parameter path of ``params``, in tree order.

    Examples:
      >>> import imu_jax as imu
      >>> imu.param_paths({"body": {"kernel": 1.0}, "head": {"bias": 0.0, "kernel": 1.0}})
      ['body/kernel', 'head/bias', 'head/kernel']
    """
    return [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _predicate(selector: Selector) -> Callable[[str, Any], bool]:
    if callable(selector) and not isinstance(selector, re.Pattern):
        return selector
    pattern = re.compile(selector)
    return lambda path, leaf: pattern.search(path) is not None


def head_mask(params: PyTree, selector: Selector) -> PyTree:
    """A tree of Python bools, True on the head's leaves. Raises if nothing matches.

    Examples:
      >>> import imu_jax as imu
      >>> imu.head_mask({"body": {"kernel": 1.0}, "head": {"kernel": 2.0}}, r"^head/")
      {'body': {'kernel': False}, 'head': {'kernel': True}}
    """
    chosen = _predicate(selector)
    mask = jax.tree_util.tree_map_with_path(lambda p, leaf: bool(chosen(param_path(p), leaf)),
                                            params)
    if not any(jax.tree.leaves(mask)):
        available = param_paths(params)
        raise ValueError(
            f"head selector {selector!r} matches no parameter. Available paths "
            f"({len(available)}): {', '.join(available) if available else '(none)'}.")
    return mask


def frozen_mask(params: PyTree, selector: Selector) -> PyTree:
    """The complement of :func:`head_mask`: True on the parameters that stay fixed.

    With IMU over the whole tree (global mode), zero the frozen leaves after aggregating:
    ``optax.chain(imu_sgd(...), optax.masked(optax.set_to_zero(), frozen_mask(params, sel)))``.

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> imu.frozen_mask({"body": 1.0, "head": 2.0}, "head")
      {'body': True, 'head': False}
      >>> params = {"body": jnp.ones(2), "head": jnp.ones(2)}
      >>> opt = optax.chain(imu.imu_sgd(0.1), optax.masked(optax.set_to_zero(),
      ...                                                  imu.frozen_mask(params, "head")))
      >>> grads = {"body": jnp.ones((3, 2)), "head": jnp.ones((3, 2))}  # 3 examples
      >>> updates, _ = opt.update(grads, opt.init(params), params, weights=jnp.ones(3))
      >>> jax.tree.map(jnp.shape, optax.apply_updates(params, updates))
      {'body': (2,), 'head': (2,)}
      >>> updates["body"].tolist()
      [0.0, 0.0]
    """
    return jax.tree.map(lambda m: not m, head_mask(params, selector))


def head_labels(params: PyTree, selector: Selector, *, head: str = "head",
                frozen: str = "frozen") -> PyTree:
    """Labels for ``optax.partition``: ``head`` on the selected leaves, ``frozen`` elsewhere.

    For ordinary (aggregated) gradients; IMU's per-example transforms refuse to run inside
    ``optax.partition`` (use :func:`split_head`, see the module docstring).

    Examples:
      >>> import optax, imu_jax as imu
      >>> params = {"body": 1.0, "head": 2.0}
      >>> opt = optax.partition({"head": optax.sgd(0.1), "frozen": optax.set_to_zero()},
      ...                       imu.head_labels(params, "head"))
      >>> imu.head_labels(params, "head")
      {'body': 'frozen', 'head': 'head'}
    """
    return jax.tree.map(lambda m: head if m else frozen, head_mask(params, selector))


def split_head(params: PyTree, selector: Selector) -> tuple[PyTree, PyTree]:
    """Splits ``params`` into ``(head, rest)`` trees of the same structure, ``None``-filled.

    Examples:
      >>> import imu_jax as imu
      >>> head, rest = imu.split_head({"body": {"kernel": 1.0}, "head": {"kernel": 2.0}}, "head")
      >>> head
      {'body': {'kernel': None}, 'head': {'kernel': 2.0}}
      >>> imu.merge_head(head, rest)
      {'body': {'kernel': 1.0}, 'head': {'kernel': 2.0}}
    """
    mask = head_mask(params, selector)
    head = jax.tree.map(lambda m, x: x if m else None, mask, params)
    rest = jax.tree.map(lambda m, x: None if m else x, mask, params)
    return head, rest


def merge_head(head: PyTree, rest: PyTree) -> PyTree:
    """Inverse of :func:`split_head`: each leaf comes from whichever tree is not ``None`` there.

    Examples:
      >>> import imu_jax as imu
      >>> imu.merge_head({"body": None, "head": 2.0}, {"body": 1.0, "head": None})
      {'body': 1.0, 'head': 2.0}
    """

    def pick(h, r):
        if (h is None) == (r is None):
            raise ValueError("merge_head needs exactly one of head and rest to hold each leaf.")
        return r if h is None else h

    return jax.tree.map(pick, head, rest, is_leaf=lambda x: x is None)
