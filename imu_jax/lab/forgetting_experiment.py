"""The per-example forgetting evaluation of one setting (issue 29): N original models, 2N
retrained models and every method applied to the originals, scored by the competition's
forgetting score F and U-LiRA beside the Avg. Gap and the SVC membership attack.

:func:`run_forgetting_score` (what ``imu-jax forgetting-score`` calls)

1. splits the dataset for the forget spec, with a VALIDATION split carved from the test split
   (:mod:`imu_jax.lab.protocol`: the step counts are chosen on it; TA and the SVC attack use the
   rest of the test split);
2. trains, with the vmapped ensemble trainer (:func:`imu_jax.lab.ensemble.train_ensemble`), N
   original models (seeds ``0..N-1``), N retrained models (the reference population, seeds
   ``0..N-1``) and N more retrained models (seeds ``FLOOR_SEED_OFFSET + i``: the
   Retrain-vs-Retrain floor, scored against the reference population exactly as a method is);
3. applies each method to each of the first n originals (model i unlearns with seed i) in a
   loop over models through the methods registry (the methods' loops are host-side Python, not
   one traceable program, so they are not vmapped), its length read from the VALIDATION split
   only (``step_choice``): by default each run is stopped by the retain-free stopping rule
   (docs/STOPPING.md: forget set vs validation split), exactly as ``imu-jax run``'s
   retain-free rows; ``"fixed"`` instead runs every model for one step count, the median of the
   steps the rule hands back on the first ``calibration_models`` originals (what a vmapped
   method would need; on a sharp forgetting cliff such as IMU's on a class it under- or
   overshoots the models whose own stop differs by a step);
4. collects the per-example logit-scaled confidence on the forget set of every model and
   computes F (:func:`imu_jax.lab.forgetting_score.forgetting_quality`, with its spread over
   bootstrap resamples of the models and its value on the first 8, 16, … models) and U-LiRA
   (:func:`imu_jax.lab.ulira.ulira_split`), and per model UA / RA / TA / MIA-efficacy (the SVC on
   confidence of :mod:`imu_jax.metrics`) and the Avg. Gap to the retrained model of the same
   seed, averaged over the models;
5. writes ``OUT/results.json`` and ``OUT/results.md`` (:mod:`imu_jax.lab.forgetting_report`);
   ``imu-jax plot OUT`` draws the per-example ε and AUC distributions from results.json.

``"original"`` (doing nothing) is scored with the original models themselves; ``"retrain_floor"``
with the floor population.

Examples:
  >>> import tempfile
  >>> out = tempfile.mkdtemp()
  >>> r = run_forgetting_score(dataset="digits", model="mlp", forget="class:3",
  ...     methods={"retrain_floor": 4, "original": 4}, out=out, bootstrap=0,
  ...     train_config={"epochs": 1, "model_options": {"hidden": (16,)}},
  ...     data_dir=tempfile.mkdtemp())
  >>> floor, original = r["methods"]["retrain_floor"], r["methods"]["original"]
  >>> r["config"]["seeds"]["floor"][:2], original["F"] < floor["F"]
  ([1000, 1001], True)
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Mapping, Sequence

import numpy as np

from imu_jax import methods as methods_lib
from imu_jax import metrics as metrics_lib
from imu_jax.lab.protocol import FLOOR_SEED_OFFSET

# Pseudo-methods scored from the trained populations themselves.
FLOOR, ORIGINAL = "retrain_floor", "original"
# F is also reported on the first n models of each population, for these n (≤ the method's N).
SUBSET_SIZES = (8, 16, 32, 64)
# Step-count calibration: the retain-free rule on this many originals, median of their steps.
CALIBRATION_MODELS = 3
DEFAULT_BOOTSTRAP = 10
# How each method's length is chosen; both read the VALIDATION split only (never the test split).
STEP_CHOICES = {
    "per_model": "the retain-free stopping rule (forget set vs validation split) stops each "
                 "model's run, as in imu-jax run's retain-free rows",
    "fixed": "one step count for all models: the median of the steps the retain-free rule "
             "hands back on the first calibration_models originals",
}


def _now() -> float:
    return time.perf_counter()


def _inputs(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    from imu_jax.unlearning.losses import input_and_labels

    return input_and_labels(arrays)[0]


def model_scores(model, params, state, splits) -> tuple[np.ndarray, dict]:
    """``(forget statistics [E], {ua, ra, ta, mia_efficacy})`` of one model: the logit-scaled
    confidence of each forget example's label, and the metrics of :mod:`imu_jax.metrics` (the
    SVC attack on confidence only) on the forget, retain and test splits."""
    from imu_jax.lab.evaluation import predict
    from imu_jax.lab.forgetting_score import logit_scaled_confidence

    names = ("forget", "retain", "test")
    logits = {n: predict(model, params, state, _inputs(getattr(splits, n))) for n in names}
    labels = {n: np.asarray(getattr(splits, n)["label"]) for n in names}
    stats = logit_scaled_confidence(logits["forget"].astype(np.float64), labels["forget"])
    metrics = metrics_lib.classification_metrics(
        {n: metrics_lib.softmax(v) for n, v in logits.items()}, labels,
        mia_kinds=("confidence",))
    return np.asarray(stats), {k: metrics[k] for k in ("ua", "ra", "ta", "mia_efficacy")}


def _population_scores(ens, splits, count: int) -> tuple[np.ndarray, list[dict]]:
    from imu_jax.lab.ensemble import unstack

    rows = [model_scores(ens.fm, unstack(ens.params, i), unstack(ens.state, i), splits)
            for i in range(count)]
    return np.stack([r[0] for r in rows]), [r[1] for r in rows]


def _task(fm, params, state, splits, **rule) -> methods_lib.UnlearnTask:
    from imu_jax.lab.evaluation import _input_normalization

    return methods_lib.UnlearnTask(
        model=fm, params=params, state=state, forget=splits.forget, retain=splits.retain,
        train=splits.train, num_classes=splits.num_classes,
        input_normalization=_input_normalization(splits), **rule)


def fixed_step_hparams(method: methods_lib.Method, steps: int, splits,
                       overrides: Mapping[str, Any] | None = None) -> dict:
    """The method's defaults (plus ``overrides``) with ``max_steps = steps`` and an ``epochs``
    long enough that ``max_steps`` ends the run (as the lab's tuning grid sets them:
    :func:`imu_jax.methods.grids.epochs_for_steps`).

    >>> import types, numpy as np
    >>> s = types.SimpleNamespace(forget={"label": np.zeros(300)}, retain={"label": np.zeros(9)})
    >>> h = fixed_step_hparams(methods_lib.get_method("ga_head"), 7, s)
    >>> h["max_steps"], h["epochs"]
    (7, 7)
    """
    from imu_jax.methods.base import RETAIN_SET
    from imu_jax.methods.grids import epochs_for_steps

    hparams = method.hparams(overrides)
    hparams["max_steps"] = int(steps)
    if "epochs" in hparams:
        hparams["epochs"] = epochs_for_steps(
            steps, hparams, num_forget=len(splits.forget["label"]),
            num_retain=len(splits.retain["label"]), iterates_retain=method.needs == RETAIN_SET)
    return hparams


def choose_steps(method: methods_lib.Method, originals, splits, held_out, *, models: int,
                 overrides: Mapping[str, Any] | None = None) -> tuple[int, list[int], float]:
    """The step count the retain-free stopping rule picks on the VALIDATION split (``held_out``
    = ``(validation arrays, removal)``): the rule run on the first ``models`` originals, the
    median (rounded down) of the steps each hands back. Returns ``(steps, per-model steps,
    seconds)``."""
    from imu_jax.lab.ensemble import unstack
    from imu_jax.unlearning.stopping import StopRule

    arrays, removal = held_out
    start, found = _now(), []
    for i in range(min(models, originals.num_models)):
        task = _task(originals.fm, unstack(originals.params, i), unstack(originals.state, i),
                     splits, held_out=arrays, stop_rule=StopRule(removal=removal))
        output = method.run(task, method.hparams(overrides), i)
        found.append(int(output.info["steps"]))
    return int(np.floor(np.median(found))), found, _now() - start


def apply_method(method: methods_lib.Method, originals, splits, *, count: int,
                 steps: int | None = None, held_out=None,
                 overrides: Mapping[str, Any] | None = None
                 ) -> tuple[np.ndarray, list[dict], list[int], float]:
    """``method`` on each of the first ``count`` originals (model i unlearns with seed i):
    stopped per model by the retain-free rule on ``held_out`` (``(validation arrays,
    removal)``) when ``steps`` is ``None``, else with ``steps`` fixed optimizer steps
    (``steps == 0``: the original models are handed back). Returns ``(forget statistics
    [count, E], per-model metrics, per-model steps, mean seconds per model)``."""
    from imu_jax.lab.ensemble import unstack
    from imu_jax.unlearning.stopping import StopRule

    if steps is None:
        arrays, removal = held_out
        rule = {"held_out": arrays, "stop_rule": StopRule(removal=removal)}
        hparams = method.hparams(overrides)
    else:
        rule, hparams = {}, fixed_step_hparams(method, max(steps, 1), splits, overrides)
    stats, metrics, taken, seconds = [], [], [], []
    for i in range(count):
        params, state = unstack(originals.params, i), unstack(originals.state, i)
        if steps is None or steps > 0:
            output = method.run(_task(originals.fm, params, state, splits, **rule),
                                dict(hparams), i)
            params, state = output.params, output.state
            seconds.append(output.seconds)
            taken.append(int(output.info["steps"]))
        else:
            taken.append(0)
        s, m = model_scores(originals.fm, params, state, splits)
        stats.append(s)
        metrics.append(m)
    return np.stack(stats), metrics, taken, float(np.mean(seconds)) if seconds else 0.0


def bootstrap_scores(unlearned: np.ndarray, retrained: np.ndarray, *, resamples: int,
                     seed: int = 0) -> list[float]:
    """F on ``resamples`` bootstrap resamples of the models (rows of each population drawn with
    replacement, independently; the examples are kept), for the spread of F over the models.

    >>> rng = np.random.default_rng(0)
    >>> scores = bootstrap_scores(rng.normal(size=(8, 4)), rng.normal(size=(8, 4)), resamples=3)
    >>> len(scores), all(0 <= s <= 1 for s in scores)
    (3, True)
    """
    from imu_jax.lab.forgetting_score import forgetting_quality

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(resamples)):
        u = unlearned[rng.integers(0, len(unlearned), len(unlearned))]
        r = retrained[rng.integers(0, len(retrained), len(retrained))]
        out.append(forgetting_quality(u, r).score)
    return out


def score_method(unlearned: np.ndarray, retrained: np.ndarray, metrics: Sequence[dict],
                 reference_metrics: Sequence[dict], *, bootstrap: int,
                 subsets: Sequence[int] = SUBSET_SIZES) -> dict:
    """Everything reported for one method from its ``[n, E]`` forget statistics and the
    ``[N, E]`` of the reference retrained population (its first n models are paired with the
    method's n): F with its bootstrap spread and its values on the first 8, 16, … models,
    U-LiRA, and the mean (± std over models) UA / RA / TA / MIA-efficacy and Avg. Gap (model i
    against retrained model i)."""
    from imu_jax.lab.forgetting_score import forgetting_quality
    from imu_jax.lab.ulira import ulira_split

    n = len(unlearned)
    reference = retrained[:n]
    quality = forgetting_quality(unlearned, reference)
    boot = bootstrap_scores(unlearned, reference, resamples=bootstrap) if bootstrap else []
    by_n = {str(k): forgetting_quality(unlearned[:k], reference[:k]).score
            for k in subsets if 3 <= k < n}
    by_n[str(n)] = quality.score
    attack = ulira_split(unlearned, reference, seed=0)
    gaps = [metrics_lib.avg_gap(m, reference_metrics[i]) for i, m in enumerate(metrics)]
    mean = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
    return {
        "n_models": n, "F": quality.score,
        "F_bootstrap": {"resamples": len(boot), "std": float(np.std(boot)) if boot else None,
                        "p5": float(np.percentile(boot, 5)) if boot else None,
                        "p95": float(np.percentile(boot, 95)) if boot else None},
        "F_by_n": by_n, "max_epsilon": quality.max_epsilon,
        "epsilon_median": float(np.median(quality.epsilons)),
        "epsilons": [round(float(e), 3) for e in quality.epsilons],
        "ulira": {"auc": attack.auc, "mean_example_auc": attack.mean_example_auc,
                  "accuracy": attack.accuracy,
                  "tpr_at_fpr": {str(k): v for k, v in attack.tpr_at_fpr.items()},
                  "per_example_auc": [round(float(a), 3) for a in attack.per_example_auc]},
        "metrics": mean,
        "metrics_std": {k: float(np.std([m[k] for m in metrics])) for k in metrics[0]},
        "avg_gap": float(np.mean(gaps)), "avg_gap_std": float(np.std(gaps)),
    }


def _counts(methods: Mapping[str, int] | Sequence[str], n_models: int) -> dict[str, int]:
    counts = dict(methods) if isinstance(methods, Mapping) else {m: n_models for m in methods}
    for name, count in counts.items():
        if name not in (FLOOR, ORIGINAL):
            methods_lib.get_method(name)  # unknown names fail before any training
        if not 4 <= int(count) <= n_models:
            raise ValueError(f"{name}: {count} models; give 4 … n_models ({n_models}).")
    return {k: int(v) for k, v in counts.items()}


# The keys of an experiments/configs/forgetting_score_*.py get_config().
CONFIG_KEYS = ("dataset", "model", "forget", "methods", "n_models", "train_config", "hparams",
               "bootstrap", "calibration_models", "step_choice", "split_seed")


def check_config(cfg: Mapping[str, Any], where: str = "config") -> None:
    """A ``ValueError`` for an unknown key, a missing dataset / forget spec / methods, an
    unknown method or a model count outside 4 … n_models, before any data or training.

    >>> check_config({"dataset": "digits", "forget": "class:3", "methods": {"imu": 8}})
    >>> check_config({"dataset": "digits", "forget": "class:3", "methods": {"imu": 8}, "n": 3})
    Traceback (most recent call last):
    ...
    ValueError: config: unknown key(s) ['n']; it takes dataset, model, forget, methods, ...
    """
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; it takes {', '.join(CONFIG_KEYS)}.")
    missing = [k for k in ("dataset", "forget", "methods") if not cfg.get(k)]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}.")
    methods = cfg["methods"]
    n_models = cfg.get("n_models") or max(dict(methods).values() if isinstance(methods, Mapping)
                                          else [32])
    _counts(methods, int(n_models))
    if cfg.get("step_choice", "per_model") not in STEP_CHOICES:
        raise ValueError(f"{where}: step_choice must be one of {tuple(STEP_CHOICES)}.")


def run_forgetting_score(*, dataset: str, model: str | None, forget: str,
                         methods: Mapping[str, int] | Sequence[str], out,
                         n_models: int | None = None, train_config: Mapping | None = None,
                         hparams: Mapping[str, Mapping] | None = None,
                         bootstrap: int = DEFAULT_BOOTSTRAP,
                         calibration_models: int = CALIBRATION_MODELS,
                         step_choice: str = "per_model", split_seed: int = 0, data_dir=None,
                         command: str | None = None,
                         progress: bool = False) -> dict:
    """Runs the evaluation (module docstring) and writes ``OUT/results.json`` / ``results.md``.

    ``methods``: ``{name: number of originals it is applied to}`` (or a list: all
    ``n_models``); names are the registry's plus ``"original"`` and ``"retrain_floor"``.
    ``n_models`` (default: the largest count): the size of the original, retrained and floor
    populations. ``train_config`` overrides fields of the dataset's recipe. Returns the
    results dict."""
    from imu_jax.data import VALIDATION_FRACTION, make_splits
    from imu_jax.lab import forgetting_report
    from imu_jax.lab.ensemble import train_ensemble
    from imu_jax.lab.evaluation import held_out_for
    from imu_jax.lab.protocol import held_out_record
    from imu_jax.train import recipe

    if step_choice not in STEP_CHOICES:
        raise ValueError(f"step_choice must be one of {STEP_CHOICES}, got {step_choice!r}.")
    began = _now()
    n_models = int(n_models or max(dict(methods).values() if isinstance(methods, Mapping)
                                   else [32]))
    counts = _counts(methods, n_models)
    hparams = {k: dict(v) for k, v in (hparams or {}).items()}
    cfg = {**recipe(dataset, model), **dict(train_config or {}), "forget": forget}
    splits = make_splits(dataset, forget, seed=split_seed, data_dir=data_dir,
                         validation=VALIDATION_FRACTION)
    held_out = held_out_for(splits, forget, seed=split_seed)
    seeds = {"original": list(range(n_models)), "retrained": list(range(n_models)),
             "floor": [FLOOR_SEED_OFFSET + i for i in range(n_models)]}
    times: dict[str, Any] = {}
    trained = {}
    for name, retrain in (("original", False), ("retrained", True), ("floor", True)):
        start = _now()
        trained[name] = train_ensemble(cfg, splits, seeds[name], retrain=retrain)
        times[f"train_{name}_s"] = _now() - start
        if progress:
            print(f"trained {n_models} {name} models in {times[f'train_{name}_s']:.1f} s",
                  flush=True)
    start = _now()
    populations = {name: _population_scores(ens, splits, n_models)
                   for name, ens in trained.items()}
    times["score_populations_s"] = _now() - start
    reference_stats, reference_metrics = populations["retrained"]
    record = {"kind": "forgetting_score", "dataset": dataset, "model": cfg["model"],
              "forget": forget, "split_seed": split_seed, "train_config": cfg,
              "n_models": n_models, "seeds": seeds, "method_models": counts,
              "hparams": hparams, "bootstrap": int(bootstrap),
              "calibration_models": int(calibration_models), "command": command,
              "statistic": "logit-scaled confidence of the true label on the forget set",
              "step_choice": step_choice, "step_rule": STEP_CHOICES[step_choice],
              "counts": (getattr(splits, "info", None) or {}).get("counts"),
              "held_out": held_out_record(splits), "removal": held_out[1]}
    results: dict[str, Any] = {"config": record, "times": times, "methods": {}}
    for name, count in counts.items():
        start = _now()
        if name in (FLOOR, ORIGINAL):
            stats, metrics = populations["floor" if name == FLOOR else "original"]
            stats, metrics, info = stats[:count], metrics[:count], {}
        else:
            method = methods_lib.get_method(name)
            info = {"needs": method.needs}
            steps = None
            if step_choice == "fixed":
                steps, found, calib_s = choose_steps(
                    method, trained["original"], splits, held_out, models=calibration_models,
                    overrides=hparams.get(name))
                info.update(calibration_steps=found, calibration_s=calib_s,
                            hparams=fixed_step_hparams(method, max(steps, 1), splits,
                                                       hparams.get(name)))
            else:
                info["hparams"] = method.hparams(hparams.get(name))
            stats, metrics, taken, per_model_s = apply_method(
                method, trained["original"], splits, count=count, steps=steps,
                held_out=held_out, overrides=hparams.get(name))
            info.update(steps=steps if steps is not None else int(np.median(taken)),
                        steps_per_model=taken, seconds_per_model=per_model_s)
        applied = _now() - start
        start = _now()
        entry = score_method(stats, reference_stats, metrics, reference_metrics,
                             bootstrap=bootstrap)
        entry.update(info, apply_s=applied, score_s=_now() - start)
        if name == FLOOR:
            entry["needs"] = "retain set (other seeds)"
        elif name == ORIGINAL:
            entry["needs"] = "— (before unlearning)"
        results["methods"][name] = entry
        if progress:
            print(f"{name}: N={count} F={entry['F']:.3f} U-LiRA AUC={entry['ulira']['auc']:.3f} "
                  f"Avg.Gap={100 * entry['avg_gap']:.1f} ({applied:.0f} s + "
                  f"{entry['score_s']:.0f} s scoring)", flush=True)
        times["total_s"] = _now() - began
        forgetting_report.write(pathlib.Path(out), results)  # saved after every method
    return results


__all__ = ["CALIBRATION_MODELS", "CONFIG_KEYS", "FLOOR", "ORIGINAL", "STEP_CHOICES", "SUBSET_SIZES",
           "apply_method", "bootstrap_scores", "check_config", "choose_steps",
           "fixed_step_hparams", "model_scores", "run_forgetting_score", "score_method"]
