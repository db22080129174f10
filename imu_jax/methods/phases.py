"""A training loop for methods whose epochs are more than one shuffled pass over one data set.

:func:`base.gradient_loop` covers "minimise one loss over shuffled mini-batches of one array
dict". Some published methods need more, and :func:`phased_loop` gives it with ONE optimizer
(momentum carries across phases, as with the authors' single ``torch.optim`` object):

* several phases per epoch, each with its own data, batch size and loss, some active only in the
  first epochs (SCRUB: max-steps on D_f in the first ``msteps`` epochs, min-steps on D_r in all);
* a loss that depends on the epoch (ℓ1-sparse: the ℓ1 weight decays linearly per epoch);
* fresh randomness per step (JiT: new input noise at every step);
* batches that pair two data sets in the authors' order (SCAR: each forget batch with several
  auxiliary batches).

Every batch dict handed to a loss gets two extra int32 scalars, ``"epoch"`` and ``"step"``.
The learning rate is multiplied by ``lr_decay_rate`` at each epoch listed in
``lr_decay_epochs`` (epoch-based, like the authors' schedulers) and by 0.1 at each fraction
``milestones`` of the planned steps (the shared schedule knob of every gradient method, default
constant). The loop protocol is :func:`base.gradient_loop`'s: the model state is fixed (inference
mode) unless ``train_mode`` (then a loss returns ``(loss, new_state)`` and the state is carried,
see :func:`mode_loss`), ``on_step(step, params, state)`` runs after every step, and a ``monitor``
(:func:`base.monitor_for`) decides the length under the retain-free stopping rule: the loop then
runs at a constant lr (no decay, no milestones) up to the rule's cap, counted in passes over the
first epoch's steps. Every loop is guarded against divergence (``monitor_lib.Monitor.fixed``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imu_jax.methods.base import make_sgd, make_step, monitor_for, stop_info
from imu_jax.unlearning import monitor as monitor_lib


PyTree = Any
Batches = Callable[[int, np.random.Generator], Iterable[Mapping[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One part of an epoch.

    Attributes:
      loss_fn: ``loss_fn(params, state, batch) -> scalar`` (``batch`` has ``"epoch"``, ``"step"``).
      batches: ``batches(epoch, rng) -> iterable of batch dicts`` (see :func:`shuffled_batches`).
      first_epochs: the phase runs only in epochs ``0 .. first_epochs - 1``; ``None`` = every epoch.
    """

    loss_fn: Callable[[PyTree, PyTree, dict], jax.Array]
    batches: Batches
    first_epochs: int | None = None


