"""Which forget examples to unlearn, and with what weight (spec §2).

From influence scores ``I`` (:mod:`imu_jax.influence`): keep the examples with ``I_i < 0``,
strongest (largest ``|I_i|``) first, the first ``max(1, floor(n_neg · top_fraction))`` of them;
weight them ``sqrt|I_i|`` clipped from above at the ``clip_quantile`` quantile of the kept weights.
No negative score at all falls back to uniform weights (the public code crashes there).

:func:`influence_weights` is the host-side form (numpy in, numpy out, warns on the fallback);
:func:`select_and_weight` the fixed-shape form that runs inside ``jit`` (the per-batch variant).
Imports only jax and numpy (core module).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import _checks, _layout

__all__ = [
    "DEFAULT_TOP_FRACTION",
    "DEFAULT_CLIP_QUANTILE",
    "NoNegativeInfluenceWarning",
    "keep_count",
    "select_and_weight",
    "influence_weights",
]

# The public code's CLI default is 0.1, its README ablates 0.5, its synthetic experiment uses 1.0.
# We keep 0.5: with 0.1 a forgotten digits class (~146 examples) leaves ~7 examples to ascend on,
# the worst setting of our ablation (experiments/results/digits_class3_ablations: Avg. Gap
# 2.3 / 1.0 / 0.7 for 0.1 / 0.5 / 1.0).
DEFAULT_TOP_FRACTION = 0.5
DEFAULT_CLIP_QUANTILE = 0.93


class NoNegativeInfluenceWarning(UserWarning):
    """No forget example has negative influence; IMU fell back to uniform weights."""


# Relative tolerance of the keep count's floor: far above float32's rounding of n · top_fraction
# (two roundings of 2^-24 each), far below the 1/n step between distinct counts for n < 2^19.
_KEEP_COUNT_TOLERANCE = 2.0 ** -20


def keep_count(num_negative, top_fraction):
    """``max(1, floor(num_negative · top_fraction))``, robust to how ``top_fraction`` is stored.

    The product is formed in float32 and floored with a relative tolerance of ``2^-20``, so a
    fraction given as a Python float (float64), as a float32 array (``optax.inject_hyperparams``)
    or as a traced value gives the same count: ``90 · 0.7`` keeps 63 everywhere (the public code's
    ``int(90 * 0.7)`` in float64 gives 62; see docs/DEVIATIONS.md). Works on numpy and on ``jnp``
    (traced) values: the same float32 operations in both.

    Examples:
      >>> import numpy as np
      >>> import imu_jax as imu
      >>> int(imu.keep_count(np.int32(90), 0.7)), int(imu.keep_count(np.int32(3), 0.1))
      (63, 1)
    """
    xp = np if _checks.is_concrete(num_negative) and _checks.is_concrete(top_fraction) else jnp
    product = xp.asarray(num_negative, xp.float32) * xp.asarray(top_fraction, xp.float32)
    product = product * xp.float32(1.0 + _KEEP_COUNT_TOLERANCE)
    return xp.maximum(1, xp.floor(product)).astype(xp.int32)


def select_and_weight(
    scores: jax.Array,
    *,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    clip_quantile: float = DEFAULT_CLIP_QUANTILE,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Spec §2 as fixed-shape arrays, so it runs inside ``jit`` (the per-batch variant uses it).

    Returns ``(order, num_kept, weights, fell_back)``: ``order`` ranks the examples (negative
    influence first, by ``|I|`` descending, ties by index), the first ``num_kept`` of it are kept,
    ``weights`` is ``[N]`` with zeros for dropped examples, and ``fell_back`` is True when no score
    was negative, in which case every example gets weight 1.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> order, k, w, fell_back = imu.select_and_weight(jnp.array([-4.0, 1.0, -1.0]), top_fraction=1.0)
      >>> order[:int(k)].tolist(), [round(v, 2) for v in w.tolist()], bool(fell_back)
      ([0, 2], [1.93, 0.0, 1.0], False)
    """
    # Sorting needs the whole example axis on every device: on an Explicit mesh, scores sharded
    # over the examples (the per-batch variant's) are gathered first; ``[N]`` floats only.
    scores = _layout.replicate(jnp.asarray(scores, jnp.float32))
    n = scores.shape[0]
    negative = scores < 0
    num_negative = jnp.sum(negative)
    fell_back = num_negative == 0
    _checks.check_hyperparameter_precision(top_fraction, "top_fraction")
    _checks.check_hyperparameter_precision(clip_quantile, "clip_quantile")
    num_kept = jnp.where(fell_back, n, keep_count(num_negative, top_fraction))

    order = jnp.argsort(jnp.where(negative, scores, jnp.inf), stable=True)
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    kept = rank < num_kept
    raw = jnp.where(fell_back, 1.0, jnp.sqrt(jnp.abs(scores)))
    raw = jnp.where(kept, raw, 0.0)

    # Quantile of the kept weights with linear interpolation (numpy's default method).
    ascending = jnp.sort(jnp.where(kept, raw, jnp.inf))
    position = clip_quantile * (num_kept - 1).astype(jnp.float32)
    low = jnp.floor(position).astype(jnp.int32)
    high = jnp.minimum(low + 1, num_kept - 1)
    ceiling = ascending[low] + (position - low) * (ascending[high] - ascending[low])
    weights = jnp.where(num_kept > 1, jnp.minimum(raw, ceiling), raw)
    return order, num_kept, jnp.where(kept, weights, 0.0), fell_back


