"""The influence step of the loop (spec §1–2): score the forget set with the closed form where the
head allows it (else the streaming generic path) and select and weight the examples to ascend on."""

from __future__ import annotations

import warnings
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import heads, sharding
from imu_jax.influence import (NoNegativeInfluenceWarning, classifier_influence, influence_scores,
                               influence_weights)
from imu_jax.lm_head import sequence_influence
from imu_jax.unlearning.config import PyTree, UnlearnConfig
from imu_jax.unlearning.losses import make_example_loss


def _dense_head(params: PyTree, head_tree: PyTree) -> dict | None:
    """``params["head"]`` when the selected head is exactly that ``{"kernel", "bias"}`` dict."""
    if not isinstance(params, Mapping) or "head" not in params:
        return None
    candidate = params["head"]
    if not isinstance(candidate, Mapping) or set(candidate) != {"kernel", "bias"}:
        return None
    selected = heads.param_paths(head_tree)
    if sorted(selected) != ["head/bias", "head/kernel"]:
        return None
    return {"kernel": candidate["kernel"], "bias": candidate["bias"]}


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def forget_influence(model, params: PyTree, state: PyTree, x: np.ndarray, y: np.ndarray,
                     config: UnlearnConfig, *, place: sharding.Placement | None = None
                     ) -> tuple[np.ndarray, bool]:
    """Influence scores ``[N]`` of the forget examples (spec §1) and whether the closed form ran.

    The closed form applies when the model has ``features``, labels are classes and the head is
    exactly the dense ``params["head"]`` whose output equals the model's logits (checked on a few
    examples); otherwise the streaming generic path of the core runs. With a ``place``ment on a
    mesh, the examples are sharded over ``data`` and the head over ``model``.
    """
    place = place or sharding.Placement(None)
    head_tree, rest = heads.split_head(params, config.head)
    dense = _dense_head(params, head_tree)
    if (config.closed_form == "auto" and dense is not None and y.ndim == 1
            and hasattr(model, "features")):
        probe = x[:8]
        features = model.features(params, state, probe)
        logits, _ = model.apply(params, state, probe, train=False)
        if np.allclose(features @ dense["kernel"] + dense["bias"], logits, rtol=1e-4, atol=1e-4):
            feature_fn = jax.jit(lambda xb: model.features(params, state, xb))
            features = _batched(feature_fn, x, 512)
            features, labels = place.batch((features, jnp.asarray(y)))
            scores = classifier_influence(features, labels, place.params(dense),
                                          damping=config.damping)
            return place.host(scores), True
    if config.closed_form == "auto" and dense is not None and y.ndim == 2 and not place:
        scores = _sequence_closed_form(model, params, state, x, y, dense, config.damping)
        if scores is not None:
            return scores, True
    loss = make_example_loss(model, place.replicate(rest), place.replicate(state))
    scores = influence_scores(loss, place.params(head_tree),
                              place.batch({"x": jnp.asarray(x), "y": jnp.asarray(y)}),
                              damping=config.damping, chunk_size=config.influence_chunk_size)
    return place.host(scores), False


def _sequence_closed_form(model, params, state, x, y, dense, damping) -> np.ndarray | None:
    """``sequence_influence`` on the model's ``[N, T, D]`` features when the dense head gives the
    model's logits (checked on a few sequences); None when it does not apply."""
    if not hasattr(model, "features"):
        return None
    probe = x[:2]
    features = model.features(params, state, probe)
    logits, _ = model.apply(params, state, probe, train=False)
    if np.ndim(features) != 3 or not np.allclose(features @ dense["kernel"] + dense["bias"],
                                                 logits, rtol=1e-4, atol=1e-4):
        return None
    feature_fn = jax.jit(lambda xb: model.features(params, state, xb))
    features = _batched(feature_fn, x, 256)
    return np.asarray(sequence_influence(features, jnp.asarray(y), dense, damping=damping))


def select_examples(scores: np.ndarray | None, num_forget: int, config: UnlearnConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(indices, weights, fallback)`` of the examples to ascend on (spec §2 + the ablations).

    >>> cfg = UnlearnConfig(weighting="uniform")
    >>> idx, w, fb = select_examples(None, 3, cfg, np.random.default_rng(0))
    >>> idx.tolist(), w.tolist(), fb
    ([0, 1, 2], [1.0, 1.0, 1.0], False)
    """
    if config.weighting == "uniform":
        return np.arange(num_forget), np.ones(num_forget, np.float32), False
    fallback = not bool(np.any(scores < 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoNegativeInfluenceWarning)
        indices, weights = influence_weights(scores, top_fraction=config.top_fraction,
                                             clip_quantile=config.clip_quantile)
    if fallback:
        warnings.warn(
            f"IMU: no forget example has negative influence (all {num_forget} scores >= 0); "
            "falling back to uniform weights over all examples. Recorded as fallback=True.",
            NoNegativeInfluenceWarning, stacklevel=3)
    if config.weighting == "shuffled":
        indices = np.sort(rng.choice(num_forget, len(indices), replace=False))
        weights = rng.permutation(weights)
    return indices, weights.astype(np.float32), fallback