def shuffled_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> Batches:
    """``batches`` over a fresh permutation of ``arrays``' rows each epoch (last batch partial).

    >>> data = {"x": np.arange(5)}
    >>> [b["x"].tolist() for b in shuffled_batches(data, 2)(0, np.random.default_rng(0))]
    [[2, 4], [3, 0], [1]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")

    def batches(epoch: int, rng: np.random.Generator):
        del epoch
        n = len(next(iter(arrays.values())))
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield {k: v[idx] for k, v in arrays.items()}

    return batches


def mode_loss(loss_fn: Callable[[PyTree, PyTree, dict, bool], tuple[jax.Array, PyTree]],
              train_mode: bool) -> Callable[[PyTree, PyTree, dict], Any]:
    """A loop loss from ``loss_fn(params, state, batch, train) -> (loss, new_state)``: returns
    ``(loss, new_state)`` in train mode (BatchNorm on batch statistics, state carried), the loss
    alone in inference mode.

    >>> f = mode_loss(lambda p, s, b, train: (p * 2.0, {"n": s["n"] + train}), True)
    >>> f(1.0, {"n": 0}, {})
    (2.0, {'n': 1})
    """
    if train_mode:
        return lambda params, state, batch: loss_fn(params, state, batch, True)
    return lambda params, state, batch: loss_fn(params, state, batch, False)[0]


def _count(phase: Phase) -> int:
    """Steps of one pass of ``phase`` (every batcher here yields a fixed number per epoch)."""
    return sum(1 for _ in phase.batches(0, np.random.default_rng(0)))


def phased_loop(params: PyTree, state: PyTree, phases: Sequence[Phase], *, epochs: int,
                learning_rate: float, seed: int, momentum: float = 0.9,
                weight_decay: float = 5e-4, optimizer: str = "sgd",
                max_steps: int | None = None, lr_decay_epochs: Sequence[int] = (),
                lr_decay_rate: float = 0.1, milestones: Sequence[float] = (),
                train_mode: bool = False, on_step=None, return_state: bool = False,
                monitor: "monitor_lib.Monitor | None" = None) -> tuple[PyTree, int]:
    """Runs ``epochs`` epochs; each epoch runs its active phases in order. Returns
    ``(params, steps)``, or ``(params, state, steps)`` with ``return_state=True``.

    The optimizer is :func:`base.make_sgd` (SGD + momentum with coupled decay, or AdamW), shared
    by every phase. ``max_steps`` caps the total number of steps.

    >>> loss = lambda p, s, b: jnp.mean((b["x"] * p["w"] - b["y"]) ** 2)
    >>> data = {"x": np.ones(8, np.float32), "y": np.full(8, 2.0, np.float32)}
    >>> p, steps = phased_loop({"w": jnp.zeros(())}, {}, [Phase(loss, shuffled_batches(data, 4))],
    ...                        epochs=20, learning_rate=0.1, seed=0, momentum=0.0,
    ...                        weight_decay=0.0)
    >>> steps, round(float(p["w"]), 2)
    (40, 2.0)
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    if not phases:
        raise ValueError("phases is empty: give at least one Phase.")
    counts = [_count(phase) for phase in phases]

    def active(phase, epoch):
        return phase.first_epochs is None or epoch < phase.first_epochs

    if monitor is not None and monitor.monitoring:  # the rule's cap, constant lr
        per_epoch = sum(c for phase, c in zip(phases, counts) if active(phase, 0))
        cap = monitor.rule.cap(per_epoch)
        max_steps = min(cap, max_steps) if max_steps else cap
        epochs = max_steps  # every epoch has at least one step, so the cap ends the loop
        lr_decay_epochs, milestones = (), ()
    monitor = monitor if monitor is not None else monitor_lib.Monitor.fixed()
    total = sum(c for epoch in range(epochs) for phase, c in zip(phases, counts)
                if active(phase, epoch)) if not monitor.monitoring else max_steps
    total = min(total, max_steps) if max_steps is not None else total
    boundaries = sorted(max(1, int(round(f * total))) for f in milestones if 0 < f < 1)
    rng = np.random.default_rng(seed)
    tx = optax.inject_hyperparams(make_sgd, static_args=("momentum", "optimizer"))(
        learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
        optimizer=optimizer)
    opt_state = tx.init(params)

    steps_fns = [make_step(phase.loss_fn, tx, train_mode=train_mode) for phase in phases]
    steps = 0
    done = monitor.start(params, state, total_steps=total)
    for epoch in range(epochs):
        if done or (max_steps is not None and steps >= max_steps):
            break
        decays = sum(epoch >= e for e in lr_decay_epochs)
        for phase, step in zip(phases, steps_fns):
            if done or not active(phase, epoch):
                continue
            for batch in phase.batches(epoch, rng):
                if done or (max_steps is not None and steps >= max_steps):
                    break
                fired = sum(steps >= b for b in boundaries)
                opt_state.hyperparams["learning_rate"] = jnp.asarray(
                    learning_rate * lr_decay_rate ** decays * 0.1 ** fired, jnp.float32)
                batch = {**batch, "epoch": np.int32(epoch), "step": np.int32(steps)}
                params, opt_state, state = step(params, opt_state, state, batch)
                steps += 1
                if on_step is not None:
                    on_step(steps, params, state)
                done = monitor.after_step(steps, params, state)
    monitor.finish(steps)
    params, state = monitor.params_to_return(params, state)
    steps = monitor.steps
    if return_state:
        return jax.block_until_ready(params), state, steps
    return jax.block_until_ready(params), steps


def fit_phases(task, phases: Sequence[Phase], *, label: str, seed: int, train_mode: bool,
               hparams: Mapping[str, Any]) -> tuple[PyTree, PyTree, dict]:
    """:func:`phased_loop` wired to the task the way every method's loop is: its stopping
    monitor, ``on_step`` and BatchNorm mode (each phase's loss built with :func:`mode_loss`).
    Returns ``(params, state, info)`` for ``base.timed``."""
    monitor = monitor_for(task, label)
    params, state, steps = phased_loop(
        task.params, task.state, phases, seed=seed, train_mode=train_mode,
        on_step=task.on_step, monitor=monitor, return_state=True, **hparams)
    return params, state, {**stop_info(monitor, steps),
                           "bn_mode": "train" if train_mode else "frozen"}


def one_phase_fit(task, loss_fn, batches: Batches, *, label: str, seed: int, train_mode: bool,
                  hparams: Mapping[str, Any]) -> tuple[PyTree, PyTree, dict]:
    """:func:`fit_phases` over one phase of ``loss_fn(params, state, batch, train)``."""
    return fit_phases(task, [Phase(mode_loss(loss_fn, train_mode), batches)], label=label,
                      seed=seed, train_mode=train_mode, hparams=hparams)
