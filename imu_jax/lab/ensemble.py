"""Many models at once: N training runs that differ only in their seed, as ONE jitted program.

The per-example forgetting evaluations (:mod:`imu_jax.lab.forgetting_score`) need N original and
N retrained models per setting (N ≥ 32). Training them one after another pays N compilations'
worth of dispatch, N host-side batch pipelines and N sets of small kernels; here the N parameter
sets are stacked on a leading axis and one ``jax.jit`` program runs ``lax.scan`` over the steps of
``jax.vmap`` over the seeds of the *existing* single-model step
(:func:`imu_jax.train.make_train_step`, so the loss, optimizer and schedule are the same code).

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
bit for bit) per seed to 1e-5 at float32.

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
    """``[steps, batch]`` row indices of ``train_model``'s batches for ``seed`` (all epochs in order).

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
        raise ValueError("Batches of unequal size cannot be stacked.")  # not reachable: drop = n >= bs
    return np.stack(rows[:total])


def train_single(cfg: TrainConfig | dict, splits: Splits, seed: int = 0, *, retrain: bool = False,
                 max_steps: int | None = None, step_fn: Callable | None = None):
    """The loop of :func:`imu_jax.train.train_model` for one seed, without its per-epoch
    evaluation, stopping after ``max_steps``: the reference the vmapped trainer must equal.

    ``step_fn``: a step from :func:`imu_jax.train.make_train_step` to reuse (its model must have
    the same architecture; one compilation then serves every seed). Returns
    ``(fm, params, state, losses [steps])``.
    """
    cfg = _config(cfg)
    data = splits.retrain_data if retrain else splits.train
    fm = build_model(cfg, splits, seed=seed)
    n, drop, per_epoch = _schedule(cfg, data)
    total = _total_steps(cfg, per_epoch, max_steps)
    tx = make_optimizer(cfg, per_epoch)
    params, state = jax.tree.map(jnp.copy, (fm.params, fm.state))  # steps donate their inputs
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


@dataclasses.dataclass
class EnsemblePlan:
    """Everything the one program needs; ``run(*args)`` returns ``(params, state, opt_state,
    losses [steps, models])``. ``args`` are donated: call :meth:`fresh_args` for each run.

    ``run.lower(*plan.fresh_args()).compile()`` compiles it ahead of time (the benchmark times
    compilation this way).
    """

    fm: FunctionalModel
    seeds: tuple[int, ...]
    run: Callable
    params: dict
    state: dict
    opt_state: object
    data: dict
    indices: jax.Array  # [steps, models, batch]

    def fresh_args(self):
        copy = jax.tree.map(jnp.copy, (self.params, self.state, self.opt_state))
        return (*copy, self.data, self.indices)


def prepare_ensemble(cfg: TrainConfig | dict, splits: Splits, seeds: Sequence[int], *,
                     retrain: bool = False, max_steps: int | None = None) -> EnsemblePlan:
    """Builds the stacked initial parameters, the per-seed batch indices and the jitted program
    (``lax.scan`` over steps of ``vmap`` over models of :func:`imu_jax.train.make_train_step`)."""
    cfg = _config(cfg)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds is empty.")
    data = splits.retrain_data if retrain else splits.train
    _, _, per_epoch = _schedule(cfg, data)
    tx = make_optimizer(cfg, per_epoch)
    models = [build_model(cfg, splits, seed=s) for s in seeds]
    fm = models[0]
    params = _stack([m.params for m in models])
    state = _stack([m.state for m in models])
    opt_state = jax.vmap(tx.init)(params)
    indices = np.stack([batch_indices(cfg, splits, s, retrain=retrain, max_steps=max_steps)
                        for s in seeds], axis=1)  # [steps, models, batch]
    step = make_train_step(fm, tx, label_smoothing=cfg.label_smoothing)
    vstep = jax.vmap(step)

    def program(params, state, opt_state, data, indices):
        def body(carry, idx):  # idx: [models, batch]
            batch = jax.tree.map(lambda v: v[idx], data)  # [models, batch, ...]
            p, s, o, loss = vstep(*carry, batch)
            return (p, s, o), loss

        (params, state, opt_state), losses = jax.lax.scan(body, (params, state, opt_state),
                                                          indices)
        return params, state, opt_state, losses

    return EnsemblePlan(fm=fm, seeds=seeds, run=jax.jit(program, donate_argnums=(0, 1, 2)),
                        params=params, state=state, opt_state=opt_state,
                        data={k: jnp.asarray(v) for k, v in data.items()},
                        indices=jnp.asarray(indices, jnp.int32))


@dataclasses.dataclass
class Ensemble:
    """N trained models. ``params``/``state`` are stacked (leading axis = model, in ``seeds``
    order); ``losses`` is ``[models, steps]``; ``fm`` applies any one of them (same architecture)."""

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
                   retrain: bool = False, max_steps: int | None = None) -> Ensemble:
    """Trains one model per seed (on ``splits.train``, or ``splits.retrain_data`` when
    ``retrain``) in one jitted, vmapped program; each equals ``train_single(cfg, splits, seed)``."""
    plan = prepare_ensemble(cfg, splits, seeds, retrain=retrain, max_steps=max_steps)
    params, state, _, losses = plan.run(*plan.fresh_args())
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
    "make_single_step",
    "prepare_ensemble",
    "statistics",
    "train_ensemble",
    "train_single",
    "unstack",
]
