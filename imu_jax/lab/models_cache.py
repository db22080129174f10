"""Train-or-load the original and Retrain models of an experiment (``OUT/models/``), refusing a
cached model trained on other data or with other settings."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Callable, Mapping

from imu_jax.lab.store import _normalized


PyTree = Any


@dataclasses.dataclass
class TrainedModel:
    """A trained model as pure functions plus its parameters; ``seconds`` = training time."""

    model: Any
    params: PyTree
    state: PyTree
    seconds: float
    info: dict = dataclasses.field(default_factory=dict)


# A trainer returns the original (``retrain=False``) or Retrain model of a seed.
Trainer = Callable[[bool, int], TrainedModel]


def _model_dir(out: pathlib.Path, retrain: bool, seed: int) -> pathlib.Path:
    return out / "models" / f"{'retrain' if retrain else 'original'}_seed{seed}"


def cached_trainer(splits, train_config, out: str | os.PathLike, *,
                   progress: bool = True) -> Trainer:
    """A :data:`Trainer` over ``imu_jax.train.train_model`` that caches each model under
    ``OUT/models/{original,retrain}_seed{S}/`` (Orbax checkpoint + metrics.json) and reloads it.

    A cache entry appears atomically (``train.write_outputs``); one that is incomplete or
    unreadable (an interrupted save) is ignored with a one-line notice and rebuilt. A cached model
    of another architecture, dataset, forget spec or training recipe is a ``ValueError`` (use
    another ``out``, or delete ``OUT/models``), never a silent reuse.
    """
    from imu_jax.models import model_config
    from imu_jax.train import TrainConfig, train_model

    cfg = TrainConfig.from_dict(train_config) if isinstance(train_config, Mapping) else train_config
    out = pathlib.Path(out)

    def trainer(retrain: bool, seed: int) -> TrainedModel:
        workdir = _model_dir(out, retrain, seed)
        expected = model_config(cfg.model, num_classes=splits.num_classes,
                                input_shape=splits.input_shape, seed=seed, **cfg.model_options)
        identity = functools.partial(training_data_identity, retrain=retrain)
        cached = load_cached_model(workdir, expected=expected,
                                   data_identity=identity(splits.info), identity_of=identity,
                                   train_config=dataclasses.asdict(cfg))
        if cached is not None:
            return cached
        which = "Retrain" if retrain else "original"
        model, params, state, info = train_model(
            cfg, splits, retrain=retrain, seed=seed, workdir=workdir, progress=progress,
            desc=f"train {which} {cfg.model} seed {seed}")
        return TrainedModel(model, params, state, float(info["train_seconds"]),
                            {"cached": False, "path": str(workdir)})

    return trainer


def training_data_identity(info: Mapping, *, retrain: bool) -> dict:
    """What a cached model's training data is, from the splits' ``info``: the dataset and, for a
    Retrain model, the forget set (``trained_on`` when the splits name it, else the forget spec
    and its seed). An original model trains on the whole training set, which no forget spec
    changes except ``mislabeled:`` (it relabels examples), so one original model serves every
    other forget spec: copy ``OUT/models/original_seed*`` between experiments on the same data.

    >>> training_data_identity({"dataset": "d", "forget_spec": "class:3", "seed": 0}, retrain=False)
    {'dataset': 'd', 'train_labels': 'as released'}
    >>> training_data_identity({"dataset": "d", "forget_spec": "class:3", "seed": 0}, retrain=True)
    {'dataset': 'd', 'forget_spec': 'class:3', 'seed': 0}

    An image folder's splits also carry ``data_content`` (a digest of its images and
    ``coarse_labels.json``, :attr:`imu_jax.data.image_folder.Layout.content`), so that a model
    trained before the folder or its map changed is not taken for one trained after, and one
    trained on the same folder under another path spelling or in a copy is reused.
    """
    content = {"data_content": info["data_content"]} if "data_content" in info else {}
    # Markov splits name it: both forget settings train on retain + forget1
    key = "trained_on" if "trained_on" in info else "forget_spec"
    if retrain or key == "trained_on":
        return {**{k: info.get(k) for k in ("dataset", key, "seed")}, **content}
    spec = info.get("forget_spec") or ""
    labels = (f"{spec} (split seed {info.get('seed')})" if spec.startswith("mislabeled:")
              else "as released")
    return {"dataset": info.get("dataset"), "train_labels": labels, **content}


def _train_config_defaults() -> dict:
    """Every :class:`imu_jax.train.TrainConfig` field's default."""
    from imu_jax.train import TrainConfig

    out = {}
    for field in dataclasses.fields(TrainConfig):
        if field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            out[field.name] = field.default_factory()
    return out


