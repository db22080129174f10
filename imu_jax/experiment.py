"""Unlearning experiments: original + Retrain models, every method × seed, results on disk.

:func:`run_experiment` is what ``imu-jax run`` calls (the CLI only parses arguments). It

1. splits the dataset for the forget spec (``imu_jax.data.make_splits``);
2. trains — or loads from ``OUT/models/`` — the original and the Retrain model of every seed;
3. runs each method on each seed (optionally tuning it first: its grid on separate tuning seeds,
   the config with the smallest mean Avg. Gap then reported on the seeds);
4. writes ``OUT/results.json`` after every finished (method, seed) run, so an interrupted run
   keeps its results and ``resume=True`` skips them; then ``results.md`` and ``tradeoff.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import pathlib
import time
import types
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from imu_jax import metrics as metrics_lib
from imu_jax import report as report_lib
from imu_jax import methods as methods_lib
from imu_jax.unlearn import input_and_labels

PyTree = Any
SELECTION_RULE = ("every method gets the same budget: a grid of the same size over its own knobs "
                  "(lr × epochs, plus its second knob — IMU's top_fraction, Boundary Shrink's ε, "
                  "NPO's β — for every method that has one; SSD: α × λ; grids listed below) runs "
                  "on the tuning seeds, whose original and Retrain models are trained apart from "
                  "the reported seeds'; the config with the smallest mean Avg. Gap to Retrain "
                  "over the tuning seeds is selected (so top_fraction is never chosen on the "
                  "reported seeds), then run and reported on the reported seeds. One lr schedule "
                  "for all (milestones, default constant).")
FLOOR_SEED_OFFSET = 1000  # retrain_floor: Retrain of seed + 1000 against Retrain of seed
RESULTS_JSON, RESULTS_MD, TRADEOFF_PNG = "results.json", "results.md", "tradeoff.png"
STEPS_PNG = "steps.png"
RETAIN_FREE_RULE = ("retain-free: each method runs its default hyperparameters at a constant lr "
                    "and stops by the rule of imu_jax.stopping on the forget set vs the held-out "
                    "split (class removal: forget accuracy ≤ 1/#classes; sample removal: "
                    "loss-membership AUC at chance, or earlier when held-out accuracy falls "
                    "below its start by more than its 5 % noise level, handing back the last "
                    "check within it: the utility guard), capped at 50 epochs; no Retrain "
                    "model, no retain set.")
CLASS_KINDS = ("class", "classes", "superclass")
SAMPLE_KINDS = ("random", "indices", "subclass", "mislabeled")


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
    """
    # Markov splits name it: both forget settings train on retain + forget1
    key = "trained_on" if "trained_on" in info else "forget_spec"
    if retrain or key == "trained_on":
        return {k: info.get(k) for k in ("dataset", key, "seed")}
    spec = info.get("forget_spec") or ""
    labels = (f"{spec} (split seed {info.get('seed')})" if spec.startswith("mislabeled:")
              else "as released")
    return {"dataset": info.get("dataset"), "train_labels": labels}


