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

A regular expression matches anywhere in a path, so ``"head"`` also selects ``pre_head/kernel``.
:func:`path_prefix` selects exactly the subtree at a path (``path_prefix("head")``: ``head/...``
only); :func:`head_candidates` lists the layers a selector picks and :func:`check_head_selector`
raises when a plain-word selector picks layers whose names merely contain the word.
:func:`dense_softmax_head` recognises a single dense layer (kernel ``[D, C]`` + bias ``[C]``)
whatever its name (Linen ``params/Dense_2``, NNX ``classifier``), the case of IMU's closed form.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Selector",
    "param_path",
    "param_paths",
    "head_mask",
    "frozen_mask",
    "head_labels",
    "split_head",
    "merge_head",
    "path_prefix",
    "head_candidates",
    "check_head_selector",
    "DenseHead",
    "dense_softmax_head",
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
        raise ValueError(_matches_nothing(params, selector))
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


def path_prefix(prefix: str) -> Callable[[str, Any], bool]:
    """A selector for exactly the subtree at ``prefix``: its path or a path below it.

    Unlike the regular expression ``"head"`` (``re.search``), ``path_prefix("head")`` selects
    ``head/kernel`` but not ``pre_head/kernel`` nor ``blocks/head/kernel``; it is
    ``r"^head(/|$)"`` without the regex syntax.

    Examples:
      >>> import imu_jax as imu
      >>> params = {"pre_head": {"kernel": 1.0}, "head": {"kernel": 2.0, "bias": 0.0}}
      >>> imu.param_paths(imu.split_head(params, "head")[0])
      ['head/bias', 'head/kernel', 'pre_head/kernel']
      >>> imu.param_paths(imu.split_head(params, imu.path_prefix("head"))[0])
      ['head/bias', 'head/kernel']
    """
    prefix = prefix.strip("/")
    if not prefix:
        raise ValueError("path_prefix needs a non-empty path, e.g. 'head' or 'params/Dense_2'.")

    def selector(path: str, leaf: Any) -> bool:
        del leaf
        return path == prefix or path.startswith(prefix + "/")

    selector.__qualname__ = selector.__name__ = f"path_prefix({prefix!r})"
    return selector


def _selected_paths(params: PyTree, selector: Selector) -> list[str]:
    chosen = _predicate(selector)
    return [param_path(p) for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
            if chosen(param_path(p), leaf)]


