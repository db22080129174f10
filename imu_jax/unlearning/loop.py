"""The IMU unlearning loop: influence → selection → jitted head-only ascent → report (spec §1–3).

:func:`unlearn` needs only the forget set and the trained model. The model is an ``nnx.Module``, a
``(linen_module, variables)`` pair (``unlearn(module, forget, config)``: the result is a new
module / new variables), or any object with

* ``apply(params, state, x, *, train=False[, rng=None]) -> (logits, new_state)`` (pure,
  jit-able; ``rng``, a ``jax.random`` key, reaches train-mode applies: Dropout), and optionally
* ``head_input(params, state, x, layer)`` (or ``features(params, state, x)``), the input of the
  head layer; with it, a head that is one dense softmax layer (kernel ``[D, C]`` + bias ``[C]``,
  any name) gets the closed-form influence, otherwise the streaming generic path runs.

``imu_jax.models.functional(model)`` (the library's models), ``imu.from_nnx(module)`` and
``imu.from_linen(module, variables)`` return such an object (``docs/YOUR_MODEL.md``). Data is a
dict of numpy arrays with a ``"label"`` entry; every other key is an input, passed to the model
as that array when there is one (``"image"``, ``"tokens"``) and as a dict when there are several.
The model's logits decide the task: logits ``[N, C]`` take classes ``[N]`` or one-hot ``[N, C]``
labels (softmax cross-entropy), logits ``[N, T, V]`` take next tokens ``[N, T]`` with ``-1`` as
padding (mean token cross-entropy).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _checks, _compile_clock, _factored, heads, sharding
from imu_jax.models import adapters
from imu_jax.transforms import imu_sgd, influence_weighted_ascent, l1_penalty, weighted_ascent
from imu_jax.unlearning import monitor as monitor_lib
from imu_jax.unlearning import stopping
from imu_jax.unlearning.closed_form import feature_batch_size, feature_fn
from imu_jax.unlearning.config import LABEL_KEYS, PyTree, UnlearnConfig, UnlearnReport
from imu_jax.unlearning.losses import (input_and_labels, labels_for_logits, make_example_loss,
                                       output_shape, train_apply)
from imu_jax.unlearning.feature_cache import plan_cache
from imu_jax.unlearning.selection import forget_influence, select_examples

# traces of the step function (a Python side effect: it runs once per compilation), for tests
TRACES: collections.Counter = collections.Counter()


def _schedule(config: UnlearnConfig, total_steps: int) -> optax.Schedule | float:
    boundaries = {max(1, int(round(f * total_steps))): config.gamma for f in config.milestones
                  if 0 < f < 1}
    if not boundaries:
        return config.learning_rate
    return optax.piecewise_constant_schedule(config.learning_rate, boundaries)


def make_optimizer(config: UnlearnConfig, total_steps: int) -> optax.GradientTransformation:
    """The chain aggregate → L1 → (coupled decay → SGD momentum | AdamW).

    With SGD it is the core's ``imu_sgd``: global mode aggregates with ``weighted_ascent``
    (weights passed to ``update``), per-batch mode with ``influence_weighted_ascent`` (weights
    computed inside each batch, with this config's damping / top fraction / clip quantile).
    """
    lr = _schedule(config, total_steps)
    per_batch = config.influence_mode == "per_batch" and config.weighting == "influence"
    if config.optimizer == "sgd":
        return imu_sgd(lr, alpha=config.alpha, momentum=config.momentum,
                       weight_decay=config.weight_decay, per_batch=per_batch,
                       damping=config.damping, top_fraction=config.top_fraction,
                       clip_quantile=config.clip_quantile)
    if per_batch:
        aggregate = influence_weighted_ascent(damping=config.damping,
                                              top_fraction=config.top_fraction,
                                              clip_quantile=config.clip_quantile)
    else:
        aggregate = weighted_ascent()
    return optax.chain(aggregate, l1_penalty(config.alpha),
                       optax.adamw(lr, weight_decay=config.weight_decay))


def _plan_batches(num_kept: int, config: UnlearnConfig, rng: np.random.Generator) -> list:
    batches = []
    for _ in range(config.epochs):
        order = rng.permutation(num_kept)
        batches += [order[i:i + config.batch_size] for i in range(0, num_kept, config.batch_size)]
    return batches[:config.max_steps] if config.max_steps else batches


def weighted_mean_grad(loss, head: PyTree, batch: PyTree, weights: jax.Array
                       ) -> tuple[PyTree, dict[str, jax.Array]]:
    """``∇ Σ w_i ℓ_i / Σ w_i`` by one backward pass, as a batch of ONE example with weight 1.

    ``weighted_ascent`` is linear in the per-example gradients, so feeding it this single
    "example" (``update(grads, ..., **extra)``) gives the same update as the ``B`` per-example
    gradients with their weights, without materializing ``B × P`` of them: an IMU step then costs
    what a plain SGD step on the head costs (``experiments/bench_influence.py``).

    >>> import jax.numpy as jnp
    >>> loss = lambda w, ex: 0.5 * jnp.sum((ex["x"] @ w - ex["y"]) ** 2)
    >>> batch = {"x": jnp.eye(2), "y": jnp.ones(2)}
    >>> g, extra = weighted_mean_grad(loss, jnp.zeros(2), batch, jnp.array([3.0, 1.0]))
    >>> g.tolist(), extra["weights"].tolist()
    ([[-0.75, -0.25]], [1.0])
    """
    weights = jnp.asarray(weights)
    valid = jnp.all(jnp.isfinite(weights) & (weights >= 0))
    safe = jnp.where(valid, weights, 0)  # invalid weights: a zero gradient, flagged below
    total = jnp.sum(safe)

    def weighted_mean_loss(head):
        losses = jax.vmap(loss, in_axes=(None, 0))(head, batch)
        w = safe.astype(losses.dtype)
        return jnp.sum(w * losses) / jnp.where(total > 0, total, 1)

    grads = jax.grad(weighted_mean_loss)(head)
    # the transform sees one example whose weight is 1, or 0 (all-zero batch: a no-op step) or
    # NaN (negative / non-finite weights: a no-op step counted in its state's invalid_weights)
    one = jnp.where(valid, jnp.where(total > 0, 1.0, 0.0), jnp.nan).astype(weights.dtype)
    return jax.tree.map(lambda g: g[None], grads), {"weights": one[None]}


def make_step(model, config: UnlearnConfig, optimizer: optax.GradientTransformation, *,
              place: sharding.Placement | None = None):
    """The jitted step ``(head, opt_state, rest, state, x, y, weights[, rng]) -> (head, opt_state,
    state)``; ``rng`` (a ``jax.random`` key) reaches the train-mode apply of
    ``update_batch_stats`` where the model takes one (Dropout)."""
    uses_weights = not (config.influence_mode == "per_batch" and config.weighting == "influence")

    def step(head, opt_state, rest, state, x, y, weights, rng=None):
        TRACES["step"] += 1
        if config.update_batch_stats:
            _, state = train_apply(model, heads.merge_head(head, rest), state, x, rng)
        loss = make_example_loss(model, rest, state)
        if uses_weights:  # the optimizer starts with weighted_ascent: one backward pass suffices
            grads, extra = weighted_mean_grad(loss, head, {"x": x, "y": y}, weights)
        else:
            # dense kernels' per-example gradients as outer products (imu_jax._factored): the
            # influence, selection and weighted mean read their factors, never B × P numbers
            grads, extra = _factored.per_example_grads_of(loss, head, {"x": x, "y": y}), {}
        updates, opt_state = optimizer.update(grads, opt_state, head, **extra)
        return optax.apply_updates(head, updates), opt_state, state

    if place:  # head, optimizer state and model state keep their placement on the mesh
        return place.jit(step, carry=(0, 1, 3))
    return jax.jit(step)


# the fields of UnlearnConfig that make_optimizer and make_step read
_STEP_FIELDS = ("optimizer", "learning_rate", "alpha", "momentum", "weight_decay",
                "influence_mode", "weighting", "damping", "top_fraction", "clip_quantile",
                "milestones", "gamma", "update_batch_stats")
_STEPS: collections.OrderedDict = collections.OrderedDict()
_MAX_STEPS_CACHED = 32


def compiled_step(model, config: UnlearnConfig, total_steps: int):
    """``(optimizer, jitted step)`` for ``model`` and ``config``, shared by every run with the
    same model (``==``: the same object for protocol models, the same head paths for
    :class:`~imu_jax.unlearning.feature_cache.HeadModel`) and the same optimizer settings: a second run with the same shapes does
    not recompile. The step takes every array as an argument (``make_step``)."""
    key = (model, tuple(getattr(config, f) for f in _STEP_FIELDS),
           total_steps if config.milestones else 0)  # the schedule reads the length
    try:
        hit = _STEPS.get(key)
    except TypeError:  # an unhashable model or head predicate: built for this run only
        optimizer = make_optimizer(config, total_steps)
        return optimizer, make_step(model, config, optimizer)
    if hit is None:
        optimizer = make_optimizer(config, total_steps)
        hit = _STEPS[key] = (optimizer, make_step(model, config, optimizer))
        while len(_STEPS) > _MAX_STEPS_CACHED:
            _STEPS.popitem(last=False)
    _STEPS.move_to_end(key)
    return hit


def _loop_checkpoint(checkpointer, resume, config, seed, x, y, indices, weights, model):
    """Checkpointing of :func:`unlearn`'s loop (explicit, or from ``use_run_checkpoints``).

    The saved ``config`` is what defines the run (hyperparameters, seed, a fingerprint of the
    forget set); the selection and batch plan are saved with every checkpoint and reused on
    resume (:func:`_resume_selection`), so a run may resume on another mesh or device count."""
    from imu_jax.unlearning import loop_checkpoint  # Orbax: imported only when a loop runs
    from imu_jax.unlearning.run_checkpoint import fingerprint

    if checkpointer is None and loop_checkpoint._SETTINGS.get() is None:  # not checkpointed
        return loop_checkpoint.LoopCheckpoint(None, total_steps=0)
    run_config = {**dataclasses.asdict(config), "seed": int(seed),
                  "forget_set": fingerprint(*_input_parts(x), y),
                  "rng": "numpy default_rng(seed); selection and batch plan saved"}
    architecture = {"model": getattr(model, "config", type(model).__name__)}
    if callable(config.head):  # a predicate: saved by name
        run_config["head"] = getattr(config.head, "__qualname__", repr(config.head))
    if checkpointer is None:
        key = "unlearn-" + fingerprint(run_config, architecture, *_input_parts(x), y)
        checkpointer, default_resume = loop_checkpoint.for_run(key, architecture=architecture)
        resume = default_resume if resume is None else resume
    return loop_checkpoint.LoopCheckpoint(
        checkpointer, total_steps=0, resume=bool(resume), config=run_config,
        selection={"indices": indices, "weights": weights})


def _input_parts(x: PyTree) -> list:
    """The inputs as fingerprint parts: the array itself (as before), or keys and arrays."""
    if isinstance(x, Mapping):
        return [sorted(x), *(x[k] for k in sorted(x))]
    return [x]


def _take(x: PyTree, rows) -> PyTree:
    return jax.tree.map(lambda a: a[rows], x)


_take_on_device = jax.jit(_take)  # one dispatch for a batch of device arrays (the features)


def _batch_rows(x: PyTree, rows: np.ndarray, place) -> PyTree:
    """``x``'s rows ``rows``: gathered in one jitted call when ``x`` lives on the device (the
    cached features; eager indexing costs ~0.5 ms of Python a step), by numpy on host data."""
    if not place and all(isinstance(a, jax.Array) for a in jax.tree.leaves(x)):
        return _take_on_device(x, rows)
    return _take(x, rows)


def _plan_array(plan: list, batch_size: int) -> np.ndarray:
    """The batch plan as ``int32[steps, batch_size]``, short batches padded with -1."""
    out = np.full((len(plan), batch_size), -1, np.int32)
    for i, batch in enumerate(plan):
        out[i, :len(batch)] = batch
    return out


def _resume_selection(loop, indices, weights, plan, batch_size):
    """``(indices, weights, plan)``: the checkpoint's on resume, else the ones computed here.

    Influence recomputed on another mesh rounds differently (~1e-5 relative) and may keep other
    examples; a resumed run continues with what it saved instead."""
    saved = loop.saved_selection()
    if saved is not None and "plan" in saved:
        indices, weights = saved["indices"].astype(np.int64), saved["weights"].astype(np.float32)
        plan = [row[row >= 0] for row in saved["plan"]]
    loop.selection = {"indices": indices, "weights": weights,
                      "plan": _plan_array(plan, batch_size)}
    loop.total_steps = len(plan)
    return indices, weights, plan


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": float(np.min(values)), "median": float(np.median(values)),
            "mean": float(np.mean(values)), "max": float(np.max(values))}


def _monitored_plan(num_kept: int, config: UnlearnConfig, rule: stopping.StopRule,
                    rng: np.random.Generator) -> tuple[list, UnlearnConfig]:
    """Batches up to the rule's cap (constant lr: milestones are fractions of a fixed length)."""
    per_epoch = -(-num_kept // config.batch_size)
    cap = rule.cap(per_epoch)
    if config.max_steps:
        cap = min(cap, config.max_steps)
    epochs = max(1, -(-cap // per_epoch))
    fixed = dataclasses.replace(config, epochs=epochs, max_steps=cap, milestones=())
    return _plan_batches(num_kept, fixed, rng), fixed


def unlearn(model, params: PyTree, forget: Mapping[str, np.ndarray] | UnlearnConfig | None = None,
            config: UnlearnConfig | None = None, *, state: PyTree = None,
            seed: int = 0, mesh=None, checkpointer=None,
            resume: bool | None = None, on_step=None,
            held_out: Mapping[str, np.ndarray] | None = None,
            stop_rule: stopping.StopRule | None = None,
            progress: bool = False) -> tuple[PyTree, UnlearnReport]:
    """Unlearns ``forget`` from ``params`` with IMU (spec §1–3), using the forget set only.

    Called as ``unlearn(model, params, forget, config, state=state)`` with a protocol object, or
    as ``unlearn(module, forget, config)`` with an ``nnx.Module`` or a ``(linen_module,
    variables)`` pair, which carry their params and state.

    Args:
      model: has ``apply(params, state, x, *, train)`` and optionally ``head_input`` or
        ``features`` (module doc); or an ``nnx.Module`` / ``(linen_module, variables)``.
      params: the trained parameters (a pure pytree); with a module: ``forget``.
      forget: ``{"label": labels, **inputs}`` numpy arrays (``"image"``, ``"tokens"``, or
        several inputs, which the model receives as a dict); with a module: ``config``.
      config: :class:`UnlearnConfig` (its defaults: the public code's optimizer recipe, spec §3).
      state: non-parameter model state (BatchNorm statistics), or ``None``/``{}``.
      seed: shuffling (and the shuffled-weights ablation).
      mesh: a device mesh (``imu_jax.sharding.make_mesh``; default: the one set with
        ``imu_jax.sharding.use_mesh``, else none): forget batches are sharded over ``data``, the
        head over ``model``; the result is the same as on one device (to float rounding).
      checkpointer: an ``imu_jax.unlearning.run_checkpoint.RunCheckpointer`` saving head, optimizer state,
        model state, step, the selection and the config (with the RNG seed) every k steps;
        default: one under ``imu_jax.unlearning.loop_checkpoint.use_run_checkpoints``, named by a
        fingerprint of the run (config, seed, forget set), else none.
      resume: continue from the newest readable checkpoint (default: the
        ``use_run_checkpoints`` setting); the result is bit-identical to an uninterrupted run.
      on_step: optional ``on_step(step, params, state)`` called after every optimizer step with
        the full parameters (per-step evaluation, e.g. the Markov KL curves).
      held_out: data the model never trained on (a validation/test split). When given, the
        retain-free stopping rule of :mod:`imu_jax.unlearning.stopping` decides the length (constant lr,
        checks every ``stop_rule.eval_every`` steps, capped at ``stop_rule.max_epochs``);
        ``epochs`` and ``milestones`` are then unused. Without it the run has the fixed length
        ``epochs`` (``max_steps``), as in the public code.
      stop_rule: the rule's settings (default :class:`imu_jax.unlearning.stopping.StopRule`).
      progress: show a progress bar with the monitored quantities.

    Returns:
      ``(new_params, report)``: only the head differs from ``params``; the report holds the head's
      parameter paths, which influence path ran and why, influence statistics, the kept count,
      whether the no-negative-influence fallback fired, steps, seconds. With an ``nnx.Module``
      ``new_params`` is a new module, with ``(linen_module, variables)`` new variables (the
      originals are untouched).

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> class Linear:
      ...   def apply(self, params, state, x, *, train=False):
      ...     return x @ params["head"]["kernel"] + params["head"]["bias"], state
      ...   def features(self, params, state, x):
      ...     return x
      >>> rng = np.random.default_rng(0)
      >>> params = {"head": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
      ...                    "bias": jnp.zeros(3)}}
      >>> forget = {"image": rng.normal(size=(20, 4)).astype(np.float32),
      ...           "label": rng.integers(0, 3, 20)}
      >>> new, report = unlearn(Linear(), params, forget, UnlearnConfig(epochs=2, batch_size=4))
      >>> report.closed_form, report.num_forget, report.steps == 2 * -(-report.num_kept // 4)
      (True, 20, True)
      >>> report.closed_form_reason
      "closed form: dense softmax top layer 'head' (kernel [4, 3], bias [3])"
    """
    if adapters.is_user_module(model):  # unlearn(module, forget, config)
        if config is not None or not (forget is None or isinstance(forget, UnlearnConfig)):
            raise TypeError("with an nnx.Module or a (linen module, variables) pair, call "
                            "unlearn(module, forget, config): the module carries its params.")
        params, forget, config = None, params, forget
    if not isinstance(forget, Mapping):
        raise TypeError(f"forget must be a dict of arrays with a 'label' entry, got "
                        f"{type(forget).__name__}.")
    model, params, state, hand_back = adapters.resolve(model, params, state)
    config = config or UnlearnConfig()
    x, y = input_and_labels(forget)
    if len(y) == 0:
        raise ValueError("the forget set is empty: nothing to unlearn.")
    _checks.check_finite(forget, "forget")  # named by the user's keys, not the internal batch's
    only = [k for k in forget if k not in LABEL_KEYS]
    logits_shape = output_shape(model, params, state, x, "forget",
                                key=only[0] if len(only) == 1 else None)
    y = labels_for_logits(logits_shape, y)
    rng = np.random.default_rng(seed)
    with _compile_clock.compile_clock() as clock:  # jit compile time, reported apart
        start = time.perf_counter()
        heads.check_head_selector(params, config.head)  # the core's check: the same decision
        selector = config.head
        head, rest = heads.split_head(params, selector)
        place = sharding.Placement(mesh if mesh is not None else sharding.current_mesh())

        scores, closed_form, reason, result = None, None, None, None
        if config.influence_mode == "global" and config.weighting != "uniform":
            result = forget_influence(model, params, state, x, y, config, place=place)
            (scores, closed_form), reason = result, getattr(result, "reason", None)
        elif config.weighting == "uniform":
            reason = "no influence pass: weighting='uniform' (every forget example, weight 1)"
        else:
            reason = ("no global influence pass: influence_mode='per_batch' weighs each batch from "
                      "its per-example gradients")
        if config.influence_mode == "per_batch":
            indices, weights, fallback = np.arange(len(y)), np.ones(len(y), np.float32), False
        else:
            indices, weights, fallback = select_examples(scores, len(y), config, rng)

        if held_out is not None:
            plan, loop_config = _monitored_plan(len(indices), config, stop_rule or stopping.StopRule(),
                                                rng)
            monitor = monitor_lib.Monitor(model, forget, held_out, stop_rule, progress=progress,
                                       label="imu")
        else:
            if stop_rule is not None:
                raise ValueError("stop_rule needs held_out data (the rule compares the forget set "
                                 "with it); got held_out=None.")
            plan, loop_config = _plan_batches(len(indices), config, rng), config
            monitor = monitor_lib.Monitor.fixed()
        head_model, features, cache_reason = plan_cache(model, params, state, x, y, head, config,
                                                        place, result)
        step_model, step_x = model, x
        if head_model is not None:  # the steps and checks on the head alone, over the features
            step_model, step_x = head_model, features
            monitor.use_features(head_model, features,
                                 feature_fn(model, params, state, head, feature_batch_size(y)),
                                 params, state)
            cache_reason += (f" over {len(y)} forget" + (f" + {len(monitor.held_y)} held-out"
                                                        if monitor.monitoring else "")
                             + " examples")
        loop = _loop_checkpoint(checkpointer, resume, config, seed, x, y, indices, weights, model)
        indices, weights, plan = _resume_selection(loop, indices, weights, plan, config.batch_size)
        if place:
            optimizer = make_optimizer(loop_config, len(plan))
            step = make_step(step_model, config, optimizer, place=place)
        else:  # compiled once per model and settings, reused by later runs
            optimizer, step = compiled_step(step_model, loop_config, len(plan))
        head, rest, state = place.params(head), place.replicate(rest), place.replicate(state)
        opt_state = place.init(optimizer, head)
        kept_x, kept_y = _take(step_x, indices), y[indices]
        train_key = jax.random.key(seed) if config.update_batch_stats else None
        first, saved = loop.start({"params": head, "opt_state": opt_state, "model_state": state})
        head, opt_state, state = saved["params"], saved["opt_state"], saved["model_state"]
        monitor.resume(loop.progress)  # the curve before the checkpoint (None: nothing resumed)
        done = monitor.start(heads.merge_head(head, rest), state, total_steps=len(plan), step=first)
        for i in range(first, len(plan)):
            if done:
                break
            batch = plan[i]
            key = None if train_key is None else jax.random.fold_in(train_key, i)
            head, opt_state, state = step(head, opt_state, rest, state,
                                          *place.batch((_batch_rows(kept_x, batch, place),
                                                        kept_y[batch],
                                                        weights[batch])), key)
            loop.done(i + 1, {"params": head, "opt_state": opt_state, "model_state": state},
                      progress=monitor.progress)
            if on_step is not None:
                on_step(i + 1, heads.merge_head(head, rest), state)
            done = monitor.after_step(i + 1, heads.merge_head(head, rest), state)
        monitor.finish(len(plan))
        loop.finish()
        merged, state = monitor.params_to_return(heads.merge_head(head, rest), state)
        head = heads.split_head(merged, selector)[0]
        if place:  # hand back ordinary single-device arrays, like the inputs
            head, state, opt_state = jax.tree.map(jnp.asarray, place.host((head, state, opt_state)))
            rest = heads.split_head(params, selector)[1]
        new_params = jax.block_until_ready(heads.merge_head(head, rest))
        seconds = time.perf_counter() - start
    compile_seconds = clock.seconds_since(start)

    report = UnlearnReport(
        influence_mode=config.influence_mode, weighting=config.weighting, num_forget=int(len(y)),
        num_kept=int(len(indices)), fallback=bool(fallback), steps=monitor.steps,
        seconds=seconds, compile_seconds=compile_seconds,
        head_paths=heads.param_paths(head), closed_form=closed_form,
        closed_form_reason=reason, state=state,
        stop_reason=monitor.stop_reason, stopping=monitor.result(),
        feature_cache=head_model is not None, feature_cache_reason=cache_reason)
    if scores is not None:
        report.num_negative = int(np.sum(scores < 0))
        report.influence = _summary(scores)
        report.weights = _summary(weights)
    if config.influence_mode == "per_batch" and config.weighting == "influence" and plan:
        report.num_fallback_batches = int(opt_state[0].num_fallbacks)
        report.fallback = report.num_fallback_batches > 0
    return hand_back(new_params, state), report
