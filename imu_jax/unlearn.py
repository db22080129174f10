"""The IMU unlearning loop: influence → selection → jitted head-only ascent → report (spec §1–3).

:func:`unlearn` needs only the forget set and the trained model. The model is any object with

* ``apply(params, state, x, *, train=False) -> (logits, new_state)`` (pure, jit-able), and
  optionally
* ``features(params, state, x) -> [N, D]``, the input of a dense softmax head; with it (and a head
  ``{"kernel", "bias"}``) influence uses the closed form, otherwise the streaming generic path.

``imu_jax.models.functional(model)`` returns such an object. Data is a dict of numpy arrays with a
``"label"`` entry and one input (``"image"`` or ``"tokens"``). The model's logits decide the
task: logits ``[N, C]`` take classes ``[N]`` or one-hot ``[N, C]`` labels (softmax cross-entropy),
logits ``[N, T, V]`` take next tokens ``[N, T]`` with ``-1`` as padding (mean token
cross-entropy).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _checks, heads, sharding, stopping
from imu_jax.influence import (DEFAULT_CLIP_QUANTILE, DEFAULT_DAMPING, DEFAULT_TOP_FRACTION,
                               NoNegativeInfluenceWarning, classifier_influence, influence_scores, influence_weights,
                               per_example_grads)
from imu_jax.lm_head import sequence_influence
from imu_jax.transforms import (imu_sgd, influence_weighted_ascent, l1_penalty,
                                 weighted_ascent)

PyTree = Any

INFLUENCE_MODES = ("global", "per_batch")
WEIGHTINGS = ("influence", "uniform", "shuffled")
OPTIMIZERS = ("sgd", "adamw")
INPUT_KEYS = ("image", "tokens")


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
    """Hyperparameters of :func:`unlearn`. The optimizer defaults (SGD momentum 0.9, coupled decay
    5e-4, lr 0.01, 10 epochs, α 0.2, batch 256, constant lr) are the public code's (spec §3);
    ``top_fraction`` (0.5, the public README's ablation value; its CLI default is 0.1) is ours,
    see ``docs/DEVIATIONS.md``.

    Attributes:
      head: regex (``re.search`` on "/"-joined paths) selecting the parameters θ_h.
      influence_mode: ``"global"`` (one pass over D_f, spec §1–2) or ``"per_batch"`` (weights
        recomputed inside each mini-batch, the LLM variant; every forget example is iterated).
      weighting: ``"influence"`` (IMU), ``"uniform"`` (every forget example, weight 1: GA on the
        head) or ``"shuffled"`` (ablation: IMU's kept weights placed on randomly chosen examples).
      top_fraction: fraction of the negatively influential examples kept (default 0.5).
      clip_quantile, damping: spec §1–2.
      learning_rate, epochs, batch_size, alpha (L1), momentum, weight_decay (coupled): spec §3.
      milestones: fractions of the total steps where the lr is multiplied by ``gamma``; default
        ``()``, a constant lr: the public code's MultiStepLR uses the training milestones (epochs
        91, 136), which never fire within the unlearning epochs.
      max_steps: optional cap on the number of optimizer steps.
      optimizer: ``"sgd"`` (public code) or ``"adamw"`` (Markov / LLM settings; decoupled decay).
      update_batch_stats: run a train-mode forward pass on each batch before its step so BatchNorm
        running statistics drift toward D_f, as in the public code (gradients still use inference
        mode). Off by default.
      influence_chunk_size: chunk size of the generic (streaming) influence path; ``None``
        (default) chooses it automatically (``imu_jax.auto_chunk_size``).
      closed_form: ``"auto"`` uses the dense-softmax closed form when it applies; ``"never"``
        forces the generic path.
    """

    head: str = "head"
    influence_mode: str = "global"
    weighting: str = "influence"
    top_fraction: float = DEFAULT_TOP_FRACTION
    clip_quantile: float = DEFAULT_CLIP_QUANTILE
    damping: float = DEFAULT_DAMPING
    learning_rate: float = 0.01
    epochs: int = 10
    batch_size: int = 256
    alpha: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    max_steps: int | None = None
    optimizer: str = "sgd"
    update_batch_stats: bool = False
    influence_chunk_size: int | None = None
    closed_form: str = "auto"

    def __post_init__(self):
        for name, value, allowed in (("influence_mode", self.influence_mode, INFLUENCE_MODES),
                                     ("weighting", self.weighting, WEIGHTINGS),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("closed_form", self.closed_form, ("auto", "never"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.influence_mode == "per_batch" and self.weighting == "shuffled":
            raise ValueError("weighting='shuffled' needs influence_mode='global'.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, "
                             f"{self.batch_size}.")


@dataclasses.dataclass
class UnlearnReport:
    """What :func:`unlearn` did. ``to_dict()`` is JSON-ready; ``state`` is the model state after
    unlearning (BatchNorm statistics; unchanged unless ``update_batch_stats``)."""

    influence_mode: str
    weighting: str
    num_forget: int
    num_kept: int
    fallback: bool
    steps: int
    seconds: float
    head_paths: list[str]
    closed_form: bool | None = None
    num_negative: int | None = None
    influence: dict[str, float] | None = None
    weights: dict[str, float] | None = None
    num_fallback_batches: int | None = None  # per-batch mode (num_kept = examples iterated)
    stop_reason: str | None = None  # imu_jax.stopping.STOP_REASONS
    stopping: dict[str, Any] | None = None  # the rule's summary and per-check curve
    state: PyTree = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("state")
        return out


def input_and_labels(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` of a split dict (``"image"`` or ``"tokens"``, and ``"label"``).

    >>> x, y = input_and_labels({"tokens": np.zeros((2, 3), np.int32), "label": np.zeros((2, 3))})
    >>> x.shape, y.shape
    ((2, 3), (2, 3))
    """
    for key in INPUT_KEYS:
        if key in arrays:
            if "label" not in arrays:
                raise ValueError(f"data needs a 'label' array next to {key!r} (integer class or "
                                 f"next-token labels); got keys {sorted(arrays)}.")
            x, y = np.asarray(arrays[key]), np.asarray(arrays["label"])
            if x.shape[:1] != y.shape[:1]:
                raise ValueError(f"data has {x.shape[0] if x.ndim else 0} {key!r} rows but "
                                 f"{y.shape[0] if y.ndim else 0} 'label' rows.")
            return x, y
    raise ValueError(f"data needs one of {INPUT_KEYS} and 'label'; got keys {sorted(arrays)}.")


def labels_for_logits(logits_shape: tuple, labels: np.ndarray) -> np.ndarray:
    """Labels in the form the losses take, decided from the model's logits (not the labels' rank).

    Logits ``[N, C]``: classes ``[N]``, or one-hot ``[N, C]`` (converted to classes). Logits
    ``[N, T, V]``: next tokens ``[N, T]`` (``-1`` = padding). Anything else is a ``ValueError``
    naming the expected shapes.

    >>> labels_for_logits((5, 3), np.eye(3)[[0, 2, 1, 1, 0]]).tolist()
    [0, 2, 1, 1, 0]
    >>> labels_for_logits((2, 4, 7), np.zeros((2, 4), np.int32)).shape
    (2, 4)
    """
    labels = np.asarray(labels)
    n = labels.shape[0] if labels.ndim else 0
    if len(logits_shape) == 2:
        classes = logits_shape[1]
        if labels.ndim == 2 and labels.shape[1] == classes and np.all(
                (labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1):
            return np.argmax(labels, axis=1).astype(np.int32)
        if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
            return labels
        raise ValueError(
            f"the model's logits are [N, C] = [N, {classes}] (classification), so labels must be "
            f"integer classes [N] = [{n}] or one-hot [N, C] = [{n}, {classes}]; got labels of "
            f"shape {labels.shape} and dtype {labels.dtype}.")
    if len(logits_shape) == 3:
        if labels.ndim == 2 and labels.shape[1] == logits_shape[1] and np.issubdtype(
                labels.dtype, np.integer):
            return labels
        raise ValueError(
            f"the model's logits are [N, T, V] = [N, {logits_shape[1]}, {logits_shape[2]}] "
            f"(sequences), so labels must be integer next tokens [N, T] = [{n}, "
            f"{logits_shape[1]}] (-1 = padding); got labels of shape {labels.shape} and dtype "
            f"{labels.dtype}.")
    raise ValueError(f"the model's logits must be [N, C] (classes) or [N, T, V] (sequences); got "
                     f"logits of shape {tuple(logits_shape)}.")


def example_loss(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Loss of ONE example: softmax CE for a class label, mean token CE (label ≥ 0) for sequences.

    >>> round(float(example_loss(jnp.zeros(4), jnp.array(2))), 4)  # log 4
    1.3863
    >>> round(float(example_loss(jnp.zeros((3, 2)), jnp.array([1, -1, -1]))), 4)  # log 2
    0.6931
    """
    if label.ndim == 0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, label)
    mask = label >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, label, 0))
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def batch_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example losses ``[N]`` of a batch (vmap of :func:`example_loss`)."""
    return jax.vmap(example_loss)(logits, labels)


def make_example_loss(model, rest: PyTree, state: PyTree):
    """``loss(head, example) -> scalar`` for the core: the model in inference mode, rest fixed."""

    def loss(head, example):
        params = heads.merge_head(head, rest)
        logits, _ = model.apply(params, state, example["x"][None], train=False)
        return example_loss(logits[0], example["y"])

    return loss


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

    def weighted_mean_loss(head):
        losses = jax.vmap(loss, in_axes=(None, 0))(head, batch)
        w = weights.astype(losses.dtype)
        return jnp.sum(w * losses) / jnp.sum(w)

    grads = jax.grad(weighted_mean_loss)(head)
    return jax.tree.map(lambda g: g[None], grads), {"weights": jnp.ones(1, weights.dtype)}


def make_step(model, config: UnlearnConfig, optimizer: optax.GradientTransformation, *,
              place: sharding.Placement | None = None):
    """The jitted step ``(head, opt_state, rest, state, x, y, weights) -> (head, opt_state, state)``."""
    uses_weights = not (config.influence_mode == "per_batch" and config.weighting == "influence")

    def step(head, opt_state, rest, state, x, y, weights):
        if config.update_batch_stats:
            _, state = model.apply(heads.merge_head(head, rest), state, x, train=True)
        loss = make_example_loss(model, rest, state)
        if uses_weights:  # the optimizer starts with weighted_ascent: one backward pass suffices
            grads, extra = weighted_mean_grad(loss, head, {"x": x, "y": y}, weights)
        else:
            grads, extra = per_example_grads(loss, head, {"x": x, "y": y}), {}
        updates, opt_state = optimizer.update(grads, opt_state, head, **extra)
        return optax.apply_updates(head, updates), opt_state, state

    if place:  # head, optimizer state and model state keep their placement on the mesh
        return place.jit(step, carry=(0, 1, 3))
    return jax.jit(step)


def _loop_checkpoint(checkpointer, resume, config, seed, x, y, indices, weights, model):
    """Checkpointing of :func:`unlearn`'s loop (explicit, or from ``use_run_checkpoints``).

    The saved ``config`` is what defines the run (hyperparameters, seed, a fingerprint of the
    forget set); the selection and batch plan are saved with every checkpoint and reused on
    resume (:func:`_resume_selection`), so a run may resume on another mesh or device count."""
    from imu_jax import run_checkpoint  # Orbax: imported only when a loop runs

    if checkpointer is None and run_checkpoint._SETTINGS.get() is None:  # not checkpointed
        return run_checkpoint.LoopCheckpoint(None, total_steps=0)
    run_config = {**dataclasses.asdict(config), "seed": int(seed),
                  "forget_set": run_checkpoint.fingerprint(x, y),
                  "rng": "numpy default_rng(seed); selection and batch plan saved"}
    architecture = {"model": getattr(model, "config", type(model).__name__)}
    if checkpointer is None:
        key = "unlearn-" + run_checkpoint.fingerprint(run_config, architecture, x, y)
        checkpointer, default_resume = run_checkpoint.for_run(key, architecture=architecture)
        resume = default_resume if resume is None else resume
    return run_checkpoint.LoopCheckpoint(
        checkpointer, total_steps=0, resume=bool(resume), config=run_config,
        selection={"indices": indices, "weights": weights})


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


def unlearn(model, params: PyTree, forget: Mapping[str, np.ndarray],
            config: UnlearnConfig | None = None, *, state: PyTree = None,
            seed: int = 0, mesh=None, checkpointer=None,
            resume: bool | None = None, on_step=None,
            held_out: Mapping[str, np.ndarray] | None = None,
            stop_rule: stopping.StopRule | None = None,
            progress: bool = False) -> tuple[PyTree, UnlearnReport]:
    """Unlearns ``forget`` from ``params`` with IMU (spec §1–3), using the forget set only.

    Args:
      model: has ``apply(params, state, x, *, train)`` and optionally ``features`` (module doc).
      params: the trained parameters (a pure pytree).
      forget: ``{"image"|"tokens": inputs, "label": labels}`` numpy arrays.
      config: :class:`UnlearnConfig` (its defaults: the public code's optimizer recipe, spec §3).
      state: non-parameter model state (BatchNorm statistics), or ``None``/``{}``.
      seed: shuffling (and the shuffled-weights ablation).
      mesh: a device mesh (``imu_jax.sharding.make_mesh``; default: the one set with
        ``imu_jax.sharding.use_mesh``, else none): forget batches are sharded over ``data``, the
        head over ``model``; the result is the same as on one device (to float rounding).
      checkpointer: an ``imu_jax.run_checkpoint.RunCheckpointer`` saving head, optimizer state,
        model state, step, the selection and the config (with the RNG seed) every k steps;
        default: one under ``imu_jax.run_checkpoint.use_run_checkpoints``, named by a
        fingerprint of the run (config, seed, forget set), else none.
      resume: continue from the newest readable checkpoint (default: the
        ``use_run_checkpoints`` setting); the result is bit-identical to an uninterrupted run.
      on_step: optional ``on_step(step, params, state)`` called after every optimizer step with
        the full parameters (per-step evaluation, e.g. the Markov KL curves).
      held_out: data the model never trained on (a validation/test split). When given, the
        retain-free stopping rule of :mod:`imu_jax.stopping` decides the length (constant lr,
        checks every ``stop_rule.eval_every`` steps, capped at ``stop_rule.max_epochs``);
        ``epochs`` and ``milestones`` are then unused. Without it the run has the fixed length
        ``epochs`` (``max_steps``), as in the public code.
      stop_rule: the rule's settings (default :class:`imu_jax.stopping.StopRule`).
      progress: show a progress bar with the monitored quantities.

    Returns:
      ``(new_params, report)``: only the head differs from ``params``; the report holds influence
      statistics, the kept count, whether the no-negative-influence fallback fired, steps, seconds.

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
    """
    config = config or UnlearnConfig()
    state = {} if state is None else state
    x, y = input_and_labels(forget)
    if len(y) == 0:
        raise ValueError("the forget set is empty: nothing to unlearn.")
    _checks.check_finite(forget, "forget")  # named by the user's keys, not the internal batch's
    logits_shape = _checks.model_output_shape(model, params, state, x, "forget")
    y = labels_for_logits(logits_shape, y)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    head, rest = heads.split_head(params, config.head)
    place = sharding.Placement(mesh if mesh is not None else sharding.current_mesh())

    scores, closed_form = None, None
    if config.influence_mode == "global" and config.weighting != "uniform":
        scores, closed_form = forget_influence(model, params, state, x, y, config, place=place)
    if config.influence_mode == "per_batch":
        indices, weights, fallback = np.arange(len(y)), np.ones(len(y), np.float32), False
    else:
        indices, weights, fallback = select_examples(scores, len(y), config, rng)

    if held_out is not None:
        plan, loop_config = _monitored_plan(len(indices), config, stop_rule or stopping.StopRule(),
                                            rng)
        monitor = stopping.Monitor(model, forget, held_out, stop_rule, progress=progress,
                                   label="imu")
    else:
        if stop_rule is not None:
            raise ValueError("stop_rule needs held_out data (the rule compares the forget set "
                             "with it); got held_out=None.")
        plan, loop_config = _plan_batches(len(indices), config, rng), config
        monitor = stopping.Monitor.fixed()
    loop = _loop_checkpoint(checkpointer, resume, config, seed, x, y, indices, weights, model)
    indices, weights, plan = _resume_selection(loop, indices, weights, plan, config.batch_size)
    optimizer = make_optimizer(loop_config, len(plan))
    head, rest, state = place.params(head), place.replicate(rest), place.replicate(state)
    opt_state = place.init(optimizer, head)
    step = make_step(model, config, optimizer, place=place)
    kept_x, kept_y = x[indices], y[indices]
    first, saved = loop.start({"params": head, "opt_state": opt_state, "model_state": state})
    head, opt_state, state = saved["params"], saved["opt_state"], saved["model_state"]
    done = monitor.start(heads.merge_head(head, rest), state, total_steps=len(plan), step=first)
    for i in range(first, len(plan)):
        if done:
            break
        batch = plan[i]
        head, opt_state, state = step(head, opt_state, rest, state,
                                      *place.batch((kept_x[batch], kept_y[batch], weights[batch])))
        loop.done(i + 1, {"params": head, "opt_state": opt_state, "model_state": state})
        if on_step is not None:
            on_step(i + 1, heads.merge_head(head, rest), state)
        done = monitor.after_step(i + 1, heads.merge_head(head, rest), state)
    monitor.finish(len(plan))
    loop.finish()
    merged, state = monitor.params_to_return(heads.merge_head(head, rest), state)
    head = heads.split_head(merged, config.head)[0]
    if place:  # hand back ordinary single-device arrays, like the inputs
        head, state, opt_state = jax.tree.map(jnp.asarray, place.host((head, state, opt_state)))
        rest = heads.split_head(params, config.head)[1]
    new_params = jax.block_until_ready(heads.merge_head(head, rest))
    seconds = time.perf_counter() - start

    report = UnlearnReport(
        influence_mode=config.influence_mode, weighting=config.weighting, num_forget=int(len(y)),
        num_kept=int(len(indices)), fallback=bool(fallback), steps=monitor.steps,
        seconds=seconds, head_paths=heads.param_paths(head), closed_form=closed_form, state=state,
        stop_reason=monitor.stop_reason, stopping=monitor.result())
    if scores is not None:
        report.num_negative = int(np.sum(scores < 0))
        report.influence = _summary(scores)
        report.weights = _summary(weights)
    if config.influence_mode == "per_batch" and config.weighting == "influence" and plan:
        report.num_fallback_batches = int(opt_state[0].num_fallbacks)
        report.fallback = report.num_fallback_batches > 0
    return new_params, report
