"""Checks and the weighted mean shared by IMU's per-example transforms (private; jax, optax).

Shapes are checked always. Weight values are checked eagerly (negative or non-finite weights
raise); under a trace :func:`weigh` turns them into a status instead, so a transform can make the
step a no-op and count it (see :mod:`imu_jax.transforms`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _checks, _factored

__all__ = ["check_per_example", "check_weights", "weigh", "Weighed", "weighted_mean_ascent"]

PyTree = Any

_AGGREGATED = (
    "The gradients are shaped like the parameters, with no example axis: something aggregated "
    "them before this transform. optax.MultiSteps and optax.apply_every do that (they accumulate "
    "parameter-shaped gradients), and so does a transform placed before it. Wrap only the rest "
    "of the chain: optax.chain(imu_jax.weighted_ascent(), optax.MultiSteps(rest, k)."
    "gradient_transformation()) (the mean of the micro-batches' weighted means, as optax's "
    "differentially_private_aggregate documents), or use imu_jax.accumulate(optimizer, k), "
    "which is exactly one step over the union of the k micro-batches. A single batch's "
    "gradients come from imu_jax.per_example_grads (vmap of grad).")


def check_per_example(per_example_grads: PyTree, params: PyTree | None,
                      num_weights: int | None) -> None:
    """Raises ``ValueError`` unless every leaf has the same leading (example) axis."""
    _refuse_masked(per_example_grads)
    leaves = _factored.leaves(per_example_grads)  # a dense kernel's may be OuterProducts
    if not leaves:
        raise ValueError("per_example_grads is empty: it has no arrays.")
    if params is not None:
        pairs = list(zip(leaves, jax.tree.leaves(params)))
        if pairs and all(np.shape(g) == np.shape(p) for g, p in pairs):
            raise ValueError(
                "per_example_grads must have a leading example axis N on every leaf. "
                + _AGGREGATED)
        for g, p in pairs:
            if g.shape[1:] != p.shape:
                raise ValueError(
                    "per_example_grads must have a leading example axis on top of each parameter's "
                    f"shape: got a gradient of shape {g.shape} for a parameter of shape {p.shape}. "
                    "Compute them with imu_jax.per_example_grads (vmap of grad).")
    if any(g.ndim == 0 for g in leaves):
        raise ValueError("per_example_grads needs a leading example axis; found a scalar leaf.")
    sizes = {g.shape[0] for g in leaves}
    if len(sizes) != 1:
        raise ValueError(f"per_example_grads leaves disagree on the example axis: {sorted(sizes)}.")
    (size,) = sizes
    if size == 0:
        raise ValueError("per_example_grads is empty: the batch has no examples.")
    if num_weights is not None and num_weights != size:
        raise ValueError(
            f"weights has {num_weights} entries but per_example_grads has {size} examples.")


def _refuse_masked(per_example_grads: PyTree) -> None:
    """Per-example transforms inside ``optax.masked`` / ``optax.partition`` are refused: the
    leaves outside the mask keep their example axis and ``apply_updates`` broadcasts them."""
    is_masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    if any(is_masked(x) for x in jax.tree.leaves(per_example_grads, is_leaf=is_masked)):
        raise ValueError(
            "IMU's per-example transforms cannot run inside optax.masked or optax.partition: the "
            "leaves outside the mask would keep their example axis (a [N, ...] update for a "
            "[...] parameter). Differentiate the head only: head, rest = imu_jax.split_head("
            "params, selector); grads = imu_jax.per_example_grads(loss, head, batch); update the "
            "head; params = imu_jax.merge_head(head, rest). In the global mode you may also "
            "aggregate first and mask after: optax.chain(imu_jax.imu_sgd(...), optax.masked("
            "optax.set_to_zero(), imu_jax.frozen_mask(params, selector))).")


def check_weights(weights: Any) -> None:
    """``weights`` is ``[N]``; host values (not tracers) must be finite and >= 0.

    All-zero weights pass: that batch is a no-op step (:func:`weigh`)."""
    if np.ndim(weights) != 1:
        raise ValueError(f"weights must be [N], got shape {np.shape(weights)}.")
    _checks.check_finite(weights, "weights")
    blocks = _checks.host_blocks(weights)  # None under a trace: shape checks only
    if blocks is not None and any(np.any(np.asarray(b, np.float64) < 0) for b in blocks):
        raise ValueError("weights must be >= 0 (and finite); under jax.jit such a batch is a "
                         "no-op step counted in the transform's state.invalid_weights.")


class Weighed(NamedTuple):
    """Weights made safe to use: ``weights`` (zero where the batch is invalid), their ``total``,
    and whether the batch is ``invalid`` (a negative or non-finite weight, or an infinite sum)
    or ``empty`` (valid weights summing to zero). Either makes the step a no-op."""
    weights: jax.Array
    total: jax.Array
    invalid: jax.Array
    empty: jax.Array


def weigh(weights: Any) -> Weighed:
    """The status of ``weights`` as traced booleans; never NaN, never raises."""
    weights = jnp.asarray(weights)
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(jnp.float32)
    invalid = ~jnp.all(jnp.isfinite(weights) & (weights >= 0))
    invalid = invalid | ~jnp.isfinite(jnp.sum(jnp.where(invalid, 0, weights)))
    weights = jnp.where(invalid, jnp.zeros_like(weights), weights)
    total = jnp.sum(weights)
    return Weighed(weights, total, invalid, ~invalid & (total == 0))


def weighted_mean_ascent(per_example_grads: PyTree, weighed: Weighed) -> PyTree:
    """``∇(−Σ w_i ℓ_i / Σ w_i) = −Σ w_i g_i / Σ w_i``; zero when the weights sum to zero."""
    total = jnp.where(weighed.total > 0, weighed.total, jnp.ones_like(weighed.total))
    return _factored.tree_map(
        lambda g: -_factored.weighted_sum(g, weighed.weights) / total.astype(g.dtype),
        per_example_grads)
