"""Exact gradient accumulation for IMU's per-example optimizers: ``k`` micro-batches = one step.

:class:`optax.MultiSteps` averages what it is given. Put after :func:`imu_jax.weighted_ascent`
it averages each micro-batch's *weighted mean*, ``mean_j(Σ_{B_j} w g / Σ_{B_j} w)``, which is not
the union's ``Σ w g / Σ w`` when the weights differ between micro-batches; put before it, it
averages per-example arrays elementwise. :func:`accumulate` wraps a whole IMU optimizer instead
and calls it once per ``k`` micro-batches with what one step over their union would give it:

* global mode (``weights=`` passed to ``update``): it keeps ``Σ w_i g_i`` and ``Σ w_i`` (memory of
  one gradient) and hands the optimizer the union's weighted mean as a single example of weight 1,
  which :func:`imu_jax.weighted_ascent` turns into exactly ``−Σ w g / Σ w`` over the union;
* per-batch mode (``micro_batch_size=B``): the influence of each example depends on the union's
  Fisher and mean gradient, so it keeps the ``k × B`` per-example gradients (memory of the union's
  gradients; the forward and backward passes still run one micro-batch at a time) and hands the
  optimizer their concatenation (with the weights, when given).

Between the ``k``-th calls it returns zero updates and leaves the optimizer's state untouched.

Weights as in :mod:`imu_jax.transforms`: negative or non-finite weights raise eagerly; under
``jit`` that micro-batch contributes nothing (as if its weights were zero) and is counted in
``state.invalid_weights``. A window whose weights sum to zero is a no-op step: zero update, the
optimizer's state untouched. Every leaf of the state has a non-zero size (Orbax saves it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _chain_order, _layout, _per_example
from imu_jax.transforms import InfluenceWeightedAscentState

__all__ = ["accumulate", "AccumulateState"]

PyTree = Any


class AccumulateState(NamedTuple):
    """State of :func:`accumulate`: micro-batches seen in the current window, the running sums
    (global mode; ``()`` in per-batch mode) or buffered per-example gradients and weights
    (per-batch mode; ``()`` in global mode), the optimizer's state, and ``invalid_weights``, the
    number of micro-batches whose weights were negative or non-finite (under ``jit``; they
    contributed nothing)."""
    mini_step: jax.Array
    sum_weighted: PyTree
    sum_weights: jax.Array
    buffer: PyTree
    buffer_weights: Any
    inner_state: Any
    invalid_weights: jax.Array


def _is_per_batch(inner_state: Any) -> bool:
    is_iwa = lambda x: isinstance(x, InfluenceWeightedAscentState)
    return any(is_iwa(x) for x in jax.tree.leaves(inner_state, is_leaf=is_iwa))


def accumulate(optimizer: optax.GradientTransformation, every_k: int, *,
               micro_batch_size: int | None = None) -> optax.GradientTransformationExtraArgs:
    """Runs ``optimizer`` once per ``every_k`` micro-batches, exactly as one step over their union.

    Args:
      optimizer: an IMU optimizer whose first transform takes per-example gradients
        (:func:`imu_jax.imu_sgd`, or a chain starting with :func:`imu_jax.weighted_ascent` or
        :func:`imu_jax.influence_weighted_ascent`).
      every_k: micro-batches per step (>= 1).
      micro_batch_size: ``None`` for the global mode (``update`` needs ``weights=``); the fixed
        number of examples per micro-batch for the per-batch mode (required when ``optimizer``
        computes influence inside the batch), which buffers the union's per-example gradients.

    Returns:
      A transformation with ``update(per_example_grads, state, params, *, weights=None)``.

    Examples:
      >>> import numpy as np, jax.numpy as jnp, optax, imu_jax as imu
      >>> g = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
      >>> w = jnp.array([4, 3, 2, 1, .1, .1, .1, .1])
      >>> opt = imu.accumulate(optax.chain(imu.weighted_ascent(), optax.sgd(1.0)), 2)
      >>> state = opt.init(jnp.zeros(3))
      >>> first, state = opt.update(g[:4], state, jnp.zeros(3), weights=w[:4])
      >>> second, state = opt.update(g[4:], state, jnp.zeros(3), weights=w[4:])
      >>> first.tolist(), [round(v, 3) for v in second.tolist()]  # = one step over all 8 examples
      ([0.0, 0.0, 0.0], [0.195, -0.087, 0.206])
    """
    if int(every_k) != every_k or every_k < 1:
        raise ValueError(f"every_k must be an integer >= 1, got {every_k}.")
    if micro_batch_size is not None and (int(micro_batch_size) != micro_batch_size
                                         or micro_batch_size < 1):
        raise ValueError(f"micro_batch_size must be None or an integer >= 1, got "
                         f"{micro_batch_size}.")
    k = int(every_k)
    buffered = micro_batch_size is not None
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params):
        _chain_order.check_first("accumulate", init_fn)
        inner_state = inner.init(params)
        if not buffered and _is_per_batch(inner_state):
            raise ValueError(
                "accumulate: this optimizer computes influence inside each batch (per-batch "
                "mode), which needs the union's per-example gradients; pass micro_batch_size=B "
                "(the examples per micro-batch).")
        sums = jax.tree.map(lambda p: jnp.zeros(np.shape(p), _accumulator_dtype(p)), params)
        buffer, buffer_weights = (), ()  # empty subtrees, not zero-size arrays (Orbax)
        if buffered:
            buffer = jax.tree.map(
                lambda p: jnp.zeros((k, micro_batch_size) + np.shape(p), p.dtype), params)
            buffer_weights = jnp.zeros((k, micro_batch_size), jnp.float32)
        return AccumulateState(
            mini_step=jnp.zeros([], jnp.int32),
            sum_weighted=() if buffered else sums, sum_weights=jnp.zeros([], jnp.float32),
            buffer=buffer, buffer_weights=buffer_weights, inner_state=inner_state,
            invalid_weights=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, weights=None, **extra_args):
        if params is None:
            raise ValueError("accumulate needs params in update (to shape the zero updates).")
        invalid = jnp.zeros([], bool)
        if weights is not None:
            _per_example.check_weights(weights)
            weighed = _per_example.weigh(jnp.asarray(weights, jnp.float32))
            weights, invalid = weighed.weights, weighed.invalid
        _per_example.check_per_example(updates, params,
                                       None if weights is None else weights.shape[0])
        state = state._replace(invalid_weights=state.invalid_weights + invalid.astype(jnp.int32))
        if buffered:
            return _update_buffered(updates, state, params, weights, extra_args)
        if weights is None:
            raise ValueError("accumulate without micro_batch_size is the global mode and needs "
                             "weights= in update; pass micro_batch_size for the per-batch mode.")
        return _update_sums(updates, state, params, weights, extra_args)

    def _update_sums(updates, state, params, weights, extra_args):
        sum_weighted = jax.tree.map(
            lambda s, g: s + _layout.tensordot(weights.astype(s.dtype), g.astype(s.dtype), 1),
            state.sum_weighted, updates)
        sum_weights = state.sum_weights + jnp.sum(weights)

        def fire(inner_state):
            total = jnp.where(sum_weights > 0, sum_weights, 1.0)
            mean = jax.tree.map(lambda s, p: (s / total.astype(s.dtype))[None].astype(
                p.dtype), sum_weighted, params)
            return inner.update(mean, inner_state, params, weights=jnp.ones(1, jnp.float32),
                                **extra_args)

        out, inner_state = _fire_every_k(fire, state, params, sum_weights > 0)
        fired = state.mini_step + 1 == k
        return out, state._replace(
            mini_step=jnp.where(fired, 0, state.mini_step + 1),
            sum_weighted=jax.tree.map(lambda s: jnp.where(fired, jnp.zeros_like(s), s),
                                      sum_weighted),
            sum_weights=jnp.where(fired, 0.0, sum_weights), inner_state=inner_state)

    def _update_buffered(updates, state, params, weights, extra_args):
        sizes = {g.shape[0] for g in jax.tree.leaves(updates)}
        if sizes != {micro_batch_size}:
            raise ValueError(f"accumulate(micro_batch_size={micro_batch_size}) got a micro-batch "
                             f"of {sorted(sizes)} examples; every micro-batch must have exactly "
                             f"{micro_batch_size}.")
        buffer = jax.tree.map(lambda b, g: b.at[state.mini_step].set(g.astype(b.dtype)),
                              state.buffer, updates)
        buffer_weights = state.buffer_weights
        if weights is not None:
            buffer_weights = buffer_weights.at[state.mini_step].set(weights)

        def fire(inner_state):
            union = jax.tree.map(lambda b: b.reshape((-1,) + b.shape[2:]), buffer)
            extra = dict(extra_args)
            if weights is not None:
                extra["weights"] = buffer_weights.reshape(-1)
            return inner.update(union, inner_state, params, **extra)

        has_weight = True if weights is None else jnp.sum(buffer_weights) > 0
        out, inner_state = _fire_every_k(fire, state, params, has_weight)
        fired = state.mini_step + 1 == k
        return out, state._replace(
            mini_step=jnp.where(fired, 0, state.mini_step + 1), buffer=buffer,
            buffer_weights=buffer_weights, inner_state=inner_state)

    def _fire_every_k(fire, state, params, has_weight):
        """The optimizer's step on the k-th micro-batch of a window with some weight; zero
        updates (and its state untouched) otherwise."""
        shapes = jax.eval_shape(fire, state.inner_state)

        def skip(inner_state):
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[0])
            return zeros, inner_state

        return jax.lax.cond((state.mini_step + 1 == k) & has_weight, fire, skip,
                            state.inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _accumulator_dtype(p) -> jnp.dtype:
    """At least float32 for the running sums (bf16 parameters accumulate in float32)."""
    return jnp.promote_types(jnp.result_type(p), jnp.float32)
