"""Many models at once: N training runs that differ only in their seed, as ONE jitted program.

The per-example forgetting evaluations (:mod:`imu_jax.lab.forgetting_score`) need N original and
N retrained models per setting (N ≥ 32). Training them one after another pays N compilations'
worth of dispatch, N host-side batch pipelines and N sets of small kernels; here the N parameter
sets are stacked on a leading axis and ONE ``jax.jit`` program, ``jax.vmap`` over the seeds of the
*existing* single-model step (:func:`imu_jax.train.make_train_step`, so the loss, optimizer and
schedule are the same code), trains all N: called once per step (``mode="host"``, the default)
or once for the whole run under ``lax.scan`` (``mode="scan"``; slow for convolutions on XLA:CPU,
see :class:`EnsemblePlan`).

Equal to a loop over seeds of the single-model trainer, by construction:

* initialisation: seed s's parameters are those of ``build_model(cfg, splits, seed=s)`` (the
  models' ``nnx.Rngs(seed)``), built once per seed on the host and stacked;
* batch order: seed s's batches are the rows that :func:`imu_jax.data.batches` yields for
  ``(seed=s, epoch=e)`` with ``train_model``'s ``drop_remainder = n >= batch_size`` (the index
  arrays are produced *by* ``batches`` on ``arange(n)``, so any change there carries over); the
  data live on the device and each step gathers its rows inside the program;
* optimizer: ``make_optimizer(cfg, steps_per_epoch)`` of the trained split (so a milestone schedule
  counts the retain split's epochs for retrained models, as ``train_model(retrain=True)`` does).

``tests/test_ensemble.py`` checks the vmapped parameters against :func:`train_single` (the loop
body of ``train_model`` without its per-epoch evaluation; equal to ``train_model``'s parameters
bit for bit) per seed: to 1e-5 at float32 after a few steps, and to 1e-12 in float64. (Batched
and unbatched kernels round float32 differently, ~1e-7 per step; training amplifies that once it
leaves its initial plateau: after 50 steps of the digits CNN recipe the parameters of the two
paths differ by up to 1e-3–1e-1 in float32 while the float64 runs still agree to ~1e-13.)

Not supported: ``augment=True`` (``train_model`` augments batches on the host with a per-step
NumPy generator; the digits and MNIST-1D recipes do not augment) and meshes.

Examples:
  >>> import tempfile
  >>> from imu_jax.data import make_splits
  >>> splits = make_splits("digits", "random:0.1", data_dir=tempfile.mkdtemp())
  >>> cfg = {"model": "mlp", "model_options": {"hidden": (8,)}, "epochs": 1}
  >>> ens = train_ensemble(cfg, splits, seeds=[0, 1, 2], retrain=True, max_steps=3)
  >>> ens.losses.shape, ens.num_models
  ((3, 3), 3)
  >>> statistics(ens, splits.forget).shape  # [models, forget examples]
  (3, 144)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.data import Splits, batches, num_batches
from imu_jax.lab.forgetting_score import logit_scaled_confidence
from imu_jax.models import FunctionalModel
from imu_jax.train import TrainConfig, build_model, make_optimizer, make_train_step


def _config(cfg: TrainConfig | dict) -> TrainConfig:
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    if cfg.augment:
        raise NotImplementedError(
            "augment=True is not supported by the vmapped trainer (train_model augments on the "
            "host per step); the digits and MNIST-1D recipes do not augment.")
    return cfg


def _schedule(cfg: TrainConfig, data: dict) -> tuple[int, bool, int]:
    """``(n, drop_remainder, steps_per_epoch)`` exactly as ``train_model`` derives them."""
    n = len(data["label"])
    drop = n >= cfg.batch_size
    return n, drop, num_batches(n, cfg.batch_size, drop_remainder=drop)


def _total_steps(cfg: TrainConfig, steps_per_epoch: int, max_steps: int | None) -> int:
    total = cfg.epochs * steps_per_epoch
    return total if max_steps is None else min(total, int(max_steps))


def batch_indices(cfg: TrainConfig | dict, splits: Splits, seed: int, *, retrain: bool = False,
                  max_steps: int | None = None) -> np.ndarray:
    """``[steps, batch]`` row indices of ``train_model``'s batches for ``seed``, epochs in order.

    >>> import tempfile
    >>> from imu_jax.data import make_splits
    >>> s = make_splits("digits", data_dir=tempfile.mkdtemp())
    >>> batch_indices({"epochs": 2, "batch_size": 100}, s, seed=3).shape  # 1437 // 100 = 14 / epoch
    (28, 100)
    """
    cfg = _config(cfg)
    data = splits.retrain_data if retrain else splits.train
    n, drop, per_epoch = _schedule(cfg, data)
    total = _total_steps(cfg, per_epoch, max_steps)
    rows: list[np.ndarray] = []
    for epoch in range(cfg.epochs):
        if len(rows) >= total:
            break
        for b in batches({"i": np.arange(n)}, cfg.batch_size, seed=seed, epoch=epoch,
                         drop_remainder=drop, process_index=0, process_count=1):
            rows.append(b["i"])
    if len({len(r) for r in rows}) > 1:
        # not reachable: drop_remainder = n >= batch_size leaves one batch size
        raise ValueError("Batches of unequal size cannot be stacked.")
    return np.stack(rows[:total])


def train_single(cfg: TrainConfig | dict, splits: Splits, seed: int = 0, *, retrain: bool = False,
                 max_steps: int | None = None, step_fn: Callable | None = None, dtype=None):
    """The loop of :func:`imu_jax.train.train_model` for one seed, without its per-epoch
    evaluation, stopping after ``max_steps``: the reference the vmapped trainer must equal.

    ``step_fn``: a step from :func:`imu_jax.train.make_train_step` to reuse (its model must have
    the same architecture; one compilation then serves every seed). ``dtype``: as in
    :func:`prepare_ensemble`. Returns ``(fm, params, state, losses [steps])``.
    """
    cfg = _config(cfg)
    data = splits.retrain_data if retrain else splits.train
    fm = build_model(cfg, splits, seed=seed)
    n, drop, per_epoch = _schedule(cfg, data)
    total = _total_steps(cfg, per_epoch, max_steps)
    tx = make_optimizer(cfg, per_epoch)
    params, state = jax.tree.map(jnp.copy, (fm.params, fm.state))  # steps donate their inputs
    params, state = _cast((params, state), dtype)
    if dtype is not None:
        data = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
                for k, v in data.items()}
    opt_state = tx.init(params)
    if step_fn is None:
        step_fn = make_train_step(fm, tx, label_smoothing=cfg.label_smoothing)
    losses, done = [], 0
    for epoch in range(cfg.epochs):
        for batch in batches(data, cfg.batch_size, seed=seed, epoch=epoch, drop_remainder=drop):
            if done >= total:
                break
            params, state, opt_state, loss = step_fn(params, state, opt_state, batch)
            losses.append(loss)
            done += 1
    return fm, params, state, jnp.stack(losses) if losses else jnp.zeros((0,))


def make_single_step(cfg: TrainConfig | dict, splits: Splits, *, retrain: bool = False) -> Callable:
    """The jitted step ``train_model`` would build (:func:`imu_jax.train.make_train_step` for the
    seed-0 model and the split's optimizer); pass it as ``train_single(..., step_fn=)`` to compile
    once for a loop over seeds (the step depends on the architecture, not on the seed)."""
    cfg = _config(cfg)
    data = splits.retrain_data if retrain else splits.train
    _, _, per_epoch = _schedule(cfg, data)
    return make_train_step(build_model(cfg, splits, seed=0), make_optimizer(cfg, per_epoch),
                           label_smoothing=cfg.label_smoothing)


def _stack(trees: Sequence):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, i: int):
    """Model ``i``'s parameters (or state) from a stacked tree."""
    return jax.tree.map(lambda x: x[i], tree)


MODES = ("host", "scan")


def _cast(tree, dtype):
    """Floating leaves of ``tree`` (params, state, data) to ``dtype``; ``None`` leaves it as is."""
    if dtype is None:
        return tree
    if jnp.zeros((), dtype).dtype != jnp.dtype(dtype):
        raise ValueError(f"dtype {dtype} needs 64-bit JAX: run under `with jax.enable_x64(True):`.")

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


@dataclasses.dataclass
class EnsemblePlan:
    """Everything the one program needs, in two executions of it:

    * ``step``: ONE jitted program, ``vmap`` over the models of the training step, that gathers
      each model's batch from the on-device data by index; ``mode="host"`` calls it once per
      step (one dispatch per step for all N models);
    * ``scan``: the same under ``lax.scan`` over all steps, one call for the whole training
      (``mode="scan"``). XLA:CPU runs convolutions inside the loop far slower than the same step
      at top level (35x for the digits CNN on 2 cores, ``experiments/bench_ensemble.py``), so
      "host" is the default; both give the same parameters.

    Both donate ``(params, state, opt_state)``: :meth:`execute` starts from fresh copies; for
    ahead-of-time compilation use ``plan.step.lower(*plan.fresh_args()[:4], plan.indices[0])`` or
    ``plan.scan.lower(*plan.fresh_args())``.
    """

    fm: FunctionalModel
    seeds: tuple[int, ...]
    step: Callable
    scan: Callable
    params: dict
    state: dict
    opt_state: object
    data: dict
    indices: jax.Array  # [steps, models, batch]

    def fresh_args(self):
        """``(params, state, opt_state, data, indices)`` with new buffers for the donated three
        (copied through the host: no device op, so nothing to compile on first use)."""
        host = jax.device_get((self.params, self.state, self.opt_state))
        return (*jax.device_put(host), self.data, self.indices)

    def execute(self, mode: str = "host", compiled: Callable | None = None):
        """Trains from the initial parameters: ``(params, state, opt_state, losses [steps,
        models])``. ``compiled``: an AOT-compiled ``step`` (host) or ``scan`` to use instead."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        params, state, opt_state, data, indices = self.fresh_args()
        if mode == "scan":
            return (compiled or self.scan)(params, state, opt_state, data, indices)
        fn = compiled or self.step
        losses = []
        for idx in np.asarray(indices):  # host rows: no device slicing op per step
            params, state, opt_state, loss = fn(params, state, opt_state, data, idx)
            losses.append(loss)
        stacked = np.stack(jax.device_get(losses)) if losses else np.zeros((0, len(self.seeds)))
        return params, state, opt_state, jnp.asarray(stacked)


def prepare_ensemble(cfg: TrainConfig | dict, splits: Splits, seeds: Sequence[int], *,
                     retrain: bool = False, max_steps: int | None = None,
                     dtype=None) -> EnsemblePlan:
    """Builds the stacked initial parameters, the per-seed batch indices and the jitted programs
    (``vmap`` over models of :func:`imu_jax.train.make_train_step`, alone or under ``lax.scan``).
    ``dtype`` (e.g. ``"float64"`` under ``jax.enable_x64(True)``) casts parameters and data, for
    exact comparisons; ``None`` trains in the models' own dtype (float32) as ``train_model``
    does."""
    cfg = _config(cfg)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds is empty.")
    data = splits.retrain_data if retrain else splits.train
    _, _, per_epoch = _schedule(cfg, data)
    tx = make_optimizer(cfg, per_epoch)
    models = [build_model(cfg, splits, seed=s) for s in seeds]
    fm = models[0]
    params = _cast(_stack([m.params for m in models]), dtype)
    state = _cast(_stack([m.state for m in models]), dtype)
    opt_state = jax.vmap(tx.init)(params)
    indices = np.stack([batch_indices(cfg, splits, s, retrain=retrain, max_steps=max_steps)
                        for s in seeds], axis=1)  # [steps, models, batch]
    vstep = jax.vmap(make_train_step(fm, tx, label_smoothing=cfg.label_smoothing))

    def one_step(params, state, opt_state, data, idx):  # idx: [models, batch]
        batch = jax.tree.map(lambda v: v[idx], data)  # [models, batch, ...]
        return vstep(params, state, opt_state, batch)

    def all_steps(params, state, opt_state, data, indices):
        def body(carry, idx):
            p, s, o, loss = one_step(*carry, data, idx)
            return (p, s, o), loss

        (params, state, opt_state), losses = jax.lax.scan(body, (params, state, opt_state),
                                                          indices)
        return params, state, opt_state, losses

    return EnsemblePlan(fm=fm, seeds=seeds, step=jax.jit(one_step, donate_argnums=(0, 1, 2)),
                        scan=jax.jit(all_steps, donate_argnums=(0, 1, 2)),
                        params=params, state=state, opt_state=opt_state,
                        data=_cast({k: jnp.asarray(v) for k, v in data.items()}, dtype),
                        indices=jnp.asarray(indices, jnp.int32))


@dataclasses.dataclass
class Ensemble:
    """N trained models. ``params``/``state`` are stacked (leading axis = model, in ``seeds``
    order); ``losses`` is ``[models, steps]``; ``fm`` applies any one of them (one
    architecture)."""

    fm: FunctionalModel
    seeds: tuple[int, ...]
    params: dict
    state: dict
    losses: jax.Array
    retrain: bool

    @property
    def num_models(self) -> int:
        return len(self.seeds)


def train_ensemble(cfg: TrainConfig | dict, splits: Splits, seeds: Sequence[int], *,
                   retrain: bool = False, max_steps: int | None = None, mode: str = "host",
                   dtype=None) -> Ensemble:
    """Trains one model per seed (on ``splits.train``, or ``splits.retrain_data`` when
    ``retrain``) with one jitted, vmapped program (``mode`` "host" or "scan": see
    :class:`EnsemblePlan`); model i equals ``train_single(cfg, splits, seeds[i])`` (to float32
    rounding, which training amplifies over many steps; exactly in float64).

    ``mode="loop"`` instead loops :func:`train_single` over the seeds with one shared compiled
    step (same results, stacked the same way): on CPU, vmapped *convolutions* become grouped
    convolutions that XLA:CPU runs slower than N separate ones (digits CNN recipe: the loop is
    2.6x faster; the vmapped program wins for MLPs, 3.2x; ``experiments/bench_ensemble.py``)."""
    if mode not in (*MODES, "loop"):
        raise ValueError(f"mode must be one of {(*MODES, 'loop')}, got {mode!r}.")
    if mode == "loop":
        step = make_single_step(cfg, splits, retrain=retrain)
        runs = [train_single(cfg, splits, s, retrain=retrain, max_steps=max_steps, step_fn=step,
                             dtype=dtype) for s in seeds]
        return Ensemble(fm=runs[0][0], seeds=tuple(int(s) for s in seeds),
                        params=_stack([r[1] for r in runs]), state=_stack([r[2] for r in runs]),
                        losses=jnp.stack([r[3] for r in runs]), retrain=retrain)
    plan = prepare_ensemble(cfg, splits, seeds, retrain=retrain, max_steps=max_steps, dtype=dtype)
    params, state, _, losses = plan.execute(mode)
    return Ensemble(fm=plan.fm, seeds=plan.seeds, params=params, state=state,
                    losses=jnp.swapaxes(losses, 0, 1), retrain=retrain)


def ensemble_logits(fm: FunctionalModel, params, state, x, *, batch_size: int = 1000) -> jax.Array:
    """``[models, n, classes]`` logits of every stacked model on inputs ``x`` ``[n, ...]``."""
    apply = jax.jit(jax.vmap(lambda p, s, xb: fm.apply(p, s, xb)[0], in_axes=(0, 0, None)))
    x = jnp.asarray(x)
    outs = [apply(params, state, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return jnp.concatenate(outs, axis=1)


def statistics(ensemble: Ensemble, arrays: dict, *, batch_size: int = 1000) -> np.ndarray:
    """``[models, n]`` logit-scaled confidences of the true labels of ``arrays`` (e.g. the forget
    set): the input of :func:`imu_jax.lab.forgetting_score.forgetting_quality` and ``ulira``."""
    x = arrays["tokens"] if "tokens" in arrays else arrays["image"]
    logits = ensemble_logits(ensemble.fm, ensemble.params, ensemble.state, x,
                             batch_size=batch_size)
    return logit_scaled_confidence(np.asarray(logits), np.asarray(arrays["label"])[None, :])


__all__ = [
    "Ensemble",
    "EnsemblePlan",
    "batch_indices",
    "ensemble_logits",
    "MODES",
    "make_single_step",
    "prepare_ensemble",
    "statistics",
    "train_ensemble",
    "train_single",
    "unstack",
]
