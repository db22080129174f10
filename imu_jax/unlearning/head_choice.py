"""Whether the selected head is the one dense softmax layer the closed form needs
(:func:`dense_layer`), and why not when it is not.

Which parameters are the head is decided in the core, by :func:`imu_jax.heads.check_head_selector`
(the loop runs it on ``UnlearnConfig.head``), so a selector gets one decision and one message
wherever it is used.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from imu_jax import heads

PyTree = Any


def _layer(path: str) -> str:
    """The layer of a parameter path: everything before its last component."""
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _leaves(params: PyTree) -> dict[str, Any]:
    return {heads.param_path(p): leaf
            for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


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
    leaves = _leaves(head)
    if found is not None:
        return (_layer(found.kernel_path),
                {"kernel": leaves[found.kernel_path], "bias": leaves[found.bias_path]}, "")
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
    return None, None, (f"the head layer {layer!r} has a kernel and bias that are not "
                        "floating-point; the closed form needs float parameters")
