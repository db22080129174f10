"""The interface every unlearning method shares, and the small training loop most of them use.

A :class:`Method` is a name, what data it needs (repeated in the results tables), default
hyperparameters, a small tuning grid, and ``run(task, hparams, seed) -> MethodOutput``. A
:class:`UnlearnTask` carries the trained model and every split a method might ask for; each method
touches only what its ``needs`` says.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax import _compile_clock
from imu_jax.unlearning import monitor as monitor_lib
from imu_jax.unlearning.losses import batch_loss, input_and_labels


PyTree = Any

FORGET_ONLY = "forget set only"
FORGET_AND_ORIGINAL = "forget set + original model"
FULL_SET_STATISTICS = "forget set + full training set statistics"
RETAIN_SET = "retain set"
FORGET_AND_RETAIN = "forget + retain set"
FORGET_AND_AUXILIARY = "forget set + auxiliary OOD data (Gaussian noise)"


@dataclasses.dataclass
class UnlearnTask:
    """What a method may use. ``model`` has ``apply(params, state, x, *, train)`` (and usually
    ``features``); ``retrain_fn(seed) -> (params, state)`` trains on D_r from scratch."""

    model: Any
    params: PyTree
    state: PyTree
    forget: Mapping[str, np.ndarray]
    num_classes: int
    retain: Mapping[str, np.ndarray] | None = None
    train: Mapping[str, np.ndarray] | None = None
    retrain_fn: Callable[[int], tuple[PyTree, PyTree]] | None = None
    # Called as on_step(step, params, state) after every optimizer step (per-step evaluation).
    on_step: Callable[[int, PyTree, PyTree], None] | None = None
    # Per-channel (mean, std) the inputs were standardised with (pixels in [0, 1]); None: unknown.
    input_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # The retain-free stopping rule (imu_jax.unlearning.stopping): with ``stop_rule`` set, methods stop by
    # the rule on ``forget`` vs ``held_out`` (data the model never trained on) instead of running
    # a fixed length.
    held_out: Mapping[str, np.ndarray] | None = None
    stop_rule: Any = None
    progress: bool = False


@dataclasses.dataclass
class MethodOutput:
    """A method's result: ``seconds`` of wall-clock time (the RTE), of which ``compile_seconds``
    were JAX compiling programs (``imu_jax._compile_clock``)."""
    params: PyTree
    state: PyTree
    seconds: float
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Method:
    """One unlearning method behind the shared interface.

    Attributes:
      name: registry key, e.g. ``"imu"``.
      needs: the data it uses (``FORGET_ONLY``, ``FORGET_AND_ORIGINAL``, ...).
      summary: one line for tables.
      run: ``run(task, hparams, seed) -> MethodOutput``.
      defaults: hyperparameters used when none are given.
      grid: ``{name: [values]}``, the tuning grid (its Cartesian product); ``{}`` = nothing to tune.
      reference: True for Retrain / Fine-tune, reference points rather than competitors.
      check: optional ``check(hparams)`` raising ``ValueError`` for values ``run`` would refuse
        so that a bad value is reported before any model is trained (``imu-jax run`` calls it on
        every value given).
    """

    name: str
    needs: str
    summary: str
    run: Callable[[UnlearnTask, dict, int], MethodOutput]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    reference: bool = False
    check: Callable[[Mapping[str, Any]], Any] | None = None

    def hparams(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides`` (unknown names are an error)."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ValueError(f"method {self.name!r} has no hyperparameter(s) {unknown}; "
                             f"it takes {sorted(self.defaults)}.")
        return {**self.defaults, **overrides}

    def validate(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The hyperparameters ``run`` would get, or the ``ValueError`` it would raise for one of
        them, without running: the shared ``bn_mode`` / ``optimizer`` values, then ``check``.

        >>> from imu_jax.methods import get_method
        >>> get_method("imu").validate({"top_fraction": 2})
        Traceback (most recent call last):
        ...
        ValueError: top_fraction must be in (0, 1], got 2.
        """
        hparams = self.hparams(overrides)
        if "bn_mode" in hparams:
            check_bn_mode(hparams["bn_mode"])
        if "optimizer" in hparams and hparams["optimizer"] not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {hparams['optimizer']!r}.")
        if self.check is not None:
            self.check(hparams)
        return hparams


