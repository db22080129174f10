"""Which parameters are the head θ_h (:func:`resolve_head`), and whether they form the one dense
softmax layer the closed form needs (:func:`dense_layer`).

The default selector ``"head"`` means *the layer named head*: the parameters under the one path
prefix whose last component contains ``head`` (``head/kernel``, ``head/bias``). When ``head``
occurs in the paths of several layers (``head`` and ``pre_head``) the default is ambiguous and
an error lists them; when it occurs nowhere, the error lists the model's dense layers. Any other
string is a regular expression (``re.search`` on "/"-joined paths, e.g. ``"^classifier/"``) and
a callable is a predicate ``fn(path, leaf) -> bool``, both used as given.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

from imu_jax import heads
from imu_jax.heads import Selector

PyTree = Any

DEFAULT_HEAD = "head"


def _layer(path: str) -> str:
    """The layer of a parameter path: everything before its last component."""
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _leaves(params: PyTree) -> dict[str, Any]:
    return {heads.param_path(p): leaf
            for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def dense_layers(params: PyTree) -> dict[str, tuple[tuple, tuple]]:
    """``{layer: (kernel shape, bias shape)}`` of every layer holding a kernel ``[D, C]`` and a
    bias ``[C]``, in tree order.

    >>> import numpy as np
    >>> dense_layers({"Dense_0": {"kernel": np.ones((4, 8)), "bias": np.ones(8)},
    ...               "BatchNorm_0": {"scale": np.ones(8), "bias": np.ones(8)}})
    {'Dense_0': ((4, 8), (8,))}
    """
    leaves, out = _leaves(params), {}
    for path in leaves:
        layer = _layer(path)
        kernel, bias = leaves.get(f"{layer}/kernel"), leaves.get(f"{layer}/bias")
        if layer and layer not in out and kernel is not None and bias is not None:
            k, b = tuple(np.shape(kernel)), tuple(np.shape(bias))
            if len(k) == 2 and b == k[1:]:
                out[layer] = (k, b)
    return out


def _how_to_choose(example: str) -> str:
    return (f"Choose the head explicitly: UnlearnConfig(head='^{example}/') (a regex on "
            f"'/'-joined parameter paths, anchored) or a predicate, UnlearnConfig(head=lambda "
            f"path, leaf: path.startswith('{example}/')).")


def _describe(layers: dict, width: int | None) -> tuple[str, str]:
    """Lines listing dense layers (those giving ``width`` outputs first) and the one to suggest."""
    fitting = [k for k, (_, b) in layers.items() if width is None or b == (width,)]
    order = fitting + [k for k in layers if k not in fitting]
    lines = [f"  {k}: kernel {list(layers[k][0])}, bias {list(layers[k][1])}"
             + (" (as wide as the logits)" if width is not None and k in fitting else "")
             for k in order]
    return "\n".join(lines), (fitting[-1] if fitting else (order[-1] if order else "head"))


def resolve_head(params: PyTree, selector: Selector, *, logits_width: int | None = None
                 ) -> Selector:
    """The selector to split ``params`` with: the default ``"head"`` becomes the anchored path
    of the one layer named head; anything else is returned as it is.

    Args:
      params: the model's parameters.
      selector: ``UnlearnConfig.head``.
      logits_width: the number of classes (or vocabulary size), to suggest a layer in errors.

    Raises:
      ValueError: the default is ambiguous (``head`` in several layers' paths) or matches nothing;
        the message lists the candidate parameter paths and how to choose.

    Examples:
      >>> import numpy as np
      >>> p = {"pre_head": {"kernel": np.ones((4, 8)), "bias": np.ones(8)},
      ...      "head": {"kernel": np.ones((8, 3)), "bias": np.ones(3)}}
      >>> resolve_head({"head": p["head"]}, "head")
      '^head(/|$)'
      >>> resolve_head(p, "head")
      Traceback (most recent call last):
      ...
      ValueError: the default head selector 'head' is ambiguous: 'head' occurs in the parameter ...
        head: head/bias, head/kernel
        pre_head: pre_head/bias, pre_head/kernel
      Choose the head explicitly: UnlearnConfig(head='^head/') ...
    """
    if not (isinstance(selector, str) and selector == DEFAULT_HEAD):
        return selector
    candidates: dict[str, list[str]] = {}
    for path in heads.param_paths(params):
        parts = path.split("/")
        first = next((i for i, part in enumerate(parts) if DEFAULT_HEAD in part), None)
        if first is not None:
            candidates.setdefault("/".join(parts[:first + 1]), []).append(path)
    if len(candidates) == 1:
        return f"^{re.escape(next(iter(candidates)))}(/|$)"
    if candidates:
        listing = "\n".join(f"  {layer}: {', '.join(paths)}"
                            for layer, paths in candidates.items())
        exact = [c for c in candidates if c.split("/")[-1] == DEFAULT_HEAD]
        raise ValueError(
            f"the default head selector 'head' is ambiguous: 'head' occurs in the parameter "
            f"paths of {len(candidates)} layers:\n{listing}\n"
            + _how_to_choose(exact[0] if exact else next(iter(candidates))))
    listing, suggestion = _describe(dense_layers(params), logits_width)
    paths = heads.param_paths(params)
    raise ValueError(
        "the default head selector 'head' matches no parameter: the model has no layer named "
        "'head'. "
        + (f"Its dense layers (kernel [D, C] + bias [C]):\n{listing}\n" if listing else
           f"Its parameter paths: {', '.join(paths[:20])}{' ...' if len(paths) > 20 else ''}.\n")
        + _how_to_choose(suggestion))


def dense_layer(head: PyTree) -> tuple[str | None, dict | None, str]:
    """``(layer, {"kernel", "bias"}, "")`` when the selected head (``split_head``'s head tree,
    ``None`` off the head) is exactly one dense layer, else ``(None, None, why not)``.

    >>> import numpy as np
    >>> layer, dense, _ = dense_layer({"Dense_2": {"kernel": np.ones((8, 3)), "bias": np.ones(3)},
    ...                                "Dense_1": {"kernel": None, "bias": None}})
    >>> layer, dense["kernel"].shape
    ('Dense_2', (8, 3))
    >>> dense_layer({"a": {"kernel": np.ones((2, 2))}, "b": {"kernel": np.ones((2, 2))}})[2]
    'the head has 2 layers (a, b); the closed form needs one dense layer'
    """
    found = heads.dense_softmax_head(head)  # the core's finder; below, only the reasons why not
    if found is not None:
        return _layer(found.kernel_path), found.take(head), ""
    leaves = _leaves(head)
    layers = sorted({_layer(p) for p in leaves})
    if len(layers) != 1:
        return None, None, (f"the head has {len(layers)} layers ({', '.join(layers)}); the closed "
                            "form needs one dense layer")
    (layer,) = layers
    names = sorted(p.rsplit("/", 1)[-1] for p in leaves)
    if not layer or names != ["bias", "kernel"]:
        return None, None, (f"the head layer {layer or '(root)'!r} holds {names}; the closed form "
                            "needs exactly a kernel [D, C] and a bias [C]")
    kernel, bias = leaves[f"{layer}/kernel"], leaves[f"{layer}/bias"]
    k, b = tuple(np.shape(kernel)), tuple(np.shape(bias))
    if len(k) != 2 or b != k[1:]:
        return None, None, (f"the head layer {layer!r} has kernel {list(k)} and bias {list(b)}; "
                            "the closed form needs a kernel [D, C] and a bias [C]")
    return layer, {"kernel": kernel, "bias": bias}, ""
