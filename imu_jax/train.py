"""Training the original model (or the Retrain reference on the retain set).

``train_model`` is what the CLI, notebooks and experiments call; recipes live in
``experiments/configs/`` as ``get_config()`` files returning a dict of :class:`TrainConfig` fields.

Examples:
  >>> import tempfile
  >>> from imu_jax.data import make_splits
  >>> splits = make_splits("digits", data_dir=tempfile.mkdtemp())
  >>> cfg = TrainConfig(model="mlp", epochs=1, learning_rate=0.05, model_options={"hidden": (32,)})
  >>> fm, params, state, metrics = train_model(cfg, splits, progress=False)
  >>> metrics["test_acc"] > 0.7
  True
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from imu_jax import sharding
from imu_jax.checkpoint import write_outputs
from imu_jax._checks import check_model_fits
from imu_jax.data import Splits, batches, num_batches
from imu_jax.models import FunctionalModel, create, functional


@dataclasses.dataclass
class TrainConfig:
    """A training recipe. ``milestones`` are epochs where the learning rate is multiplied by
    ``gamma``; ``optimizer`` is "sgd" (torch-style coupled weight decay + momentum) or "adamw".

    ``schedule="onecycle"`` replaces the milestones by a linear warm-up over the first
    ``warmup_fraction`` of the steps to ``learning_rate`` and a linear decay to 0;
    ``label_smoothing`` smooths the training targets (evaluation uses the plain loss).
    """

    dataset: str = "digits"
    model: str = "mlp"
    forget: str | None = None
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = False
    eval_batch_size: int = 1000
    schedule: str = "multistep"
    warmup_fraction: float = 0.2
    label_smoothing: float = 0.0
    nesterov: bool = False
    model_options: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Builds a config from a dict, rejecting unknown keys.

        >>> TrainConfig.from_dict({"epochs": 3}).epochs
        3
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"Unknown training option(s) {sorted(unknown)}; valid: {sorted(names)}.")
        return cls(**d)


_IMAGE = {"batch_size": 32, "epochs": 20, "learning_rate": 0.05, "milestones": (10, 15)}
_MNIST = {"batch_size": 128, "epochs": 10, "learning_rate": 0.05, "milestones": (6, 8)}
_CIFAR = {"model": "resnet18", "batch_size": 256, "epochs": 182, "learning_rate": 0.1,
          "momentum": 0.9, "weight_decay": 5e-4, "milestones": (91, 136), "augment": True}
# MNIST-1D: the mnist1d package's recipe (Adam lr 1e-2, no weight decay, batch 100, 6,000 steps
# = 150 epochs of 4,000 signals); its 2x100 MLP (~68% test) and ConvBase CNN (~94%).
_MNIST1D = {"model": "cnn1d", "batch_size": 100, "epochs": 150, "optimizer": "adamw",
            "learning_rate": 1e-2, "weight_decay": 0.0}
_MNIST1D_MLP = {**_MNIST1D, "model": "mlp", "model_options": {"hidden": (100, 100)}}
# CIFAR-10 on CPU (image folders): airbench-style FastCNN at half width (stem 16, widths
# 16/32/64: 1.19 s per step of 512 on 2 cores against 3.66 s at 24, 32/64/128), 8 epochs,
# one-cycle SGD-Nesterov, label smoothing, crop + flip; experiments/configs/
# train_cifar10_fastcnn.py gives its measured cost and accuracy.
_CIFAR_CPU = {"model": "fastcnn", "model_options": {"stem": 16, "widths": (16, 32, 64)},
              "batch_size": 512, "epochs": 8, "learning_rate": 0.2,
              "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
              "warmup_fraction": 0.2, "label_smoothing": 0.2, "augment": True}
# CIFAR-100 on CPU: the same schedule, the later groups wider for 100 classes (stem 16, widths
# 16/64/128, ~1.45x the CIFAR-10 step), 12 epochs (7 reached 47.7 %, 12 reach 53.4 %);
# experiments/configs/train_cifar100_fastcnn.py gives its measured cost and accuracy. Image
# folders: pass it as ``train_config``.
_CIFAR100_CPU = {**_CIFAR_CPU, "model_options": {"stem": 16, "widths": (16, 64, 128)},
                 "epochs": 12}
_MARKOV = {"model": "transformer", "batch_size": 128, "epochs": 5, "optimizer": "adamw",
           "learning_rate": 5e-4, "weight_decay": 0.01}
RECIPES = {"digits": {"model": "cnn", **_IMAGE}, "mnist": {"model": "cnn", **_MNIST},
           "fashion_mnist": {"model": "cnn", **_MNIST}, "cifar10": _CIFAR, "cifar100": _CIFAR,
           "markov": _MARKOV, "mnist1d": _MNIST1D, "imagefolder": _CIFAR_CPU}
# Complete recipes for a (dataset, model) other than the dataset's default model.
MODEL_RECIPES = {("mnist1d", "mlp"): _MNIST1D_MLP, ("imagefolder", "resnet18"): _CIFAR,
                 ("cifar10", "fastcnn"): _CIFAR_CPU, ("cifar100", "fastcnn"): _CIFAR100_CPU}


def recipe(dataset: str, model: str | None = None) -> dict:
    """The default training recipe (a dict of :class:`TrainConfig` fields) for a dataset.

    CIFAR: the paper's ResNet-18 recipe; Markov: spec §4 (AdamW 5e-4, 5 epochs, batch 128);
    MNIST-1D: the mnist1d package's (CNN1D; ``mlp`` = its 2x100 MLP); ``imagefolder:PATH``: the
    CPU FastCNN recipe (``resnet18``: the paper's recipe); ``model="fastcnn"`` on CIFAR: the CPU one
    (on CIFAR-100 with wider later groups and 12 epochs).

    >>> recipe("cifar10")["milestones"], recipe("digits", "mlp")["model"]
    ((91, 136), 'mlp')
    >>> recipe("mnist1d", "mlp")["model_options"], recipe("imagefolder:x", "resnet18")["epochs"]
    ({'hidden': (100, 100)}, 182)
    >>> "model_options" in recipe("imagefolder:x", "mlp")  # fastcnn's options are not the MLP's
    False
    >>> cpu = recipe("cifar100", "fastcnn")
    >>> cpu["model_options"]["widths"], cpu["epochs"]
    ((16, 64, 128), 12)
    """
    base = dataset.split(":")[0] if dataset.startswith("imagefolder:") else dataset.split("/")[0]
    base = base.replace("markov_chain", "markov")
    if base not in RECIPES:
        raise ValueError(f"No recipe for dataset {dataset!r}; known: {', '.join(RECIPES)}.")
    out = {"dataset": dataset, **RECIPES[base]}
    if model is not None and model != out["model"]:
        if (base, model) in MODEL_RECIPES:
            out = {"dataset": dataset, **MODEL_RECIPES[base, model], "model": model}
        else:  # the dataset's schedule, but the options of its own model are not this model's
            out = {**{k: v for k, v in out.items() if k != "model_options"}, "model": model}
    return out


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax CE over entries with ``label >= 0`` (labels are already next-token shifted).

    >>> float(token_cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[1, -1]])))  # log 4
    1.386...
    """
    mask = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, labels, 0))
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def kl_to_transition(logits: jax.Array, tokens: jax.Array, labels: jax.Array,
                     transition: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum and count of per-token ``KL(transition[token] || softmax(logits))`` over ``label>=0``.

    >>> t = jnp.full((3, 3), 1 / 3)
    >>> s, n = kl_to_transition(jnp.zeros((1, 2, 3)), jnp.array([[0, 1]]), jnp.array([[1, -1]]), t)
    >>> float(s), int(n)
    (0.0, 1)
    """
    mask = labels >= 0
    true = transition[tokens]
    logq = jax.nn.log_softmax(logits, axis=-1)
    kl = jnp.sum(true * (jnp.log(jnp.maximum(true, 1e-30)) - logq), axis=-1)
    return jnp.sum(kl * mask), jnp.sum(mask)


def loss_fn(fm: FunctionalModel, params, state, batch, *, train: bool,
            label_smoothing: float = 0.0):
    """Mean training loss (image CE or masked token CE) and the new model state."""
    x = batch["tokens"] if "tokens" in batch else batch["image"]
    logits, new_state = fm.apply(params, state, x, train=train)
    if "tokens" in batch:
        return token_cross_entropy(logits, batch["label"]), new_state
    if label_smoothing:
        targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits.shape[-1]),
                                      label_smoothing)
        return jnp.mean(optax.softmax_cross_entropy(logits, targets)), new_state
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return jnp.mean(ce), new_state


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """MultiStep (``milestones`` x ``gamma``) or one-cycle (linear up, linear down to 0).

    >>> s = learning_rate_schedule(TrainConfig(schedule="onecycle", epochs=10,
    ...                            learning_rate=1.0, warmup_fraction=0.2), 10)
    >>> [round(float(s(t)), 3) for t in (0, 20, 60, 100)]
    [0.0, 1.0, 0.5, 0.0]
    """
    if cfg.schedule == "multistep":
        boundaries = {int(m) * steps_per_epoch: cfg.gamma for m in cfg.milestones}
        return optax.piecewise_constant_schedule(cfg.learning_rate, boundaries)
    if cfg.schedule == "onecycle":
        total = max(cfg.epochs * steps_per_epoch, 1)
        warm = max(int(round(cfg.warmup_fraction * total)), 1)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.learning_rate, warm),
             optax.linear_schedule(cfg.learning_rate, 0.0, max(total - warm, 1))], [warm])
    raise ValueError(f"Unknown schedule {cfg.schedule!r}; valid: multistep, onecycle.")


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD (coupled weight decay, momentum) or AdamW with :func:`learning_rate_schedule`."""
    lr = learning_rate_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "sgd":
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                           optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; valid: sgd, adamw.")


def make_train_step(fm: FunctionalModel, tx: optax.GradientTransformation, *,
                    mesh=None, label_smoothing: float = 0.0) -> Callable:
    """Jitted ``(params, state, opt_state, batch) -> (params, state, opt_state, loss)``."""

    def step(params, state, opt_state, batch):
        grad_fn = jax.value_and_grad(lambda p: loss_fn(fm, p, state, batch, train=True,
                                                       label_smoothing=label_smoothing),
                                     has_aux=True)
        (loss, new_state), grads = grad_fn(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    if mesh is not None:  # outputs stay where params/state/opt_state were placed
        from imu_jax import sharding
        return sharding.jit_step(step, carry=(0, 1, 2), donate_argnums=(0, 1, 2))
    return jax.jit(step, donate_argnums=(0, 1, 2))


def pad_batch(batch: dict, size: int) -> dict:
    """Pads a batch to ``size`` rows; padded labels are -1, so every metric ignores them.

    >>> pad_batch({"image": np.ones((1, 2)), "label": np.array([3])}, 3)["label"].tolist()
    [3, -1, -1]
    """
    pad = size - len(batch["label"])
    if pad <= 0:
        return batch
    out = {}
    for k, v in batch.items():
        fill = np.full((pad, *v.shape[1:]), -1 if k == "label" else 0, v.dtype)
        out[k] = np.concatenate([v, fill])
    return out


@functools.partial(jax.jit, static_argnums=0)
def _eval_stats(fm: FunctionalModel, params, state, batch, transition):
    x = batch["tokens"] if "tokens" in batch else batch["image"]
    logits, _ = fm.apply(params, state, x)
    labels = batch["label"]
    mask = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, labels, 0))
    out = {"correct": jnp.sum((logits.argmax(-1) == labels) * mask),
           "ce": jnp.sum(ce * mask), "n": jnp.sum(mask)}
    if transition is not None:
        out["kl"], _ = kl_to_transition(logits, x, labels, transition)
    return out