def influence_weights(
    scores: jax.Array,
    *,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    clip_quantile: float = DEFAULT_CLIP_QUANTILE,
) -> tuple[np.ndarray, np.ndarray]:
    """Which forget examples to unlearn and with what weight (spec §2).

    Keeps examples with ``I_i < 0``, ordered by ``|I_i|`` descending, the first
    ``max(1, floor(n_neg · top_fraction))`` (:func:`keep_count`); weights ``sqrt|I_i|`` clipped from above at their
    ``clip_quantile`` quantile (linear interpolation) when more than one is kept. If no score is
    negative, it warns (:class:`NoNegativeInfluenceWarning`) and returns every example with weight 1
    (the public code crashes there).

    Args:
      scores: ``[N]`` influence scores (e.g. from :func:`influence_scores`).
      top_fraction: fraction of the negatively influential examples to keep, in ``(0, 1]``.
        Default 0.5 (the public code's CLI uses 0.1; see ``DEFAULT_TOP_FRACTION``).
      clip_quantile: quantile at which the weights are clipped, in ``(0, 1]``.

    Returns:
      ``(indices, weights)``: int64 indices into the forget set, strongest first, and their
      float32 weights.

    Examples:
      >>> import numpy as np, imu_jax as imu
      >>> idx, w = imu.influence_weights(np.array([-4.0, 0.5, -1.0, -9.0]), top_fraction=1.0)
      >>> idx.tolist(), [round(v, 3) for v in w.tolist()]
      ([3, 0, 2], [2.86, 2.0, 1.0])
    """
    if not _checks.is_concrete(scores):
        raise TypeError(
            "influence_weights runs on the host (its output's length depends on the values) and "
            "got traced scores (inside jax.jit / vmap): call it outside the trace, or use "
            "imu_jax.select_and_weight, its fixed-shape form, inside.")
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional [N], got shape {scores.shape}.")
    if scores.size == 0:
        raise ValueError("scores is empty: the forget set has no examples.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"scores contain NaN or inf ({int(np.sum(~np.isfinite(scores)))} of {scores.size}); "
            "check the model and the forget inputs.")
    _checks.check_fraction(top_fraction, "top_fraction")
    _checks.check_fraction(clip_quantile, "clip_quantile")
    with jax.ensure_compile_time_eval():  # host values also inside a caller's jit
        order, num_kept, weights, fell_back = select_and_weight(
            scores, top_fraction=float(top_fraction), clip_quantile=float(clip_quantile))
    if bool(fell_back):
        warnings.warn(
            f"No forget example has negative influence (all {scores.size} scores >= 0); "
            "falling back to uniform weights over all examples.",
            NoNegativeInfluenceWarning, stacklevel=2)
    indices = np.asarray(order)[: int(num_kept)].astype(np.int64)
    return indices, np.asarray(weights)[indices].astype(np.float32)
