"""Optax gradient transformations for influence-weighted gradient ascent (spec §3).

The unlearning loss of a mini-batch ``B`` of forget examples is

    L = −Σ_{i∈B} w_i ℓ_i / Σ_{i∈B} w_i + α ‖θ_h‖₁

:func:`weighted_ascent` turns per-example gradients ``∇ℓ_i`` and weights ``w_i`` into ``∇`` of the
first term; :func:`l1_penalty` adds the second; any optax optimizer after them then *ascends* the
forget loss. :func:`influence_weighted_ascent` is the per-batch variant that derives the weights
inside ``update``. :func:`imu_sgd` is the public code's full update as one optimizer.

.. warning::
  The per-example transforms expect per-example gradients (leading batch axis) and must come
  first: give the rest of the chain to them (``weighted_ascent(inner=optax.chain(...))``, or
  :func:`imu_sgd`, which owns its chain), or put them first in ``optax.chain``. A chain that
  places them after another transformation, or an ``optax.MultiSteps`` around them, is refused
  when it is initialised (``imu_jax._chain_order``: nothing in the arrays can tell, since a
  transform before them maps the ``[N, ...]`` stack to a stack of the same shapes). Give them
  the head's gradients only (``imu_jax.split_head``, then ``imu_jax.per_example_grads`` of the
  head); inside ``optax.masked`` / ``optax.partition`` the other leaves would keep their example
  axis, so there they raise a ``ValueError``. To freeze part of a whole-tree optimizer in the
  global mode, mask *after* aggregating:
  ``optax.chain(imu_sgd(...), optax.masked(optax.set_to_zero(), imu_jax.frozen_mask(params, sel)))``.
  To accumulate micro-batches use :func:`imu_jax.accumulate`, which equals one step over their
  union (``optax.MultiSteps`` would average the per-example arrays).

Weights are checked where they can be: eagerly, negative or non-finite weights raise a
``ValueError``. Under ``jax.jit`` nothing can raise, so such a batch is a no-op step (zero update)
counted in ``state.invalid_weights``; a batch whose weights are all zero (the ``[N]`` weights of
:func:`imu_jax.select_and_weight` for dropped examples) is a no-op step everywhere, counted in
``state.zero_weights``. With ``inner`` (and in :func:`imu_sgd`) a no-op step skips the whole
chain: zero update, the inner state (momentum, Adam moments, schedules) untouched. A bare
:func:`weighted_ascent` can only hand a zero gradient to what follows it (momentum and decay then
still move the parameters). Parameters never become NaN through the weights.

Passing ``weights`` through Flax's optimizers: ``nnx.Optimizer.update(model, grads, **kwargs)``
forwards keyword arguments to ``tx.update``, so ``optimizer.update(model, grads, weights=w)``
works (Flax >= 0.11; see :func:`weighted_ascent`). Linen's ``TrainState.apply_gradients`` passes
none: call the transformation yourself,
``updates, opt_state = state.tx.update(grads, state.opt_state, state.params, weights=w)``, then
``state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
opt_state=opt_state)``.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _chain_order, _checks, _layout, _per_example
from imu_jax.influence import DEFAULT_DAMPING, influence_from_grads
from imu_jax.weights import DEFAULT_CLIP_QUANTILE, DEFAULT_TOP_FRACTION, select_and_weight

__all__ = [
    "weighted_ascent",
    "WeightedAscentState",
    "l1_penalty",
    "influence_weighted_ascent",
    "InfluenceWeightedAscentState",
    "imu_sgd",
]

PyTree = Any


class WeightedAscentState(NamedTuple):
    """Counters of :func:`weighted_ascent`, all int32: ``count`` batches seen, ``zero_weights``
    batches whose weights were all zero, ``invalid_weights`` batches with a negative or
    non-finite weight (possible only under ``jit``; eagerly they raise). Both kinds were no-op
    steps."""
    count: jax.Array
    zero_weights: jax.Array
    invalid_weights: jax.Array


def _zero_counters() -> WeightedAscentState:
    zero = jnp.zeros([], jnp.int32)
    return WeightedAscentState(count=zero, zero_weights=zero, invalid_weights=zero)


def weighted_ascent(*, inner: optax.GradientTransformation | None = None
                    ) -> optax.GradientTransformationExtraArgs:
    """Aggregates per-example gradients into the gradient of ``−Σ w_i ℓ_i / Σ w_i``.

    ``update(per_example_grads, state, params=None, *, weights)``: ``per_example_grads`` has a
    leading example axis ``N`` on every leaf; ``weights`` is ``[N]`` and keyword-only, so forgetting
    it is an error. A following ``optax.sgd`` then ascends the weighted forget loss; uniform weights
    give plain mean-gradient ascent. All-zero weights make a no-op step, and so do negative or
    non-finite ones under ``jit`` (eagerly they raise); see the module doc and
    :class:`WeightedAscentState`.

    Args:
      inner: the rest of the optimizer (e.g. ``optax.chain(optax.clip_by_global_norm(1.0),
        optax.sgd(0.01))``), applied to the aggregated gradient. With it the order is fixed
        by construction and a no-op step skips ``inner`` entirely (its state is untouched);
        the state is ``(WeightedAscentState, inner_state)``. Without it, put this transform
        first in an ``optax.chain`` (a chain placing it later is refused at ``init``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`.

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> opt = imu.weighted_ascent(inner=optax.sgd(0.1))
      >>> params = jnp.zeros(2)
      >>> state = opt.init(params)
      >>> g = jnp.array([[1.0, 0.0], [0.0, 1.0]])      # two examples' gradients
      >>> updates, state = opt.update(g, state, params, weights=jnp.array([3.0, 1.0]))
      >>> optax.apply_updates(params, updates).tolist()  # moves *up* the weighted loss
      [0.07500000298023224, 0.02500000037252903]
      >>> updates, state = opt.update(g, state, params, weights=jnp.zeros(2))  # a no-op step
      >>> updates.tolist(), int(state[0].zero_weights)
      ([0.0, 0.0], 1)

      With Flax NNX, ``nnx.Optimizer.update`` forwards ``weights`` to the transformation; here
      only the layer named ``classifier`` is unlearned (``wrt``):

      >>> import jax
      >>> from flax import nnx
      >>> class Net(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.body = nnx.Linear(4, 8, rngs=rngs)
      ...         self.classifier = nnx.Linear(8, 3, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.classifier(jax.nn.relu(self.body(x)))
      >>> model = Net(nnx.Rngs(0))
      >>> wrt = nnx.All(nnx.Param, nnx.PathContains("classifier"))
      >>> optimizer = nnx.Optimizer(model, imu.weighted_ascent(inner=optax.sgd(0.1)), wrt=wrt)
      >>> graphdef, head, rest = nnx.split(model, wrt, ...)
      >>> def loss(head, example):                            # the loss of ONE example
      ...     logits = nnx.merge(graphdef, head, rest)(example["x"])
      ...     return optax.softmax_cross_entropy_with_integer_labels(logits, example["y"])
      >>> batch = {"x": jnp.ones((5, 4)), "y": jnp.arange(5) % 3}
      >>> grads = imu.per_example_grads(loss, head, batch)   # an nnx.State, leaves [5, ...]
      >>> _ = optimizer.update(model, grads, weights=jnp.linspace(1.0, 2.0, 5))
      >>> int(optimizer.opt_state[0].count[...])
      1

      Linen's ``TrainState.apply_gradients`` passes no extra arguments; call ``tx`` yourself
      and ``replace`` what it would have:

      >>> import flax.linen as nn
      >>> from flax.training.train_state import TrainState
      >>> class Mlp(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))  # Dense_1 is the classifier
      >>> variables = Mlp().init(jax.random.key(0), jnp.ones((1, 4)))
      >>> head, rest = imu.split_head(variables, imu.path_prefix("params/Dense_1"))
      >>> state = TrainState.create(apply_fn=Mlp().apply, params=head,
      ...                           tx=imu.weighted_ascent(inner=optax.sgd(0.1)))
      >>> def loss(head, example):
      ...     logits = state.apply_fn(imu.merge_head(head, rest), example["x"])
      ...     return optax.softmax_cross_entropy_with_integer_labels(logits, example["y"])
      >>> grads = imu.per_example_grads(loss, state.params, batch)
      >>> updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
      ...                                      weights=jnp.linspace(1.0, 2.0, 5))
      >>> state = state.replace(step=state.step + 1, opt_state=opt_state,
      ...                       params=optax.apply_updates(state.params, updates))
      >>> int(state.step), int(state.opt_state[0].count)
      (1, 1)
    """

    def init_fn(params):
        del params
        _chain_order.check_first("weighted_ascent", init_fn)
        return _zero_counters()

    def update_fn(updates, state, params=None, *, weights):
        _per_example.check_weights(weights)
        _per_example.check_per_example(updates, params, np.shape(weights)[0])
        if isinstance(state, optax.EmptyState):  # the state of versions before the counters
            state = _zero_counters()
        weighed = _per_example.weigh(weights)
        as_int = lambda flag: flag.astype(jnp.int32)  # noqa: E731
        state = WeightedAscentState(
            count=state.count + 1, zero_weights=state.zero_weights + as_int(weighed.empty),
            invalid_weights=state.invalid_weights + as_int(weighed.invalid))
        return _per_example.weighted_mean_ascent(updates, weighed), state

    aggregate = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return aggregate if inner is None else _skip_no_op_steps(optax.chain(aggregate, inner))


def _skip_no_op_steps(chain: optax.GradientTransformationExtraArgs
                      ) -> optax.GradientTransformationExtraArgs:
    """``chain`` (first element :func:`weighted_ascent`) whose no-op steps, those the first
    element counts as zero or invalid weights, give zero updates and leave the state of the rest
    of the chain untouched. The state keeps the chain's structure."""

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = chain.update(updates, state, params, **extra_args)
        old, new = state[0], new_state[0]
        if not isinstance(new, WeightedAscentState):
            return new_updates, new_state
        if isinstance(old, optax.EmptyState):
            old = _zero_counters()
        no_op = ((new.zero_weights + new.invalid_weights)
                 != (old.zero_weights + old.invalid_weights))
        keep = lambda o, n: jnp.where(no_op, o, n)  # noqa: E731
        new_updates = jax.tree.map(lambda u: jnp.where(no_op, jnp.zeros_like(u), u), new_updates)
        rest = jax.tree.map(keep, tuple(state[1:]), tuple(new_state[1:]))
        return new_updates, (new,) + rest

    return optax.GradientTransformationExtraArgs(chain.init, update_fn)


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
    *,
    inner: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
    """Per-batch IMU: influence and weights from the batch's own per-example gradients.

    Inside ``update`` it computes ``F``, ``ḡ`` and ``I`` over the mini-batch (spec §1), selects
    and weights the examples (spec §2) and returns ``∇(−Σ w_i ℓ_i / Σ w_i)`` (spec §3). No global
    pass over the forget set is needed (the paper's LLM variant). A batch with no negative
    influence uses uniform weights and is counted in ``state.num_fallbacks``. Must be first in a
    chain (see the module warning). On an ``Explicit`` mesh the batch may be sharded over its
    example axis (the ``[N]`` scores are gathered for the sort). The per-example gradients of a
    dense kernel may also come as its factors (``imu_jax._factored.OuterProducts``: inputs
    ``[N, D]`` and output gradients ``[N, C]``), as :func:`imu_jax.unlearn`'s per-batch step
    passes them: the statistics and the weighted mean are then products of the factors, and no
    ``N × D × C`` array is formed.

    Args:
      damping: ``λ`` > 0 added to the diagonal Fisher.
      top_fraction: fraction of the batch's negatively influential examples to keep, in (0, 1].
      clip_quantile: quantile at which the kept weights are clipped.
      inner: the rest of the optimizer, applied to the aggregated gradient (the order is then
        fixed by construction); the state is ``(InfluenceWeightedAscentState, inner_state)``.

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
        _chain_order.check_first("influence_weighted_ascent", init_fn)
        zero = jnp.zeros([], jnp.int32)
        return InfluenceWeightedAscentState(count=zero, num_fallbacks=zero, last_num_kept=zero)

    def update_fn(updates, state, params=None):
        _per_example.check_per_example(updates, params, None)
        scores = influence_from_grads(updates, damping)
        _, num_kept, weights, fell_back = select_and_weight(
            scores, top_fraction=top_fraction, clip_quantile=clip_quantile)
        new_state = InfluenceWeightedAscentState(
            count=state.count + 1,
            num_fallbacks=state.num_fallbacks + fell_back.astype(jnp.int32),
            last_num_kept=num_kept.astype(jnp.int32))
        weighed = _per_example.weigh(_layout.shard_like(weights, jax.tree.leaves(updates)[0]))
        return _per_example.weighted_mean_ascent(updates, weighed), new_state

    aggregate = optax.GradientTransformation(init_fn, update_fn)
    return aggregate if inner is None else optax.chain(aggregate, inner)


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
    SGD with momentum; the state is that chain's 4-tuple (``state[0]`` holds the counters). A
    no-op step (all-zero weights; invalid weights under ``jit``) leaves everything untouched.
    ``damping``, ``top_fraction`` and ``clip_quantile`` configure the per-batch selection
    (``per_batch=True``); in the global mode the weights come from
    :func:`imu_jax.influence_weights` and are passed to ``update``.

    Args:
      learning_rate: a number or an ``optax.Schedule`` of the optimizer step.
      milestones: optimizer steps (positive integers) at each of which the learning rate is
        multiplied by ``gamma``, like PyTorch's ``MultiStepLR``; they multiply a schedule too.
        (``imu_jax.UnlearnConfig.milestones`` are fractions of the run instead; this transform
        does not know the run's length: pass ``[round(f * total_steps) for f in fractions]``.)

    Examples:
      >>> import jax.numpy as jnp, optax, imu_jax as imu
      >>> opt = imu.imu_sgd(0.01, milestones=[5])
      >>> params = {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}
      >>> state = opt.init(params)
      >>> g = {"kernel": jnp.ones((4, 2, 3)), "bias": jnp.ones((4, 3))}
      >>> updates, state = opt.update(g, state, params, weights=jnp.ones(4))
      >>> round(float(optax.apply_updates(params, updates)["kernel"][0, 0]), 6)
      1.007995
      >>> warm = optax.linear_schedule(0.0, 0.01, transition_steps=10)
      >>> opt = imu.imu_sgd(warm, milestones=[5])       # a schedule, decayed x0.1 at step 5
    """
    learning_rate = _with_milestones(learning_rate, milestones, gamma)
    aggregate = (influence_weighted_ascent(damping, top_fraction, clip_quantile) if per_batch
                 else weighted_ascent())
    return _skip_no_op_steps(optax.chain(
        aggregate,
        l1_penalty(alpha),
        optax.add_decayed_weights(weight_decay),
        optax.sgd(learning_rate, momentum=momentum),
    ))


def _with_milestones(learning_rate, milestones: Sequence[int] | None, gamma: float):
    """``learning_rate`` (a number or a schedule) times ``gamma`` per milestone passed."""
    if not milestones:
        return learning_rate
    steps = []
    for m in milestones:
        integral = isinstance(m, numbers.Integral) or (
            isinstance(m, numbers.Real) and float(m).is_integer())
        if isinstance(m, bool) or not integral or m < 1:
            raise ValueError(
                f"milestones are optimizer steps (integers >= 1), got {m!r}. "
                "(imu_jax.UnlearnConfig.milestones are fractions of the run; the transform does "
                "not know the run's length: convert with [round(f * total_steps) for f in "
                "fractions].)")
        steps.append(int(m))
    decay = optax.piecewise_constant_schedule(1.0, {m: gamma for m in sorted(set(steps))})
    if callable(learning_rate):
        return lambda count: learning_rate(count) * decay(count)
    return optax.piecewise_constant_schedule(learning_rate, {m: gamma for m in sorted(set(steps))})