def evaluate(fm: FunctionalModel, params, state, arrays: dict, *, batch_size: int = 1000,
             transition: np.ndarray | None = None) -> dict[str, float]:
    """``{"acc", "loss"}`` (token-level for sequences), plus ``"kl_true"`` given a transition.

    Batches are padded to ``batch_size`` (use a size that suits the data).
    """
    if not arrays or not len(arrays["label"]):
        return {}
    transition = None if transition is None else jnp.asarray(transition, jnp.float32)
    totals: dict[str, float] = {}
    for batch in batches(arrays, batch_size, seed=0, shuffle=False, process_index=0,
                         process_count=1):
        batch = pad_batch(batch, batch_size)  # one shape -> one compilation
        for k, v in _eval_stats(fm, params, state, batch, transition).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    n = max(totals["n"], 1.0)
    out = {"acc": totals["correct"] / n, "loss": totals["ce"] / n}
    if transition is not None:
        out["kl_true"] = totals["kl"] / n
    return out


def final_metrics(fm: FunctionalModel, params, state, splits: Splits, bs: int) -> dict:
    """Accuracies on every split; for sequences also mean per-token KL to the true rows."""
    tr = splits.transitions or {}
    named = {"test": (splits.test, tr.get("retain")), "retain": (splits.retain, tr.get("retain")),
             "forget": (splits.forget, tr.get("forget")),
             "forget_test": (splits.forget_test, tr.get("forget")),
             "control_test": (splits.control_test, tr.get("control"))}
    out = {}
    for name, (arrays, transition) in named.items():
        if arrays is None:
            continue
        for k, v in evaluate(fm, params, state, arrays, batch_size=bs,
                             transition=transition).items():
            out[f"{name}_{k}"] = v
    if splits.transitions:
        out["kl_true_retain_test"] = out.pop("test_kl_true")
        for name in ("forget_test", "control_test", "retain", "forget"):
            if f"{name}_kl_true" in out:
                out[f"kl_true_{name}"] = out.pop(f"{name}_kl_true")
    return out