def require(task: UnlearnTask, field: str, method: str) -> Any:
    """``task.<field>``, or a clear error naming the method that needs it."""
    value = getattr(task, field)
    if value is None:
        raise ValueError(f"method {method!r} needs task.{field}, which was not given.")
    return value


def step_schedule(learning_rate: float, total_steps: int, milestones: Sequence[float] = (),
                  gamma: float = 0.1) -> optax.Schedule:
    """Piecewise-constant lr: × ``gamma`` at each fraction ``milestones`` of ``total_steps``.

    >>> schedule = step_schedule(1.0, 10, (0.5,))
    >>> round(float(schedule(4)), 6), round(float(schedule(5)), 6)
    (1.0, 0.1)
    """
    boundaries = {max(1, int(round(f * total_steps))): gamma for f in milestones if 0 < f < 1}
    return optax.piecewise_constant_schedule(learning_rate, boundaries)


def make_sgd(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
             weight_decay: float = 5e-4, optimizer: str = "sgd") -> optax.GradientTransformation:
    """SGD + momentum with coupled weight decay (PyTorch semantics), or AdamW."""
    if optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if optimizer != "sgd":
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}.")
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(learning_rate, momentum=momentum or None))


def make_step(loss_fn: Callable, tx: optax.GradientTransformation, *, train_mode: bool = False):
    """The jitted step ``(params, opt_state, state, batch) -> (params, opt_state, state)`` of the
    method loops: one gradient of ``loss_fn(params, state, batch)`` through ``tx``. With
    ``train_mode`` the loss returns ``(loss, new_state)`` and the state is carried.

    >>> import jax.numpy as jnp
    >>> step = make_step(lambda p, s, b: jnp.sum((p - b) ** 2), optax.sgd(0.25))
    >>> params, _, _ = step(jnp.zeros(2), optax.sgd(0.25).init(jnp.zeros(2)), {}, jnp.ones(2))
    >>> params.tolist()
    [0.5, 0.5]
    """

    @jax.jit
    def step(params, opt_state, state, batch):
        if train_mode:
            grads, state = jax.grad(loss_fn, has_aux=True)(params, state, batch)
        else:
            grads = jax.grad(loss_fn)(params, state, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state

    return step


def gradient_loop(model, params: PyTree, state: PyTree, arrays: Mapping[str, np.ndarray],
                  loss_fn: Callable[[PyTree, PyTree, dict], jax.Array], *, learning_rate: float,
                  epochs: int, batch_size: int, seed: int, momentum: float = 0.9,
                  weight_decay: float = 5e-4, optimizer: str = "sgd",
                  max_steps: int | None = None, milestones: Sequence[float] = (),
                  train_mode: bool = False, on_step=None, return_state: bool = False,
                  monitor: "monitor_lib.Monitor | None" = None) -> tuple[PyTree, int]:
    """Minimises ``loss_fn(params, state, batch)`` over shuffled mini-batches of ``arrays``, all
    parameters trainable. The lr is constant unless ``milestones`` (fractions of the steps where
    it is multiplied by 0.1) are given. Returns ``(params, steps)``.

    Model state: fixed (inference mode) by default. With ``train_mode=True`` ``loss_fn`` returns
    ``(loss, new_state)`` (e.g. :func:`train_mode_loss`: BatchNorm on batch statistics, running
    statistics updated) and the state is carried from step to step; ``return_state=True`` then
    returns ``(params, state, steps)``. ``on_step(step, params, state)`` runs after every step.

    ``monitor`` (an :class:`imu_jax.unlearning.monitor.Monitor`, e.g. from :func:`monitor_for`) decides
    the length instead: the loop runs up to its rule's cap at a constant lr and stops when the
    rule says so. Every loop is guarded against divergence (a non-finite parameter rolls back to
    the last finite step with a ``DivergenceWarning``); the monitor's ``result()`` says why it
    stopped.

    >>> import jax.numpy as jnp, numpy as np
    >>> loss = lambda p, s, b: jnp.mean((b["x"] * p["w"] - b["y"]) ** 2)
    >>> data = {"x": np.ones(8, np.float32), "y": np.full(8, 2.0, np.float32)}
    >>> p, steps = gradient_loop(None, {"w": jnp.zeros(())}, {}, data, loss, learning_rate=0.1,
    ...                          epochs=20, batch_size=4, seed=0, momentum=0.0, weight_decay=0.0)
    >>> steps, round(float(p["w"]), 2)
    (40, 2.0)
    """
    del model
    n = len(next(iter(arrays.values())))
    rng = np.random.default_rng(seed)
    if monitor is not None and monitor.monitoring:  # the rule's cap, constant lr
        per_epoch = -(-n // batch_size)
        cap = monitor.rule.cap(per_epoch)
        max_steps = min(cap, max_steps) if max_steps else cap
        epochs, milestones = -(-max_steps // per_epoch), ()
    monitor = monitor if monitor is not None else monitor_lib.Monitor.fixed()
    plan = []
    for _ in range(epochs):
        order = rng.permutation(n)
        plan += [order[i:i + batch_size] for i in range(0, n, batch_size)]
    plan = plan[:max_steps] if max_steps else plan
    tx = make_sgd(step_schedule(learning_rate, len(plan), milestones), momentum=momentum,
                  weight_decay=weight_decay, optimizer=optimizer)
    opt_state = tx.init(params)

    step = make_step(loss_fn, tx, train_mode=train_mode)
    done = monitor.start(params, state, total_steps=len(plan))
    for i, idx in enumerate(plan):
        if done:
            break
        params, opt_state, state = step(params, opt_state, state,
                                        {k: v[idx] for k, v in arrays.items()})
        if on_step is not None:
            on_step(i + 1, params, state)
        done = monitor.after_step(i + 1, params, state)
    monitor.finish(len(plan))
    params, state = monitor.params_to_return(params, state)
    if return_state:
        return jax.block_until_ready(params), state, monitor.steps
    return jax.block_until_ready(params), monitor.steps


def monitor_for(task: "UnlearnTask", label: str = "") -> "monitor_lib.Monitor":
    """The monitor a method's loop should use for ``task``: the stopping rule's over
    ``task.forget`` and ``task.held_out`` when ``task.stop_rule`` is set, else
    ``monitor_lib.Monitor.fixed()`` (fixed length, divergence guard only). Either way the method
    hands it to :func:`stop_info`, so a fixed-length run that goes non-finite is recorded as
    ``stop_reason="diverged"`` (``diverged: True``, ``stopped_at`` = the step that went
    non-finite, ``steps`` = the step rolled back to) exactly as a monitored one.

    >>> task = UnlearnTask(model=None, params={}, state={}, forget={}, num_classes=2)
    >>> monitor = monitor_for(task)
    >>> monitor.monitoring, monitor.rule.eval_every
    (False, 1)
    """
    if task.stop_rule is None:
        return monitor_lib.Monitor.fixed()
    return monitor_lib.Monitor(task.model, task.forget, require(task, "held_out", label or "rule"),
                            task.stop_rule, num_classes=task.num_classes, progress=task.progress,
                            label=label)


def stop_info(monitor: "monitor_lib.Monitor | None", steps: int) -> dict[str, Any]:
    """What a method records about its loop's length: ``steps`` (those handed back) and the
    monitor's summary (``stop_reason`` — ``"fixed"`` or ``"diverged"`` for a fixed-length run —
    ``stopped_at``, ``diverged``, ``cap``, and when monitored ``curve``, ...).

    >>> stop_info(None, 5)
    {'steps': 5}
    >>> info = stop_info(monitor_lib.Monitor.fixed(), 0)
    >>> info["steps"], info["diverged"]
    (0, False)
    """
    return {"steps": int(steps)} if monitor is None else {"steps": int(steps),
                                                          **monitor.result()}


def majority_rate(labels: np.ndarray) -> float:
    """The fraction of ``labels`` (class ids; negative = padding, ignored) that are the most
    frequent class: the accuracy of a model that predicts one class for everything.

    >>> majority_rate(np.array([0, 1, 1, 2])), majority_rate(np.array([[3, 3, -1]]))
    (0.5, 1.0)
    """
    labels = np.asarray(labels).ravel()
    labels = labels[labels >= 0]
    if labels.size == 0:
        raise ValueError("majority_rate needs at least one (non-padding) label.")
    return float(np.bincount(labels.astype(np.int64)).max() / labels.size)


def is_collapsed(test_accuracy: float, test_labels: np.ndarray,
                 num_classes: int | None = None) -> bool:
    """True when a model's test accuracy (TA) is below twice the majority-class rate of the test
    split it was measured on (``test_labels``): the model is no better than about two constant
    predictors, whatever it forgot. Report such a run as collapsed rather than as unlearning.

    On a balanced 10-class split the bar is 20 %; after forgetting one class of CIFAR-10, TA is
    measured on the 9 others and the bar is 22.2 % (a constant predictor scores 11.1 %).

    A test split of one class (forgetting a subclass: TA is measured on its siblings, which share
    one coarse label) would put that bar at 200 % and mark every model: there the bar is twice
    chance over the model's ``num_classes`` outputs (10 % for CIFAR-20), which a model that
    predicts some other class for everything falls under. ``num_classes`` is required then.

    >>> labels = np.repeat(np.arange(9), 1000)
    >>> is_collapsed(0.111, labels), is_collapsed(0.77, labels), is_collapsed(0.222, labels)
    (True, False, True)
    >>> siblings = np.full(200, 19)
    >>> is_collapsed(0.57, siblings, num_classes=20), is_collapsed(0.0, siblings, num_classes=20)
    (False, True)
    """
    rate = majority_rate(test_labels)
    if rate == 1.0:
        if not num_classes:
            raise ValueError("is_collapsed: the test split holds a single class, so its majority "
                             "rate (100 %) says nothing; pass num_classes, the model's outputs.")
        rate = 1.0 / num_classes
    return bool(float(test_accuracy) < 2.0 * rate)


def model_loss(model, params, state, x, y) -> jax.Array:
    """Mean cross-entropy of a batch, inference mode."""
    logits, _ = model.apply(params, state, x, train=False)
    return jnp.mean(batch_loss(logits, y))


def train_mode_loss(model, params, state, x, y, *, sign: float = 1.0
                    ) -> tuple[jax.Array, PyTree]:
    """``(sign × mean cross-entropy, new_state)`` with the model in train mode (BatchNorm on batch
    statistics, running statistics updated), as ``model.train()`` in the reference codes."""
    logits, new_state = model.apply(params, state, x, train=True)
    return sign * jnp.mean(batch_loss(logits, y)), new_state


# BatchNorm during a gradient baseline's update: "train" (batch statistics, running statistics
# updated: model.train() in SalUn's and Boundary Shrink's code) or "frozen" (inference mode).
BN_MODES = ("train", "frozen")


def check_bn_mode(bn_mode: str) -> bool:
    """``True`` for ``"train"``; a ``ValueError`` for anything but ``BN_MODES``.

    >>> check_bn_mode("train"), check_bn_mode("frozen")
    (True, False)
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}.")
    return bn_mode == "train"


def ce_loop(model, task: UnlearnTask, arrays: Mapping[str, np.ndarray], hparams: Mapping, seed: int,
            *, sign: float = 1.0, label: str = "") -> tuple[PyTree, PyTree, dict]:
    """``gradient_loop`` on ``sign`` × the mean cross-entropy of ``arrays`` (``{"x", "y"}``),
    BatchNorm per ``hparams["bn_mode"]``; returns ``(params, state, info)`` for :func:`timed`."""
    hparams = dict(hparams)
    train_mode = check_bn_mode(hparams.pop("bn_mode", "frozen"))
    if train_mode:
        loss = lambda p, s, b: train_mode_loss(model, p, s, b["x"], b["y"], sign=sign)
    else:
        loss = lambda p, s, b: sign * model_loss(model, p, s, b["x"], b["y"])
    monitor = monitor_for(task, label)
    params, state, steps = gradient_loop(model, task.params, task.state, arrays, loss, seed=seed,
                                         train_mode=train_mode, on_step=task.on_step,
                                         return_state=True, monitor=monitor, **hparams)
    return params, state, {**stop_info(monitor, steps),
                           "bn_mode": "train" if train_mode else "frozen"}


def xy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"x", "y"}`` from a split dict."""
    x, y = input_and_labels(arrays)
    return {"x": x, "y": y}


def timed(fn: Callable[[], tuple[PyTree, PyTree, dict]]) -> MethodOutput:
    """Runs ``fn() -> (params, state, info)`` and records its wall-clock seconds and the part
    of them spent compiling."""
    with _compile_clock.compile_clock() as clock:
        start = time.perf_counter()
        params, state, info = fn()
        jax.block_until_ready(params)
        seconds = time.perf_counter() - start
    return MethodOutput(params=params, state=state, seconds=seconds, info=info,
                        compile_seconds=min(seconds, clock.seconds_since(start)))