def _normalized(value):
    """Through JSON (tuples become lists), as values are stored."""
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


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
    differ (``forget`` aside). A field that ``TrainConfig`` gained after the model was saved
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
            if k != "forget" and saved.get(k) != wanted.get(k)]


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
        if _normalized(cached) != _normalized(dict(data_identity)):
            raise ValueError(
                f"cached model {workdir} was trained for {cached}, not {dict(data_identity)}; "
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


@functools.lru_cache(maxsize=64)
def _jitted_logits(model):
    return jax.jit(lambda p, s, xb: model.apply(p, s, xb, train=False)[0])


def predict(model, params: PyTree, state: PyTree, x: np.ndarray, *,
            batch_size: int = 1024) -> np.ndarray:
    """Model logits for ``x`` in inference mode, batched, as float32 numpy (an empty ``x`` gives
    an empty array of the logits' shape, e.g. ``[0, classes]``, so metrics see no examples rather
    than a malformed array)."""
    apply = _jitted_logits(model)
    if not len(x):  # the shape of one example's logits (abstract: some models cannot take N=0)
        one = jax.eval_shape(apply, params, state, jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype))
        return np.zeros((0, *one.shape[1:]), np.float32)
    return np.concatenate([np.asarray(apply(params, state, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def _splits_dict(splits) -> dict[str, Mapping[str, np.ndarray]]:
    names = ("forget", "retain", "test", "forget_test", "control", "control_test")
    return {n: getattr(splits, n, None) for n in names if getattr(splits, n, None) is not None}


def model_outputs(trained: TrainedModel, params: PyTree, state: PyTree, splits
                  ) -> dict[str, np.ndarray]:
    """Logits of the model on every evaluation split."""
    return {name: predict(trained.model, params, state, input_and_labels(arrays)[0])
            for name, arrays in _splits_dict(splits).items()}


def _token_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    mask = labels >= 0
    return float(np.mean(np.argmax(logits, -1)[mask] == labels[mask]))


def evaluate(outputs: Mapping[str, np.ndarray], splits,
             reference: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Metrics of one model from its logits (``reference`` = Retrain's logits, for distances).

    Classification: UA, RA, TA, FA, the five MIA variants, forget-test accuracy ``fta`` and
    ``w1_retrain``. Sequences: next-token UA/RA/TA, per-token KL to Retrain and to the true
    transitions on retain-test (``test``), forget-test and forget2-test (``control_test``).
    """
    labels = {name: arrays["label"] for name, arrays in _splits_dict(splits).items()}
    if labels["forget"].ndim == 1:
        probs = {name: metrics_lib.softmax(logits) for name, logits in outputs.items()}
        result = metrics_lib.classification_metrics(
            {k: probs[k] for k in ("forget", "retain", "test")}, labels)
        if "forget_test" in probs and len(labels["forget_test"]):
            result["fta"] = metrics_lib.accuracy(probs["forget_test"], labels["forget_test"])
        if reference is not None:
            result["w1_retrain"] = metrics_lib.prediction_wasserstein(
                probs["test"], metrics_lib.softmax(reference["test"]))
        return result
    result = {"ua": 1 - _token_accuracy(outputs["forget"], labels["forget"]),
              "ra": _token_accuracy(outputs["retain"], labels["retain"]),
              "ta": _token_accuracy(outputs["test"], labels["test"])}
    result["fa"] = 1 - result["ua"]
    transitions = getattr(splits, "transitions", None) or {}
    inputs = {name: input_and_labels(arrays)[0] for name, arrays in _splits_dict(splits).items()}
    for split, chain in (("test", "retain"), ("forget_test", "forget"), ("control_test", "control")):
        if split not in outputs:
            continue
        if reference is not None:
            result[f"kl_retrain_{split}"] = metrics_lib.token_kl(reference[split], outputs[split],
                                                                 labels[split])
        if chain in transitions:
            result[f"kl_true_{split}"] = metrics_lib.transition_kl(
                transitions[chain], inputs[split], outputs[split], labels[split])
    return result


def gap_to_retrain(metrics: Mapping[str, float], retrain_metrics: Mapping[str, float]) -> float:
    """Avg. Gap. Classification: over UA, RA, TA, MIA-efficacy. Sequences: the mean per-token KL
    to Retrain on retain-test and forget-test (already a distance to Retrain).

    >>> gap_to_retrain({"kl_retrain_test": 0.1, "kl_retrain_forget_test": 0.3}, {})
    0.2
    """
    if "kl_retrain_test" in metrics:
        return float(np.mean([metrics["kl_retrain_test"], metrics["kl_retrain_forget_test"]]))
    return metrics_lib.avg_gap(metrics, retrain_metrics)


def grid_points(grid: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    """Cartesian product of a grid, in order.

    >>> grid_points({"lr": (1, 2), "epochs": (5,)})
    [{'lr': 1, 'epochs': 5}, {'lr': 2, 'epochs': 5}]
    """
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_key(method: str, seed: int, role: str, hparams: Mapping) -> str:
    """Identity of a run for ``--resume``."""
    return json.dumps([method, int(seed), role, dict(sorted(hparams.items()))], default=str)


def load_results(out: pathlib.Path) -> dict:
    """``out/results.json`` (``{"runs": []}`` when absent). A file that is not a results dict
    (truncated, empty, another structure) is a ``ValueError`` naming it and what to do."""
    path = pathlib.Path(out) / RESULTS_JSON
    if not path.exists():
        return {"runs": []}
    try:
        results = json.loads(path.read_text())
        problem = _results_problem(results)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = f"not valid JSON ({err.msg if hasattr(err, 'msg') else err})"
    if problem:
        raise ValueError(f"cannot resume from {path}: {problem}; delete it (the cached models in "
                         f"{path.parent / 'models'} are kept) or run without --resume to start "
                         "over.")
    return results


_RUN_KEYS = ("method", "seed", "hparams", "metrics", "avg_gap")


def _results_problem(results) -> str | None:
    """What is wrong with a loaded results dict, or ``None``.

    >>> _results_problem({"runs": [{"method": "imu"}]})
    'run 0 lacks avg_gap, hparams, metrics, seed'
    """
    if not isinstance(results, dict) or not isinstance(results.get("runs"), list):
        return "expected a JSON object with a list of runs"
    for i, run in enumerate(results["runs"]):
        if not isinstance(run, dict):
            return f"run {i} is not an object"
        missing = sorted(k for k in _RUN_KEYS if k not in run)
        if missing:
            return f"run {i} lacks {', '.join(missing)}"
    if not isinstance(results.get("config", {}), dict):
        return "its config is not an object"
    return None


def check_resume(out: str | os.PathLike, record: Mapping, results: Mapping | None = None) -> None:
    """Raises a one-line ``ValueError`` when ``out/results.json`` holds runs made with settings
    (:data:`RESULT_SETTINGS`) other than ``record``'s, or cannot be read."""
    out = pathlib.Path(out)
    results = load_results(out) if results is None else results
    conflicts = resume_conflicts(results.get("config") or {}, record) if results["runs"] else []
    if conflicts:
        raise ValueError(f"--resume: {out / RESULTS_JSON} was made with other settings "
                         f"({'; '.join(conflicts)}); rerun with the folder's settings, or use "
                         "another --out.")


# The recorded settings that change results: ``--resume`` refuses a folder made with others.
RESULT_SETTINGS = ("dataset", "model", "forget", "split_seed", "train_config", "hparams", "grids",
                   "tune_seeds", "retain_free")


def resume_conflicts(saved: Mapping, wanted: Mapping) -> list[str]:
    """The settings (of :data:`RESULT_SETTINGS`, recorded in both) where ``saved`` and
    ``wanted`` differ, as ``"name: saved → wanted"`` lines.

    >>> resume_conflicts({"forget": "class:3", "seeds": [0]}, {"forget": "class:4", "seeds": [1]})
    ["forget: 'class:3' → 'class:4'"]
    """
    out = []
    for key in RESULT_SETTINGS:
        if key in saved and key in wanted:
            a, b = _normalized(saved[key]), _normalized(wanted[key])
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):
                    parts = [f"{k}={a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
                             if a.get(k) != b.get(k)]
                    out.append(f"{key}: {', '.join(parts)}")
                else:
                    out.append(f"{key}: {a!r} → {b!r}")
    return out


def save_results(out: pathlib.Path, results: Mapping) -> None:
    """Atomic write of ``results.json`` (a crash never leaves a half-written file)."""
    tmp = out / (RESULTS_JSON + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=_json_default))
    os.replace(tmp, out / RESULTS_JSON)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_reports(out: pathlib.Path, results: Mapping) -> None:
    """``results.md`` and ``tradeoff.png`` (and ``steps.png`` when runs have a per-step trace)."""
    (out / RESULTS_MD).write_text(report_lib.results_markdown(results))
    report_lib.tradeoff_plot(results, str(out / TRADEOFF_PNG))
    if any(r.get("trace") for r in results["runs"]):
        report_lib.trace_plot(results, str(out / STEPS_PNG))


def _get_method(name: str) -> methods_lib.Method:
    return RETRAIN_FLOOR if name == RETRAIN_FLOOR.name else methods_lib.get_method(name)


def runnable_methods() -> list[str]:
    """The names ``imu-jax run --methods`` accepts: the registry's, then the runner's own
    ``retrain_floor``.

    >>> runnable_methods()[-1]
    'retrain_floor'
    """
    return methods_lib.available() + [RETRAIN_FLOOR.name]


def held_out_for(splits, forget: str | None, *, seed: int = 0
                 ) -> tuple[Mapping[str, np.ndarray], str] | None:
    """``(held_out, removal)`` for the retain-free stopping rule, from the forget spec; ``None``
    where the rule does not apply (sequences, no forget spec).

    * ``class:``, ``classes:``, ``superclass:`` → the test split (which then holds only the
      remaining classes), class removal;
    * ``random:``, ``indices:`` → the test split, sample removal;
    * ``subclass:`` → the forgotten subclass's test examples (``forget_test``, coarse labels):
      the unseen data of the same subclass, sample removal;
    * ``mislabeled:`` → the test split relabelled the way the forget set was (a uniformly random
      other class, seeded): an unseen example carrying a wrong label is what the corrupted
      training examples look like to a model that never saw them; sample removal. The true
      labels ride along under ``stopping.UTILITY_LABEL`` for the utility guard.

    >>> import types, numpy as np
    >>> splits = types.SimpleNamespace(test={"image": np.zeros((4, 2)), "label": np.arange(4)},
    ...                                forget={"label": np.array([1])}, num_classes=4)
    >>> held, removal = held_out_for(splits, "random:0.1")
    >>> removal, len(held["label"])
    ('sample', 4)
    """
    from imu_jax.data import parse_forget_spec

    if forget is None or splits.forget["label"].ndim != 1:
        return None
    kind = parse_forget_spec(forget).kind
    if kind in CLASS_KINDS:
        return splits.test, "class"
    if kind == "subclass":
        return splits.forget_test, "sample"
    if kind == "mislabeled":
        from imu_jax.methods.random_label import random_wrong_labels

        from imu_jax.stopping import UTILITY_LABEL

        test = dict(splits.test)
        test[UTILITY_LABEL] = test["label"]  # the utility guard measures with the true labels
        test["label"] = random_wrong_labels(test["label"], splits.num_classes, seed=seed)
        return test, "sample"
    if kind in SAMPLE_KINDS:
        return splits.test, "sample"
    return None


def write_curve(out: pathlib.Path, run: Mapping) -> None:
    """``OUT/curves/<method>_<role>_seed<S>.{json,png}``: the per-check curve of a monitored run
    (moved out of ``run["info"]``, which keeps the file name)."""
    from imu_jax import stopping

    info = run["info"]
    curve = info.pop("curve", None)
    if not curve:
        return
    folder = out / "curves"
    folder.mkdir(exist_ok=True)
    name = f"{run['method']}_{run['role']}_seed{run['seed']}"
    (folder / f"{name}.json").write_text(json.dumps(
        {**{k: v for k, v in info.items() if k in ("stop_reason", "stopped_at", "cap",
                                                    "removal", "threshold", "statistic",
                                                    "utility_floor")},
         "curve": curve}, indent=1, default=_json_default))
    stopping.plot_curve(curve, str(folder / f"{name}.png"), threshold=info.get("threshold"),
                        statistic=info.get("statistic", "statistic"),
                        utility_floor=info.get("utility_floor"),
                        title=f"{run['method']} seed {run['seed']}: {info.get('stop_reason')} "
                              f"at step {info.get('stopped_at')}")
    info["curve_file"] = f"curves/{name}.json"


def hparams_key(hparams: Mapping) -> str:
    return json.dumps(dict(sorted(hparams.items())), default=str)


def select_hparams(runs: Sequence[Mapping], method: str) -> dict | None:
    """The tuning config of ``method`` with the smallest mean Avg. Gap over the tuning seeds
    (the first in grid order on ties); ``None`` when there are no tuning runs."""
    tuned = [r for r in runs if r["method"] == method and r.get("role") == "tune"]
    if not tuned:
        return None
    by_config: dict[str, list[Mapping]] = {}
    for run in tuned:
        by_config.setdefault(hparams_key(run["hparams"]), []).append(run)
    best = min(by_config.values(), key=lambda rs: float(np.mean([r["avg_gap"] for r in rs])))
    return dict(best[0]["hparams"])


# The per-step trace evaluates at most this many examples of each split (a seeded random subset,
# the same at every step): its cost stays bounded on large test splits (Markov: 5,000 sequences
# per step otherwise). The final metrics of every run use every example.
TRACE_EXAMPLES = 512


def trace_rows(num_examples: int, limit: int | None = None) -> np.ndarray:
    """The rows of a split that the per-step trace evaluates: all of them when there are at most
    ``limit`` (default :data:`TRACE_EXAMPLES`), else ``limit`` of them drawn without replacement
    (seed 0), in order.

    >>> trace_rows(3).tolist(), len(trace_rows(2000)), bool(np.all(np.diff(trace_rows(2000)) > 0))
    ([0, 1, 2], 512, True)
    """
    limit = TRACE_EXAMPLES if limit is None else int(limit)
    if num_examples <= limit:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(0).choice(num_examples, limit, replace=False))


def trace_metrics(outputs: Mapping[str, np.ndarray], splits,
                  reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The cheap per-step metrics of :func:`run_experiment`'s ``trace_every``: sequences, the
    per-token KL to Retrain on every test split; classes, UA and TA (no attack).

    >>> import types
    >>> s = types.SimpleNamespace(forget={"label": np.array([0])}, test={"label": np.array([1])})
    >>> trace_metrics({"forget": np.array([[0.0, 1.0]]), "test": np.array([[0.0, 1.0]])}, s, {})
    {'ua': 1.0, 'ta': 1.0}
    """
    labels = {name: arrays["label"] for name, arrays in _splits_dict(splits).items()}
    if labels["forget"].ndim == 1:
        return {"ua": 1 - _token_accuracy(outputs["forget"], labels["forget"]),
                "ta": _token_accuracy(outputs["test"], labels["test"])}
    return {f"kl_retrain_{split}": metrics_lib.token_kl(reference[split], outputs[split],
                                                        labels[split])
            for split in ("test", "forget_test", "control_test") if split in outputs}


def _input_normalization(splits):
    norm = getattr(splits, "info", {}).get("normalization")
    return None if norm is None else tuple(tuple(float(v) for v in part) for part in norm)


def _floor(task, hparams, seed):
    raise RuntimeError("'retrain_floor' is a Retrain model of another seed; the runner "
                       "evaluates it.")


# A pseudo-method: the Retrain model of seed + FLOOR_SEED_OFFSET measured against the Retrain
# model of seed, the distance that only training randomness makes and no method can beat.
RETRAIN_FLOOR = methods_lib.Method(
    name="retrain_floor", needs="retain set (another seed)",
    summary="Retrain of another seed vs Retrain: the floor of every distance", run=_floor,
    reference=True)


class _Runner:
    """Holds the state of one experiment; see :func:`run_experiment`."""

    def __init__(self, splits, trainer: Trainer, out: pathlib.Path, results: dict, progress,
                 trace_every: int = 0, held_out=None):
        self.splits, self.trainer, self.out, self.results = splits, trainer, out, results
        self.trace_every = int(trace_every)
        self.held_out = held_out  # (held-out arrays, removal) of the retain-free rule
        self.done = {run_key(r["method"], r["seed"], r.get("role", "eval"), r["hparams"])
                     for r in results["runs"]}
        self.progress = progress
        self._models: dict[tuple[bool, int], TrainedModel] = {}
        self._evaluated: dict[tuple[bool, int], tuple[dict, dict]] = {}

    def trained(self, retrain: bool, seed: int) -> TrainedModel:
        if (retrain, seed) not in self._models:
            self._models[(retrain, seed)] = self.trainer(retrain, seed)
        return self._models[(retrain, seed)]

    def reference(self, retrain: bool, seed: int) -> tuple[dict, dict]:
        """``(logits, metrics)`` of the original or Retrain model of ``seed``."""
        if (retrain, seed) not in self._evaluated:
            model = self.trained(retrain, seed)
            outputs = model_outputs(model, model.params, model.state, self.splits)
            retrain_outputs = outputs if retrain else self.reference(True, seed)[0]
            self._evaluated[(retrain, seed)] = (
                outputs, evaluate(outputs, self.splits, retrain_outputs))
        return self._evaluated[(retrain, seed)]

    def record(self, run: dict) -> None:
        self.results["runs"].append(run)
        self.done.add(run_key(run["method"], run["seed"], run["role"], run["hparams"]))
        save_results(self.out, self.results)

    def run(self, method: methods_lib.Method, seed: int, role: str, hparams: dict) -> None:
        if run_key(method.name, seed, role, hparams) in self.done:
            return
        retrain_metrics = self.reference(True, seed)[1]
        trace = None
        if method.name == RETRAIN_FLOOR.name:
            other = self.trained(True, seed + FLOOR_SEED_OFFSET)
            outputs = model_outputs(other, other.params, other.state, self.splits)
            metrics = evaluate(outputs, self.splits, self.reference(True, seed)[0])
            seconds, info = other.seconds, {"retrain_seed": seed + FLOOR_SEED_OFFSET}
        elif method.name in ("retrain", "original"):
            retrain = method.name == "retrain"
            outputs, metrics = self.reference(retrain, seed)
            seconds, info = (self.trained(True, seed).seconds if retrain else 0.0), {}
        else:
            original = self.trained(False, seed)
            task = methods_lib.UnlearnTask(
                model=original.model, params=original.params, state=original.state,
                forget=self.splits.forget, retain=self.splits.retain, train=self.splits.train,
                num_classes=self.splits.num_classes,
                retrain_fn=lambda s: (lambda m: (m.params, m.state))(self.trained(True, s)),
                input_normalization=_input_normalization(self.splits), **self._rule(role))
            from imu_jax import run_checkpoint

            resumed_before = len(run_checkpoint.resumed_steps())
            clock = {"seconds": 0.0}
            if self.trace_every and role in ("eval", "retain_free"):
                trace = []
                task.on_step = self._tracer(original, seed, trace, clock)
                task.on_step(0, original.params, original.state)
                clock["seconds"] = 0.0  # step 0 runs before the method's clock starts
            output = method.run(task, dict(hparams), seed)
            outputs = model_outputs(original, output.params, output.state, self.splits)
            metrics = evaluate(outputs, self.splits, self.reference(True, seed)[0])
            seconds, info = output.seconds - clock["seconds"], dict(output.info)
            resumed = run_checkpoint.resumed_steps()[resumed_before:]
            if resumed:  # its seconds count only the part after the checkpoint
                info["resumed_from_step"] = resumed[0]
        run = {"method": method.name, "seed": int(seed), "role": role, "hparams": hparams,
               "metrics": metrics, "avg_gap": gap_to_retrain(metrics, retrain_metrics),
               "seconds": float(seconds), "needs": method.needs, "info": dict(info)}
        if trace is not None:
            run["trace"] = trace
        if info.get("diverged"):  # scored nowhere: the tables show it as diverged
            run["diverged"] = True
        config = self.results["config"]
        if (role == "eval" and config.get("tune_seeds") and method.grid
                and method.name in (config.get("tune_methods") or [method.name])):
            run["selection"] = "oracle-tuned"
        write_curve(self.out, run)
        self.record(run)

    def _tracer(self, original: TrainedModel, seed: int, trace: list, clock: dict):
        """``on_step`` recording :func:`trace_metrics` every ``trace_every`` steps (and step 0)
        on the splits it needs (:func:`trace_rows` of each); its time is added to ``clock`` and
        left out of the RTE."""
        wanted = (("forget", "test") if self.splits.forget["label"].ndim == 1
                  else ("test", "forget_test", "control_test"))
        splits = _splits_dict(self.splits)
        names = [n for n in wanted if n in splits]
        rows = {n: trace_rows(len(splits[n]["label"])) for n in {*names, "forget"}}
        subset = types.SimpleNamespace(**{n: {k: v[rows[n]] for k, v in splits[n].items()}
                                          for n in rows})
        reference = {n: v[rows[n]] for n, v in self.reference(True, seed)[0].items() if n in rows}
        inputs = {n: input_and_labels(getattr(subset, n))[0] for n in names}

        def on_step(step, params, state):
            if step % self.trace_every:
                return
            start = time.perf_counter()
            outputs = {n: predict(original.model, params, state, inputs[n]) for n in names}
            trace.append({"step": int(step), **trace_metrics(outputs, subset, reference)})
            clock["seconds"] += time.perf_counter() - start

        return on_step

    def _rule(self, role: str) -> dict:
        """The stopping-rule fields of a retain-free run's task."""
        if role != "retain_free":
            return {}
        from imu_jax.stopping import StopRule

        held_out, removal = self.held_out
        return {"held_out": held_out, "stop_rule": StopRule(removal=removal),
                "progress": bool(self.progress)}


def _evaluated_by_the_runner(task, hparams, seed):
    raise RuntimeError("'original' is the trained model itself; the runner evaluates it.")


# A pseudo-method so the original model gets a row (and an Avg. Gap) in every table.
ORIGINAL = methods_lib.Method(name="original", needs="— (before unlearning)",
                              summary="the trained model, nothing unlearned",
                              run=_evaluated_by_the_runner)


def plan_jobs(method: methods_lib.Method, tune_seeds: Sequence[int], *,
              overrides: Mapping[str, Any], grid: Mapping[str, Sequence] | None
              ) -> list[tuple[int, dict]]:
    """The tuning runs ``(seed, hparams)``: the method's grid on every tuning seed."""
    base = method.hparams(overrides) if method.defaults else dict(overrides)
    grid = method.grid if grid is None else grid
    if not grid:
        return []
    return [(seed, {**base, **point}) for seed in tune_seeds for point in grid_points(grid)]


def run_experiment(
    *,
    splits,
    trainer: Trainer,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | os.PathLike,
    resume: bool = False,
    tune_seeds: Sequence[int] = (),
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence]] | None = None,
    config: Mapping[str, Any] | None = None,
    tune_methods: Sequence[str] | None = None,
    progress: bool = True,
    trace_every: int = 0,
    held_out: tuple[Mapping[str, np.ndarray], str] | None = None,
    retain_free: bool = True,
) -> dict:
    """Runs ``methods`` × ``seeds`` and writes ``results.json`` / ``.md`` / ``tradeoff.png``.

    Args:
      splits: an ``imu_jax.data.Splits`` (forget, retain, test, train, num_classes, ...).
      trainer: ``trainer(retrain, seed) -> TrainedModel`` (see :func:`cached_trainer`).
      methods: registry names (``imu_jax.methods.available()``); ``"retrain"`` reports the
        Retrain model itself. The original model is always reported as ``"original"``.
      seeds: model and unlearning seeds; each seed has its own original and Retrain model.
      out: output directory.
      resume: keep the (method, seed) runs already in ``out/results.json`` and skip them;
        without it the run starts afresh (the previous run's ``out/curves`` files are removed).
      tune_seeds: when given, each method's grid runs on these seeds (their own original and
        Retrain models) and the config with the smallest mean Avg. Gap is reported on ``seeds``
        (``SELECTION_RULE``). Empty: every method runs its defaults (plus ``hparams``).
      tune_methods: with ``tune_seeds``, the methods that are oracle-tuned (default ``None``:
        every method); the others get only their retain-free row (their grid is not run).
      hparams: per-method overrides of the defaults, ``{"imu": {"learning_rate": 0.1}}``.
      grids: per-method replacements of the tuning grids.
      config: recorded verbatim in ``results.json["config"]`` (dataset, command, ...).
      progress: show a tqdm progress bar.
      trace_every: when > 0, every reported (eval or retain-free) run of a gradient method also records
        :func:`trace_metrics` every ``trace_every`` optimizer steps on at most
        ``TRACE_EXAMPLES`` examples of each split (``run["trace"]``; plotted in
        ``steps.png``). ``"retrain_floor"`` in ``methods`` adds the Retrain model of seed + 1000
        measured against Retrain of seed (the floor).
      held_out: ``(arrays, removal)`` for the retain-free stopping rule (:func:`held_out_for`);
        default: the test split, with the removal kind inferred from the labels
        (``imu_jax.stopping.infer_removal``).
      retain_free: run every non-reference method with its defaults under the stopping rule
        (role ``"retain_free"``, ``RETAIN_FREE_RULE``). The fixed-length runs of role ``"eval"``
        then run only when ``tune_seeds`` are given (oracle-tuned); with ``retain_free=False``
        they always run (defaults, fixed length). Sequence data has no rule: fixed length.

    Returns:
      The results dict written to ``out/results.json``.

    Examples:
      >>> import tempfile, types, jax.numpy as jnp, numpy as np
      >>> class Linear:
      ...     def apply(self, params, state, x, *, train=False):
      ...         return x @ params["head"]["kernel"] + params["head"]["bias"], state
      ...     def features(self, params, state, x):
      ...         return x
      >>> rng = np.random.default_rng(0)
      >>> def split(n, classes):
      ...     y = rng.choice(classes, n)
      ...     return {"image": (3 * np.eye(3)[y] + rng.normal(size=(n, 3))).astype(np.float32),
      ...             "label": y}
      >>> splits = types.SimpleNamespace(forget=split(20, [2]), retain=split(60, [0, 1]),
      ...                                test=split(30, [0, 1]), train=None, num_classes=3)
      >>> def trainer(retrain, seed):  # stands in for training: a fixed linear classifier
      ...     head = {"kernel": jnp.eye(3) * (1 - np.eye(3)[2] * retrain), "bias": jnp.zeros(3)}
      ...     return TrainedModel(Linear(), {"head": head}, {}, seconds=0.0)
      >>> results = run_experiment(splits=splits, trainer=trainer, methods=["retrain", "imu"],
      ...                          seeds=[0], out=tempfile.mkdtemp(), progress=False)
      >>> sorted(r["method"] for r in results["runs"])
      ['imu', 'original', 'retrain']
    """
    chosen = [_get_method(name) for name in methods]  # unknown names fail first
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed.")
    if len(splits.forget["label"]) == 0:
        raise ValueError(f"the forget set is empty (spec {(config or {}).get('forget')!r}): "
                         "nothing to unlearn.")
    hparams, grids = dict(hparams or {}), dict(grids or {})
    unknown = sorted((set(hparams) | set(grids)) - {m.name for m in chosen})
    if unknown:
        raise ValueError(f"hyperparameters given for methods not being run: {unknown}.")
    tuned = {m.name for m in chosen} if tune_methods is None else set(tune_methods)
    if tuned - {m.name for m in chosen}:
        raise ValueError(f"tune_methods {sorted(tuned - {m.name for m in chosen})} are not "
                         f"among the methods being run ({', '.join(methods)}).")
    tuned = tuned if tune_seeds else set()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out) if resume else {"runs": []}
    if not resume:  # a fresh run: the previous run's curves would sit beside it unreferenced
        for stale in (out / "curves").glob("*_seed*.*"):
            stale.unlink()
    record = {**dict(config or {}), "methods": list(methods), "seeds": list(seeds),
              "tune_seeds": list(tune_seeds), "hparams": hparams, "grids": grids,
              "tune_methods": None if tune_methods is None else list(tune_methods),
              "selection_rule": SELECTION_RULE if tune_seeds else None,
              "tuning_grids": {m.name: dict(grids.get(m.name) or m.grid) for m in chosen
                               if m.name in tuned and (grids.get(m.name) or m.grid)},
              "trace_every": int(trace_every),
              "counts": getattr(splits, "info", {}).get("counts")}
    if resume:
        check_resume(out, record, results)
    results["config"] = record
    if retain_free and held_out is None and splits.forget["label"].ndim == 1:
        from imu_jax.stopping import infer_removal

        held_out = (splits.test, infer_removal(splits.forget["label"], splits.test["label"]))
    retain_free = retain_free and held_out is not None
    results["config"]["retain_free_rule"] = (
        {"rule": RETAIN_FREE_RULE, "removal": held_out[1]} if retain_free else None)
    runner = _Runner(splits, trainer, out, results, progress, trace_every,
                     held_out if retain_free else None)

    plans = {m.name: plan_jobs(m, tune_seeds if m.name in tuned else (),
                               overrides=hparams.get(m.name, {}), grid=grids.get(m.name))
             for m in chosen}
    free = {m.name: retain_free and not m.reference and m.name != "retrain" for m in chosen}
    fixed = {m.name: not free[m.name] or bool(m.name in tuned and m.grid) for m in chosen}
    total = (len(seeds) * (1 + sum(free.values()) + sum(fixed.values()))
             + sum(len(jobs) for jobs in plans.values()))
    from tqdm.auto import tqdm

    with tqdm(total=total, disable=not progress, desc="runs", unit="run") as bar:
        for seed in seeds:
            runner.run(ORIGINAL, seed, "eval", {})
            bar.update()
        for method in chosen:
            tune_jobs = plans[method.name]
            for i, (seed, point) in enumerate(tune_jobs):
                bar.set_postfix_str(f"{method.name} tune {i + 1}/{len(tune_jobs)}")
                runner.run(method, seed, "tune", point)
                bar.update()
            defaults = method.hparams(hparams.get(method.name)) if method.defaults else {}
            for seed in seeds if free[method.name] else ():
                bar.set_postfix_str(f"{method.name} retain-free seed {seed}")
                runner.run(method, seed, "retain_free", defaults)
                bar.update()
            selected = select_hparams(results["runs"], method.name)
            for seed in seeds if fixed[method.name] else ():
                bar.set_postfix_str(f"{method.name} seed {seed}")
                runner.run(method, seed, "eval", defaults if selected is None else selected)
                bar.update()
            write_reports(out, results)
    write_reports(out, results)
    return results


def run(
    *,
    dataset: str,
    model: str | None,
    forget: str | None,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | os.PathLike,
    tune_seeds: Sequence[int] = (),
    tune_methods: Sequence[str] | None = None,
    resume: bool = False,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence]] | None = None,
    train_config: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    split_seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    trace_every: int = 0,
    retain_free: bool = True,
) -> dict:
    """Everything ``imu-jax run`` does: splits, cached original/Retrain models, methods, reports.

    Example: ``run(dataset="digits", model="mlp", forget="class:3", methods=["retrain", "imu"],
    seeds=[0, 1, 2], tune_seeds=[100, 101], out="runs/digits_class3")`` (~1 min on 2 CPU cores).

    ``train_config`` overrides fields of the dataset's default recipe
    (``imu_jax.train.recipe(dataset, model)``), e.g. ``{"epochs": 5}``. ``split_seed`` drives
    ``random:`` and ``mislabeled:`` forget specs (the same forget set for every model seed).
    """
    for name in methods:  # unknown methods fail before any data is touched
        _get_method(name)
    from imu_jax.data import make_splits
    from imu_jax.train import build_model, recipe

    cfg = {**recipe(dataset, model), **dict(train_config or {})}
    cfg["forget"] = forget
    record = {"dataset": dataset, "model": cfg["model"], "forget": forget,
              "split_seed": split_seed, "train_config": cfg, "command": command,
              "retain_free": bool(retain_free)}
    if resume:  # before any data or training
        check_resume(out, {**record, "hparams": dict(hparams or {}), "grids": dict(grids or {}),
                           "tune_seeds": list(tune_seeds)})
    splits = make_splits(dataset, forget, seed=split_seed, data_dir=data_dir)
    build_model(cfg, splits)  # a model that does not fit the data fails before any training
    held_out = held_out_for(splits, forget, seed=split_seed)
    trainer = cached_trainer(splits, cfg, out, progress=progress)
    return run_experiment(splits=splits, trainer=trainer, methods=methods, seeds=seeds, out=out,
                          resume=resume, tune_seeds=tune_seeds, tune_methods=tune_methods,
                          hparams=hparams, grids=grids,
                          config=record, progress=progress, trace_every=trace_every,
                          held_out=held_out, retain_free=retain_free)