def build_model(cfg: TrainConfig | dict, splits: Splits, *, seed: int = 0) -> FunctionalModel:
    """The model ``cfg`` asks for, sized for ``splits``; a ``ValueError`` naming the model and
    dataset when it cannot be built for them or its inputs do not fit (checked abstractly)."""
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    what = f"model {cfg.model!r} on dataset {cfg.dataset!r}"
    try:
        fm = functional(create(cfg.model, num_classes=splits.num_classes,
                               input_shape=splits.input_shape, seed=seed, **cfg.model_options))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{what}: cannot build it for inputs of shape "
                         f"{tuple(splits.input_shape)} and {splits.num_classes} classes "
                         f"({type(err).__name__}: {err}).") from None
    data = splits.train
    x_key = "tokens" if "tokens" in data else "image"
    check_model_fits(fm, fm.params, fm.state, data[x_key], data["label"], what)
    return fm


def train_model(cfg: TrainConfig | dict, splits: Splits, *, retrain: bool = False, seed: int = 0,
                workdir=None, progress: bool = True, mesh=None, desc: str | None = None):
    """Trains on ``splits.train`` (or ``splits.retrain_data`` when ``retrain``).

    ``progress`` shows a step bar named ``desc`` (which model is training, its epoch); without
    ``desc`` it also prints a line per epoch, with ``desc`` (inside ``imu-jax run``) the bar is
    removed when training ends.

    Returns ``(fm, params, state, metrics)``. With ``workdir`` it also saves an Orbax checkpoint
    in ``workdir/checkpoint`` and writes ``workdir/metrics.json``. With a ``mesh``
    (:func:`imu_jax.sharding.make_mesh`) batches are sharded over ``data`` and parameters over
    ``model`` (FSDP-style) if the mesh has it; the batch size must divide by the ``data`` size.
    """
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    data = splits.retrain_data if retrain else splits.train
    fm = build_model(cfg, splits, seed=seed)
    n = len(data["label"])
    drop = n >= cfg.batch_size
    steps = num_batches(n, cfg.batch_size, drop_remainder=drop)
    tx = make_optimizer(cfg, steps)
    params, state = jax.tree.map(jnp.copy, (fm.params, fm.state))  # steps donate their inputs
    host = lambda tree: tree  # noqa: E731
    if mesh is not None:
        params = sharding.shard_params(params, mesh)
        state = sharding.shard_params(state, mesh, model_axis=None)
        host = sharding.to_host  # evaluation runs on host copies, on every process
    if mesh is not None:
        with jax.set_mesh(mesh):
            opt_state = jax.jit(tx.init)(params)
    else:
        opt_state = tx.init(params)
    step_fn = make_train_step(fm, tx, mesh=mesh, label_smoothing=cfg.label_smoothing)
    history = []
    bar = tqdm(total=cfg.epochs * steps, disable=not progress, desc=desc or "train", unit="step",
               leave=desc is None)
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        t0, losses = time.perf_counter(), []
        for batch in batches(data, cfg.batch_size, seed=seed, epoch=epoch, drop_remainder=drop,
                             augment=cfg.augment):
            if mesh is not None:
                batch = sharding.shard_batch(batch, mesh)
            params, state, opt_state, loss = step_fn(params, state, opt_state, batch)
            losses.append(loss)
            bar.update(1)
        test = evaluate(fm, host(params), host(state), splits.test,
                        batch_size=cfg.eval_batch_size, transition=splits.transition)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(
            jax.device_get(losses) if mesh is None else host(losses))),
               **{f"test_{k}": v for k, v in test.items()},
               "seconds": time.perf_counter() - t0}
        history.append(row)
        key = "test_kl_true" if "test_kl_true" in row else "test_acc"
        bar.set_postfix({"epoch": f"{epoch + 1}/{cfg.epochs}", "loss": f"{row['train_loss']:.4f}",
                         key: f"{row.get(key, 0):.4f}"})
        if progress and desc is None:
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()))
    bar.close()
    metrics = {
        "train_seconds": time.perf_counter() - start,
        **final_metrics(fm, host(params), host(state), splits, cfg.eval_batch_size),
        "retrain": retrain, "seed": seed, "num_params": fm.num_params(), "num_train": n,
        "config": dataclasses.asdict(cfg), "splits": splits.info, "history": history,
    }
    if workdir is not None:
        write_outputs(workdir, fm, params, state, metrics)
    return fm, params, state, metrics


__all__ = [
    "RECIPES",
    "TrainConfig",
    "build_model",
    "evaluate",
    "kl_to_transition",
    "learning_rate_schedule",
    "loss_fn",
    "make_optimizer",
    "make_train_step",
    "recipe",
    "token_cross_entropy",
    "train_model",
    "write_outputs",
]