def training_differences(saved: Mapping | None, wanted: Mapping | None) -> list[str]:
    """The training options where a cached model's recipe ``saved`` and the run's ``wanted``
    differ (``forget`` and ``dataset`` aside: the data identity is checked apart, by name or by an
    image folder's content). A field that ``TrainConfig`` gained after the model was saved
    counts as its default, which is what training used before the field existed.

    >>> training_differences({"epochs": 3}, {"epochs": 3, "label_smoothing": 0.0})
    []
    >>> training_differences({"epochs": 3}, {"epochs": 4})
    ['epochs=3 (cached) vs 4']
    """
    if saved is None or wanted is None:
        return []
    defaults = _train_config_defaults()
    saved = _normalized({**defaults, **dict(saved)})
    wanted = _normalized({**defaults, **dict(wanted)})
    return [f"{k}={saved.get(k)!r} (cached) vs {wanted.get(k)!r}"
            for k in sorted(set(saved) | set(wanted))
            if k not in ("forget", "dataset") and saved.get(k) != wanted.get(k)]


def _comparable(cached: dict, wanted: dict) -> tuple[dict, dict]:
    """What of two data identities to compare: an image folder's content where both record it
    (however the folder's path was spelled, wherever it was copied to); its name where the cached
    model was saved before the content was recorded.

    >>> _comparable({"dataset": "imagefolder:f", "data_content": "c"},
    ...             {"dataset": "imagefolder:./f", "data_content": "c"})
    ({'data_content': 'c'}, {'data_content': 'c'})
    >>> _comparable({"dataset": "imagefolder:f"}, {"dataset": "imagefolder:f", "data_content": "c"})
    ({'dataset': 'imagefolder:f'}, {'dataset': 'imagefolder:f'})
    """
    if "data_content" in cached and "data_content" in wanted:
        drop = "dataset"
    else:
        drop = "data_content"
    return ({k: v for k, v in cached.items() if k != drop},
            {k: v for k, v in wanted.items() if k != drop})


def load_cached_model(workdir: str | os.PathLike, *, expected: Mapping,
                      data_identity: Mapping | None = None,
                      train_config: Mapping | None = None,
                      identity_of: Callable[[Mapping], Mapping] | None = None
                      ) -> TrainedModel | None:
    """The model cached in ``workdir`` (``checkpoint/`` + ``metrics.json``), or ``None`` when there
    is none or it is incomplete / unreadable (then a one-line notice goes to stderr and the
    entry is removed, so it is rebuilt). A complete entry made for another architecture, data or
    training recipe is a ``ValueError`` naming what differs. ``identity_of`` maps the saved
    splits' info to what is compared with ``data_identity`` (default: the same keys).

    >>> import tempfile
    >>> load_cached_model(tempfile.mkdtemp() + "/none", expected={"name": "mlp"}) is None
    True
    """
    import shutil
    import sys

    from imu_jax import checkpoint

    workdir = pathlib.Path(workdir)
    if not workdir.exists():
        return None
    try:
        info = json.loads((workdir / "metrics.json").read_text())
        seconds = float(info["train_seconds"])
        meta = checkpoint.load_metadata(workdir / "checkpoint")
        saved_model = meta["model"]
    except Exception as err:  # noqa: BLE001 - any unreadable part: an interrupted save
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
        print(f"imu-jax: ignoring the incomplete cached model {workdir} ({reason}); "
              "training it again.", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return None
    if not checkpoint._same_architecture(saved_model, dict(expected)):
        raise ValueError(
            f"cached model {workdir} is a {checkpoint.describe(saved_model)}, not a "
            f"{checkpoint.describe(dict(expected))}; use another --out or delete its models/ "
            "folder.")
    if data_identity is not None:
        saved_info = meta.get("splits") or {}
        cached = (identity_of(saved_info) if identity_of is not None
                  else {k: saved_info.get(k) for k in data_identity})
        cached, wanted = _comparable(cached, dict(data_identity))
        if _normalized(cached) != _normalized(wanted):
            changed = ("the image folder's images or coarse_labels.json changed since it was "
                       "trained, " if {k for k in wanted if cached.get(k) != wanted[k]}
                       == {"data_content"} else "")
            raise ValueError(
                f"cached model {workdir} was trained for {cached}, not {wanted}; {changed}"
                "use another --out or delete its models/ folder.")
    differ = training_differences(meta.get("config"), train_config)
    if differ:
        raise ValueError(f"cached model {workdir} was trained with other training options: "
                         f"{'; '.join(differ)}; use another --out or delete its models/ "
                         "folder.")
    try:
        model, params, state, _ = checkpoint.restore(workdir / "checkpoint", expected=expected)
    except Exception as err:  # noqa: BLE001 - metadata readable but arrays are not
        print(f"imu-jax: ignoring the unreadable cached model {workdir} "
              f"({type(err).__name__}); training it again.", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return None
    return TrainedModel(model, params, state, seconds, {"cached": True, "path": str(workdir)})