def _layer(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def head_candidates(params: PyTree, selector: Selector) -> list[str]:
    """The layers (paths of the selected leaves' parents) that ``selector`` picks, in tree order.

    Examples:
      >>> import imu_jax as imu
      >>> params = {"pre_head": {"kernel": 1.0}, "head": {"kernel": 2.0, "bias": 0.0}}
      >>> imu.head_candidates(params, "head")
      ['head', 'pre_head']
    """
    layers: list[str] = []
    for path in _selected_paths(params, selector):
        if _layer(path) not in layers:
            layers.append(_layer(path))
    return layers


def _selector_name(selector: Selector) -> str:
    if isinstance(selector, re.Pattern):
        return repr(selector.pattern)
    if isinstance(selector, str):
        return repr(selector)
    return getattr(selector, "__name__", None) or repr(selector)


def _dense_layers(params: PyTree) -> dict[str, tuple[tuple, tuple]]:
    """``{layer: (kernel shape, bias shape)}`` of the layers holding a kernel ``[D, C]`` and a
    bias ``[C]``, in tree order."""
    leaves = {param_path(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    out: dict[str, tuple[tuple, tuple]] = {}
    for path in leaves:
        layer = _layer(path)
        kernel, bias = leaves.get(f"{layer}/kernel"), leaves.get(f"{layer}/bias")
        if layer and layer not in out and kernel is not None and bias is not None:
            k, b = tuple(np.shape(kernel)), tuple(np.shape(bias))
            if len(k) == 2 and b == k[1:]:
                out[layer] = (k, b)
    return out


def _how_to_select(layer: str, what: str) -> str:
    return (f"{what}: imu_jax.path_prefix({layer!r}), the anchored regular expression "
            f"'^{layer}/' (UnlearnConfig(head='^{layer}/') in imu_jax.unlearn), or a predicate "
            f"such as lambda path, leaf: path.startswith('{layer}/')")


def _listing(items: list[str], limit: int) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)"
                                       if len(items) > limit else "")


def _matches_nothing(params: PyTree, selector: Selector) -> str:
    """The error text for a selector that picks no parameter: the paths, the dense layers, and
    how to select one (the narrowest dense layer, most likely the one giving the logits)."""
    paths = param_paths(params)
    dense = _dense_layers(params)
    lines = [f"head selector {_selector_name(selector)} matches no parameter. Its parameter "
             f"paths ({len(paths)}): {_listing(paths, 40) if paths else '(none)'}."]
    if dense:
        lines.append("Its dense layers (kernel [D, C] + bias [C]):")
        lines += [f"  {layer}: kernel {list(k)}, bias {list(b)}" for layer, (k, b) in dense.items()]
        narrowest = min(b[0] for _, b in dense.values())
        suggestion = [layer for layer, (_, b) in dense.items() if b[0] == narrowest][-1]
    else:
        suggestion = _layer(paths[-1]) if paths else ""
    if suggestion:
        lines.append(_how_to_select(suggestion, "Select the head by its path, e.g.") + ".")
    return "\n".join(lines)


def check_head_selector(params: PyTree, selector: Selector) -> None:
    """Raises ``ValueError`` when ``selector`` matches nothing, or is a plain word (no regex
    syntax) that picks several layers of which some only contain the word inside a name
    (``"head"`` picking ``head`` and ``pre_head``): the user most likely meant one of them.

    This is THE head check: :func:`imu_jax.unlearn` (its ``UnlearnConfig.head``, the default
    ``"head"`` included) runs it, so a selector gets the same decision and the same message in
    the core and in the loop. A selector matching nothing lists the parameter paths and the
    dense layers; an ambiguous one lists each layer's selected paths, and both say how to select
    one layer exactly. Several layers that all have the word as a whole path component
    (``"attn"`` picking ``blocks/0/attn/q`` and ``blocks/1/attn/q``) are a deliberate
    multi-layer head and pass, as do regular expressions and predicates.

    Examples:
      >>> import imu_jax as imu
      >>> params = {"pre_head": {"kernel": 1.0}, "head": {"kernel": 2.0}}
      >>> imu.check_head_selector(params, "head")
      Traceback (most recent call last):
      ...
      ValueError: head selector 'head' is ambiguous: it matches 2 layers, head, pre_head ...
      >>> imu.check_head_selector(params, imu.path_prefix("head"))   # one layer: fine
    """
    head_mask(params, selector)  # raises, listing the paths, when nothing matches
    if not isinstance(selector, str) or not re.fullmatch(r"[\w/-]+", selector):
        return  # a regular expression or a predicate says what it means
    selected = _selected_paths(params, selector)
    layers = head_candidates(params, selector)
    words = selector.strip("/").split("/")

    def whole(path: str) -> bool:  # the words appear as whole path components
        parts = path.split("/")
        return any(parts[i:i + len(words)] == words for i in range(len(parts)))

    if len(layers) > 1 and not all(whole(path) for path in selected):
        exact = sorted((layer for layer in layers if whole(layer)),
                       key=lambda layer: (layer != selector.strip("/"), layer.count("/")))
        listing = "\n".join(
            f"  {layer}: {_listing([p for p in selected if _layer(p) == layer], 8)}"
            for layer in layers)
        hint = (_how_to_select(exact[0], "Select one layer exactly") if exact else
                "Select one layer exactly with imu_jax.path_prefix('<layer>'), an anchored "
                "regular expression or a predicate")
        raise ValueError(
            f"head selector {selector!r} is ambiguous: it matches {len(layers)} layers, "
            f"{', '.join(layers)} (a selector is a regular expression searched anywhere in the "
            f"parameter path):\n{listing}\n{hint}; to mean all of them, use a regular "
            "expression or a predicate.")


class DenseHead(NamedTuple):
    """The paths of a dense layer's kernel ``[D, C]`` and bias ``[C]`` in a parameter tree."""
    kernel_path: str
    bias_path: str

    def take(self, tree: PyTree) -> dict[str, jax.Array]:
        """``{"kernel": [D, C], "bias": [C]}`` arrays read from ``tree`` at these paths (a
        parameter tree or the head of :func:`split_head`; NNX variables become arrays)."""
        flat = {param_path(p): leaf
                for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
        missing = [path for path in self if path not in flat]
        if missing:
            raise ValueError(f"the tree has no parameter at {', '.join(missing)}.")
        return {"kernel": jnp.asarray(flat[self.kernel_path]),
                "bias": jnp.asarray(flat[self.bias_path])}


def dense_softmax_head(head_tree: PyTree) -> DenseHead | None:
    """The dense layer that ``head_tree`` consists of, found by structure, or ``None``.

    ``head_tree`` (a parameter tree, or the ``None``-filled head of :func:`split_head`; dicts,
    Linen variables and ``nnx.State`` alike) qualifies when its leaves are exactly two arrays of
    one layer: a kernel ``[D, C]`` and a bias ``[C]``, whatever the names (Linen ``Dense_2``,
    NNX ``classifier``, Haiku ``w``/``b``). This is the shape of IMU's closed form
    (:func:`imu_jax.classifier_influence`); that the layer's output is the model's logits (a
    softmax over ``C`` classes) is the caller's to check, e.g. on a few examples.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> params = {"params": {"Dense_0": {"kernel": jnp.ones((4, 8)), "bias": jnp.ones(8)},
      ...                      "Dense_1": {"kernel": jnp.ones((8, 3)), "bias": jnp.zeros(3)}}}
      >>> head, rest = imu.split_head(params, imu.path_prefix("params/Dense_1"))
      >>> dense = imu.dense_softmax_head(head)
      >>> dense
      DenseHead(kernel_path='params/Dense_1/kernel', bias_path='params/Dense_1/bias')
      >>> {k: v.shape for k, v in dense.take(head).items()}
      {'kernel': (8, 3), 'bias': (3,)}
      >>> imu.dense_softmax_head(params) is None   # two layers: not one dense head
      True
    """
    leaves = [(param_path(p), leaf)
              for p, leaf in jax.tree_util.tree_flatten_with_path(head_tree)[0]]
    if len(leaves) != 2 or _layer(leaves[0][0]) != _layer(leaves[1][0]):
        return None
    (path_a, a), (path_b, b) = leaves
    if np.ndim(a) == 1 and np.ndim(b) == 2:
        (path_a, a), (path_b, b) = (path_b, b), (path_a, a)
    if np.ndim(a) != 2 or np.ndim(b) != 1 or np.shape(a)[1] != np.shape(b)[0]:
        return None
    if not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in (a, b)):
        return None
    return DenseHead(kernel_path=path_a, bias_path=path_b)
