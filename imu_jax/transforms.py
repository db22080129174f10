"""Optax gradient transformations for influence-weighted gradient ascent (spec §3).

The unlearning loss of a mini-batch ``B`` of forget examples is

    L = −Σ_{i∈B} w_i ℓ_i / Σ_{i∈B} w_i + α ‖θ_h‖₁

:func:`weighted_ascent` turns per-example gradients ``∇ℓ_i`` and weights ``w_i`` into ``∇`` of the
first term; :func:`l1_penalty` adds the second; any optax optimizer after them then *ascends* the
forget loss. :func:`influence_weighted_ascent` is the per-batch variant that derives the weights
inside ``update``. :func:`imu_sgd` is the public code's full update as one optimizer.

.. warning::
  The per-example transforms expect per-example gradients (leading batch axis) and must come
  first in a chain. Give them the head's gradients only (``imu_jax.split_head``, then
  ``imu_jax.per_example_grads`` of the head); inside ``optax.masked`` / ``optax.partition`` the
  other leaves would keep their example axis, so there they raise a ``ValueError``. To freeze part
  of a whole-tree optimizer in the global mode, mask *after* aggregating:
  ``optax.chain(imu_sgd(...), optax.masked(optax.set_to_zero(), imu_jax.frozen_mask(params, sel)))``.
  They do not work inside :class:`optax.MultiSteps` or :func:`optax.apply_every` (those average
  the per-example arrays); to accumulate micro-batches use :func:`imu_jax.accumulate`, which
  equals one step over their union.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _checks, _layout
from imu_jax.influence import (DEFAULT_CLIP_QUANTILE, DEFAULT_DAMPING, DEFAULT_TOP_FRACTION,
                               influence_from_grads, select_and_weight)

__all__ = [
    "weighted_ascent",
    "l1_penalty",
    "influence_weighted_ascent",
    "InfluenceWeightedAscentState",
    "imu_sgd",
]

PyTree = Any


def _check_per_example(per_example_grads: PyTree, params: PyTree | None, num_weights: int | None):
    """Raises ``ValueError`` unless every leaf has the same leading (example) axis."""
    _refuse_masked(per_example_grads)
    leaves = jax.tree.leaves(per_example_grads)
    if not leaves:
        raise ValueError("per_example_grads is empty: it has no arrays.")
    if params is not None:
        for g, p in zip(leaves, jax.tree.leaves(params)):
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
    is_masked = lambda x: isinstance(x, optax.MaskedNode)
    if any(is_masked(x) for x in jax.tree.leaves(per_example_grads, is_leaf=is_masked)):
        raise ValueError(
            "IMU's per-example transforms cannot run inside optax.masked or optax.partition: the "
            "leaves outside the mask would keep their example axis (a [N, ...] update for a "
            "[...] parameter). Differentiate the head only: head, rest = imu_jax.split_head("
            "params, selector); grads = imu_jax.per_example_grads(loss, head, batch); update the "
            "head; params = imu_jax.merge_head(head, rest). In the global mode you may also "
            "aggregate first and mask after: optax.chain(imu_jax.imu_sgd(...), optax.masked("
            "optax.set_to_zero(), imu_jax.frozen_mask(params, selector))).")


def _check_weights(weights: Any) -> None:
    """``weights`` is ``[N]``; host values are finite, >= 0, with a positive sum."""
    if np.ndim(weights) != 1:
        raise ValueError(f"weights must be [N], got shape {np.shape(weights)}.")
    _checks.check_finite(weights, "weights")
    blocks = _checks.host_blocks(weights)  # None under a trace: shape checks only
    if blocks is not None:
        blocks = [np.asarray(b, np.float64) for b in blocks]
        if any(np.any(b < 0) for b in blocks) or not sum(float(b.sum()) for b in blocks) > 0:
            raise ValueError("weights must be >= 0 with a positive sum.")


def _weighted_mean_ascent(per_example_grads: PyTree, weights: jax.Array) -> PyTree:
    """``∇(−Σ w_i ℓ_i / Σ w_i) = −Σ w_i g_i / Σ w_i``."""
    total = jnp.sum(weights)
    return jax.tree.map(
        lambda g: -_layout.tensordot(weights.astype(g.dtype), g, axes=1) / total.astype(g.dtype),
        per_example_grads)


def weighted_ascent() -> optax.GradientTransformationExtraArgs:
    """Aggregates per-example gradients into the gradient of ``−Σ w_i ℓ_i / Σ w_i``.

    ``update(per_example_grads, state, params=None, *, weights)``: ``per_example_grads`` has a
    leading example axis ``N`` on every leaf; ``weights`` is ``[N]`` and keyword-only, so forgetting
    it is an error. A following ``optax.sgd`` then ascends the weighted forget loss; uniform weights
    give plain mean-gradient ascent. Must be first in a chain (see the module warning).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`.

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> opt = optax.chain(imu.weighted_ascent(), optax.sgd(0.1))
      >>> params = jnp.zeros(2)
      >>> state = opt.init(params)
      >>> g = jnp.array([[1.0, 0.0], [0.0, 1.0]])      # two examples' gradients
      >>> updates, state = opt.update(g, state, params, weights=jnp.array([3.0, 1.0]))
      >>> optax.apply_updates(params, updates).tolist()  # moves *up* the weighted loss
      [0.07500000298023224, 0.02500000037252903]
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, weights):
        _check_weights(weights)
        _check_per_example(updates, params, np.shape(weights)[0])
        return _weighted_mean_ascent(updates, jnp.asarray(weights)), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def l1_penalty(alpha: float) -> optax.GradientTransformation:
    """Adds ``alpha · sign(params)``, the gradient of ``alpha · ‖params‖₁``.

    ``sign(0) = 0``, as in PyTorch's autograd of ``abs``. Needs ``params`` in ``update``.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> t = imu.l1_penalty(0.5)
      >>> params = jnp.array([-2.0, 0.0, 3.0])
      >>> updates, _ = t.update(jnp.zeros(3), t.init(params), params)
      >>> updates.tolist()
      [-0.5, 0.0, 0.5]
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(optax._src.base.NO_PARAMS_MSG)
        return jax.tree.map(lambda u, p: u + (alpha * jnp.sign(p)).astype(u.dtype), updates,
                            params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


class InfluenceWeightedAscentState(NamedTuple):
    """Counters of the per-batch variant: batches seen, batches that fell back, last kept count."""
    count: jax.Array
    num_fallbacks: jax.Array
    last_num_kept: jax.Array


def influence_weighted_ascent(
    damping: float = DEFAULT_DAMPING,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    clip_quantile: float = DEFAULT_CLIP_QUANTILE,
) -> optax.GradientTransformation:
    """Per-batch IMU: influence and weights from the batch's own per-example gradients.

    Inside ``update`` it computes ``F``, ``ḡ`` and ``I`` over the mini-batch (spec §1), selects
    and weights the examples (spec §2) and returns ``∇(−Σ w_i ℓ_i / Σ w_i)`` (spec §3). No global
    pass over the forget set is needed (the paper's LLM variant). A batch with no negative
    influence uses uniform weights and is counted in ``state.num_fallbacks``. Must be first in a
    chain (see the module warning).

    Args:
      damping: ``λ`` > 0 added to the diagonal Fisher.
      top_fraction: fraction of the batch's negatively influential examples to keep, in (0, 1].
      clip_quantile: quantile at which the kept weights are clipped.

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> opt = optax.chain(imu.influence_weighted_ascent(top_fraction=1.0), optax.sgd(0.1))
      >>> params = jnp.zeros(2)
      >>> state = opt.init(params)
      >>> g = jnp.array([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])
      >>> updates, state = opt.update(g, state, params)
      >>> int(state[0].last_num_kept), int(state[0].num_fallbacks)
      (2, 0)
    """
    for name, value in (("top_fraction", top_fraction), ("clip_quantile", clip_quantile)):
        _checks.check_hyperparameter_precision(value, name)
    _checks.check_positive(damping, "damping")
    _checks.check_fraction(top_fraction, "top_fraction")
    _checks.check_fraction(clip_quantile, "clip_quantile")

    def init_fn(params):
        del params
        zero = jnp.zeros([], jnp.int32)
        return InfluenceWeightedAscentState(count=zero, num_fallbacks=zero, last_num_kept=zero)

    def update_fn(updates, state, params=None):
        _check_per_example(updates, params, None)
        scores = influence_from_grads(updates, damping)
        _, num_kept, weights, fell_back = select_and_weight(
            scores, top_fraction=top_fraction, clip_quantile=clip_quantile)
        new_state = InfluenceWeightedAscentState(
            count=state.count + 1,
            num_fallbacks=state.num_fallbacks + fell_back.astype(jnp.int32),
            last_num_kept=num_kept.astype(jnp.int32))
        return _weighted_mean_ascent(updates, weights), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def imu_sgd(
    learning_rate: float | optax.Schedule = 0.01,
    *,
    alpha: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
    per_batch: bool = False,
    damping: float = DEFAULT_DAMPING,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    clip_quantile: float = DEFAULT_CLIP_QUANTILE,
) -> optax.GradientTransformationExtraArgs:
    """The public IMU code's update as one optax optimizer.

    ``weighted_ascent`` (or ``influence_weighted_ascent`` with ``per_batch=True``) → ``l1_penalty
    (alpha)`` → coupled weight decay (added to the gradient before momentum, PyTorch semantics) →
    SGD with momentum. ``milestones`` (in optimizer steps) multiply the learning rate by
    ``gamma`` each, like PyTorch's ``MultiStepLR``. ``damping``, ``top_fraction`` and
    ``clip_quantile`` configure the per-batch selection (``per_batch=True``); in the global mode
    the weights come from :func:`imu_jax.influence_weights` and are passed to ``update``.

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> opt = imu.imu_sgd(0.01, milestones=[5])
      >>> params = {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}
      >>> state = opt.init(params)
      >>> g = {"kernel": jnp.ones((4, 2, 3)), "bias": jnp.ones((4, 3))}
      >>> updates, state = opt.update(g, state, params, weights=jnp.ones(4))
      >>> optax.apply_updates(params, updates)["kernel"][0, 0].round(6).tolist()
      1.007995
    """
    if milestones:
        learning_rate = optax.piecewise_constant_schedule(
            learning_rate, {int(m): gamma for m in milestones})
    aggregate = (influence_weighted_ascent(damping, top_fraction, clip_quantile) if per_batch
                 else weighted_ascent())
    return optax.chain(
        aggregate,
        l1_penalty(alpha),
        optax.add_decayed_weights(weight_decay),
        optax.sgd(learning_rate, momentum=momentum),
    )
