"""Unlearning experiments: original + Retrain models, every method × seed, results on disk.

:func:`run_experiment` is what ``imu-jax run`` calls (the CLI only parses arguments). It

1. splits the dataset for the forget spec (``imu_jax.data.make_splits``) and carves a
   validation split out of the test split (``imu_jax.data.carve_validation``);
2. trains — or loads from ``OUT/models/`` — the original and the Retrain model of every seed
   (and, for the noise floor, the Retrain model of another seed: ``protocol.floor_seed``);
3. runs each method on each seed (optionally tuning it first: the shared grid on separate tuning
   seeds, scored on the validation split (:mod:`imu_jax.lab.protocol`), the config with the
   smallest mean Avg. Gap then reported on the seeds, scored on the test split);
4. writes ``OUT/results.json`` (the tuning runs in ``OUT/tune_runs.jsonl.xz``,
   :mod:`imu_jax.lab.store`) after every finished (method, seed) run, so an interrupted run
   keeps its results and ``resume=True`` skips them; then ``results.md`` and ``tradeoff.png``.
"""

from __future__ import annotations

import os
import pathlib
import time
import types
from typing import Any, Mapping, Sequence

import numpy as np

from imu_jax import _compile_clock, methods as methods_lib
from imu_jax.lab.evaluation import (_input_normalization, _splits_dict, collapsed, evaluate,
                                    gap_to_retrain, held_out_for, model_outputs, predict,
                                    trace_metrics, trace_rows, validation_view, with_validation)
from imu_jax.lab.models_cache import TrainedModel, Trainer, cached_trainer
from imu_jax.lab.curves import remove_curves, write_curve
from imu_jax.lab.protocol import (ORIGINAL, PROTOCOL, RETRAIN_FLOOR, SCORED_ON, check_protocol,
                                  floor_seed, held_out_record, is_test_data, with_floor)
from imu_jax.lab.selection import (RETAIN_FREE_RULE, SELECTION_RULE, plan_jobs, select_hparams,
                                   tuning_grids)
from imu_jax.lab import interrupts
from imu_jax.lab.store import (SharedResults, check_fresh, check_resume, key_of, load_results,
                               run_key, write_reports)
from imu_jax.unlearning.losses import input_and_labels


def _get_method(name: str) -> methods_lib.Method:
    return RETRAIN_FLOOR if name == RETRAIN_FLOOR.name else methods_lib.get_method(name)


def runnable_methods() -> list[str]:
    """The names ``imu-jax run --methods`` accepts: the registry's, then the runner's own
    ``retrain_floor``.

    >>> runnable_methods()[-1]
    'retrain_floor'
    """
    return methods_lib.available() + [RETRAIN_FLOOR.name]


class _Runner:
    """Holds the state of one experiment; see :func:`run_experiment`."""

    def __init__(self, splits, trainer: Trainer, out: pathlib.Path, store: SharedResults,
                 progress, trace_every: int, held_out, floor_of):
        self.splits, self.trainer, self.out = splits, trainer, out
        # "test": the splits themselves (reported runs); "validation": every held-out split
        # replaced by its validation part (what the tuning is scored on)
        self.views = {"test": splits, "validation": validation_view(splits)}
        self.store, self.results = store, store.results
        results = store.results
        self.trace_every, self.progress = int(trace_every), progress
        self.held_out = held_out  # (held-out arrays, removal) of the retain-free rule
        self.floor_of = floor_of  # seed -> the seed of its floor row's Retrain (floor_seed)
        self.done = {key_of(r) for r in results["runs"]}
        self._models: dict[tuple[bool, int], TrainedModel] = {}
        self._evaluated: dict[tuple[bool, int, str], tuple[dict, dict]] = {}

    def trained(self, retrain: bool, seed: int) -> TrainedModel:
        if (retrain, seed) not in self._models:
            self._models[(retrain, seed)] = self.trainer(retrain, seed)
        return self._models[(retrain, seed)]

    def reference(self, retrain: bool, seed: int, view: str = "test") -> tuple[dict, dict]:
        """``(logits, metrics)`` of the original or Retrain model of ``seed`` on ``view``
        (``"test"`` or ``"validation"``, see :data:`SCORED_ON`)."""
        if (retrain, seed, view) not in self._evaluated:
            model = self.trained(retrain, seed)
            splits = self.views[view]
            outputs = model_outputs(model, model.params, model.state, splits)
            retrain_outputs = outputs if retrain else self.reference(True, seed, view)[0]
            self._evaluated[(retrain, seed, view)] = (
                outputs, evaluate(outputs, splits, retrain_outputs))
        return self._evaluated[(retrain, seed, view)]

    def record(self, run: dict) -> None:
        self.store.add(run)  # saved at once, merged with what other writers saved
        self.done.add(key_of(run))

    def run(self, method: methods_lib.Method, seed: int, role: str, hparams: dict) -> None:
        interrupts.check()  # a Ctrl-C that something swallowed stops here, between two runs
        if run_key(method.name, seed, role, hparams) in self.done:
            return
        view = SCORED_ON[role]
        splits = self.views[view]  # the tuning is scored on validation data only
        retrain_outputs, retrain_metrics = self.reference(True, seed, view)
        trace, compile_seconds = None, None  # part of seconds; None: not measured (Retrain)
        if method.name == RETRAIN_FLOOR.name:
            other_seed = self.floor_of(seed)
            other = self.trained(True, other_seed)
            outputs = model_outputs(other, other.params, other.state, splits)
            metrics = evaluate(outputs, splits, retrain_outputs)
            seconds, info = other.seconds, {"retrain_seed": other_seed}
        elif method.name in ("retrain", "original"):
            retrain = method.name == "retrain"
            outputs, metrics = self.reference(retrain, seed, view)
            seconds, info = (self.trained(True, seed).seconds if retrain else 0.0), {}
        else:
            original = self.trained(False, seed)
            task = methods_lib.UnlearnTask(
                model=original.model, params=original.params, state=original.state,
                forget=self.splits.forget, retain=self.splits.retain, train=self.splits.train,
                num_classes=self.splits.num_classes,
                retrain_fn=lambda s: (lambda m: (m.params, m.state))(self.trained(True, s)),
                input_normalization=_input_normalization(self.splits), **self._rule(role))
            from imu_jax.unlearning import loop_checkpoint
            resumed_before = len(loop_checkpoint.resumed_steps())
            clock = {"seconds": 0.0, "compile_seconds": 0.0}
            if self.trace_every and role in ("eval", "retain_free"):
                trace = []
                task.on_step = self._tracer(original, seed, trace, clock)
                task.on_step(0, original.params, original.state)
                clock.update(seconds=0.0, compile_seconds=0.0)  # step 0: before the method's clock
            output = method.run(task, dict(hparams), seed)
            outputs = model_outputs(original, output.params, output.state, splits)
            metrics = evaluate(outputs, splits, retrain_outputs)
            seconds, info = output.seconds - clock["seconds"], dict(output.info)
            compile_seconds = min(seconds, output.compile_seconds - clock["compile_seconds"])
            resumed = loop_checkpoint.resumed_steps()[resumed_before:]
            if resumed:  # its seconds count only the part after the checkpoint
                info["resumed_from_step"] = resumed[0]
        run = {"method": method.name, "seed": int(seed), "role": role, "hparams": hparams,
               "metrics": metrics, "avg_gap": gap_to_retrain(metrics, retrain_metrics),
               "seconds": float(seconds), "needs": method.needs, "info": dict(info),
               "scored_on": view, "compile_seconds": compile_seconds}  # report.runs.run_seconds
        if trace is not None:
            run["trace"] = trace
        if info.get("diverged"):  # scored nowhere: the tables show it as diverged
            run["diverged"] = True
        flag = collapsed(metrics, splits)  # None for sequences
        if flag is not None:
            run["collapsed"] = flag
        config = self.results["config"]
        if (role == "eval" and config.get("tune_seeds")
                and method.name in (config.get("tuning_grids") or {})):
            run["selection"] = "oracle-tuned"
        with self.store.lock():  # curves.jsonl.xz is shared with other writers into out
            write_curve(self.out, run)
        self.record(run)

    def _tracer(self, original: TrainedModel, seed: int, trace: list, clock: dict):
        """``on_step`` recording :func:`trace_metrics` every ``trace_every`` steps (and step 0)
        on the splits it needs (:func:`trace_rows` of each); its time (and its compile time) is
        added to ``clock`` and left out of the RTE."""
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
            with _compile_clock.compile_clock() as compiling:
                start = time.perf_counter()
                outputs = {n: predict(original.model, params, state, inputs[n]) for n in names}
                trace.append({"step": int(step), **trace_metrics(outputs, subset, reference)})
            clock["seconds"] += time.perf_counter() - start
            clock["compile_seconds"] += compiling.seconds_since(start)

        return on_step

    def _rule(self, role: str) -> dict:
        """The stopping-rule fields of a retain-free run's task."""
        if role != "retain_free":
            return {}
        from imu_jax.unlearning.stopping import StopRule

        held_out, removal = self.held_out
        return {"held_out": held_out, "stop_rule": StopRule(removal=removal),
                "progress": bool(self.progress)}


def run_experiment(
    *,
    splits,
    trainer: Trainer,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    tune_seeds: Sequence[int] = (),
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence]] | None = None,
    config: Mapping[str, Any] | None = None,
    tune_methods: Sequence[str] | None = None,
    progress: bool = True,
    trace_every: int = 0,
    held_out: tuple[Mapping[str, np.ndarray], str] | None = None,
    retain_free: bool = True,
    noise_floor: bool | str = True,
) -> dict:
    """Runs ``methods`` × ``seeds`` and writes ``results.json`` / ``.md`` / ``tradeoff.png``.

    Args:
      splits: an ``imu_jax.data.Splits`` (forget, retain, test, train, num_classes, ...). Without
        a ``validation`` split one is carved from ``test`` first
        (``imu_jax.data.carve_validation``: ``VALIDATION_FRACTION``, stratified by label, seeded
        by ``config["split_seed"]``): the stopping rule and the tuning read it, TA and the
        membership attack of the reported runs use the rest of ``test``.
      trainer: ``trainer(retrain, seed) -> TrainedModel`` (see :func:`cached_trainer`).
      methods: registry names (``imu_jax.methods.available()``); ``"retrain"`` reports the
        Retrain model itself. The original model is always reported as ``"original"``.
      seeds: model and unlearning seeds; each seed has its own original and Retrain model.
      out: output directory.
      resume: keep the (method, seed) runs already in ``out/results.json`` and skip them.
        Without it a folder that holds finished runs is refused (a one-line ``ValueError`` naming
        ``resume`` and ``overwrite``), unless another writer into ``out`` is running (it joins).
      overwrite: start afresh in a folder that holds finished runs: they are dropped at the first
        save and the previous run's ``out/curves.jsonl.xz`` is removed.
      tune_seeds: when given, each method's grid runs on these seeds (their own original and
        Retrain models), scored on the validation split, and the config with the smallest mean
        Avg. Gap is reported on ``seeds`` (``SELECTION_RULE``). Empty: every method runs its
        defaults (plus ``hparams``). The shared step grid's ``max_steps`` axis is resized to the
        setting's retain-free cap (``imu_jax.methods.grids.retain_free_cap``).
      tune_methods: with ``tune_seeds``, the methods that are oracle-tuned (default ``None``:
        every method); the others get only their retain-free row (their grid is not run).
      hparams: per-method overrides of the defaults, ``{"imu": {"learning_rate": 0.1}}``.
      grids: per-method replacements of the tuning grids.
      config: recorded verbatim in ``results.json["config"]`` (dataset, command, ...).
      progress: show a tqdm progress bar.
      trace_every: when > 0, every reported (eval or retain-free) run of a gradient method also records
        :func:`trace_metrics` every ``trace_every`` optimizer steps on at most
        ``TRACE_EXAMPLES`` examples of each split (``run["trace"]``; plotted in
        ``steps.png``).
      held_out: ``(arrays, removal)`` for the retain-free stopping rule (:func:`held_out_for`);
        default: the validation split, with the removal kind inferred from the labels
        (``imu_jax.unlearning.stopping.infer_removal``). The test split is refused here.
      retain_free: run every non-reference method with its defaults under the stopping rule
        (role ``"retain_free"``, ``RETAIN_FREE_RULE``). The fixed-length runs of role ``"eval"``
        then run only when ``tune_seeds`` are given (oracle-tuned); with ``retain_free=False``
        they always run (defaults, fixed length). Sequence data has no rule: fixed length.
      noise_floor: also report ``"retrain_floor"`` (added to ``methods`` when absent): the
        Retrain model of another seed scored against Retrain of seed, the Avg. Gap that training
        randomness alone makes (the "Retrain vs Retrain" row of every table). ``True``: seed +
        1000 (one more model per seed); ``"next_seed"``: the next seed of ``seeds``, cyclically
        (no extra model; :func:`imu_jax.lab.protocol.floor_seed`); ``False``: no floor row.

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
      ['imu', 'original', 'retrain', 'retrain_floor']
      >>> sorted({r["scored_on"] for r in results["runs"]}), results["config"]["held_out"]["test"]
      (['test'], 15)
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed.")
    chosen = with_floor([_get_method(name) for name in methods], seeds, noise_floor)
    if len(splits.forget["label"]) == 0:
        raise ValueError(f"the forget set is empty (spec {(config or {}).get('forget')!r}): "
                         "nothing to unlearn.")
    splits = with_validation(splits, seed=int((config or {}).get("split_seed") or 0))
    if held_out is not None and is_test_data(held_out[0], splits):
        raise ValueError("held_out is the test split, on which TA and the membership attack are "
                         "measured; the stopping rule reads the validation split "
                         "(held_out_for, or leave held_out=None).")
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
    tuning, cap = tuning_grids(chosen, tuned, grids, len(splits.forget["label"]))
    record = {**dict(config or {}), "methods": [m.name for m in chosen], "seeds": list(seeds),
              "tune_seeds": list(tune_seeds), "hparams": hparams, "grids": grids,
              "tune_methods": None if tune_methods is None else list(tune_methods),
              "selection_rule": SELECTION_RULE if tune_seeds else None,
              "tuning_grids": {name: {k: list(v) for k, v in grid.items()}
                               for name, grid in tuning.items()},
              "step_cap": cap if tuning else None,
              "trace_every": int(trace_every),
              "counts": (getattr(splits, "info", None) or {}).get("counts"),
              "held_out": held_out_record(splits), "noise_floor": noise_floor or False,
              "protocol": PROTOCOL}
    if resume:
        check_protocol(out, results, record)
        check_resume(out, record, results)
    results["config"] = record
    if retain_free and held_out is None and splits.forget["label"].ndim == 1:
        from imu_jax.unlearning.stopping import infer_removal

        held_out = (splits.validation,
                    infer_removal(splits.forget["label"], splits.validation["label"]))
    retain_free = retain_free and held_out is not None
    results["config"]["retain_free_rule"] = (
        {"rule": RETAIN_FREE_RULE, "removal": held_out[1]} if retain_free else None)
    store = SharedResults(out, results, resume=resume, overwrite=overwrite)  # and other writers
    if not resume and not store.joined:  # a fresh run: old curves would sit beside it
        remove_curves(out)
    try:
        return _run_all(store, splits, trainer, out, progress, trace_every,
                        held_out if retain_free else None, chosen, seeds, tune_seeds, tuned,
                        hparams, tuning, retain_free, noise_floor)
    finally:
        store.close()


def _run_all(store, splits, trainer, out, progress, trace_every, held_out, chosen, seeds,
             tune_seeds, tuned, hparams, tuning, retain_free, noise_floor=True) -> dict:
    """Every (method, seed) job of :func:`run_experiment`, in order, each saved as it ends."""
    results = store.results
    runner = _Runner(splits, trainer, out, store, progress, trace_every, held_out,
                     floor_of=lambda seed: floor_seed(seed, seeds, noise_floor or True))
    retain = getattr(splits, "retain", None)
    sizes = {"forget": len(splits.forget["label"]),
             "retain": None if retain is None else len(retain["label"])}
    plans = {m.name: plan_jobs(m, tune_seeds if m.name in tuning else (),
                               overrides=hparams.get(m.name, {}), grid=tuning.get(m.name, {}),
                               sizes=sizes)
             for m in chosen}
    free = {m.name: retain_free and not m.reference and m.name != "retrain" for m in chosen}
    fixed = {m.name: not free[m.name] or m.name in tuning for m in chosen}
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
            with store.lock():  # one writer at a time draws the reports of out
                write_reports(out, results)
    store.add()  # the final report shows what every writer into out saved
    with store.lock():
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
    overwrite: bool = False,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence]] | None = None,
    train_config: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    split_seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    trace_every: int = 0,
    retain_free: bool = True,
    noise_floor: bool | str = True,
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
    from imu_jax.data import VALIDATION_FRACTION, make_splits
    from imu_jax.train import build_model, recipe

    cfg = {**recipe(dataset, model), **dict(train_config or {}), "forget": forget}
    record = {"dataset": dataset, "model": cfg["model"], "forget": forget,
              "split_seed": split_seed, "train_config": cfg, "command": command,
              "retain_free": bool(retain_free)}
    if resume:  # before any data or training
        check_resume(out, {**record, "hparams": dict(hparams or {}), "grids": dict(grids or {}),
                           "tune_seeds": list(tune_seeds)})
    else:  # finished runs in out are not dropped without overwrite
        check_fresh(out, overwrite=overwrite)
    splits = make_splits(dataset, forget, seed=split_seed, data_dir=data_dir,
                         validation=VALIDATION_FRACTION)  # the rule's and the tuning's data
    build_model(cfg, splits)  # a model that does not fit the data fails before any training
    held_out = held_out_for(splits, forget, seed=split_seed)
    trainer = cached_trainer(splits, cfg, out, progress=progress)
    return run_experiment(splits=splits, trainer=trainer, methods=methods, seeds=seeds, out=out,
                          resume=resume, overwrite=overwrite, tune_seeds=tune_seeds,
                          tune_methods=tune_methods, hparams=hparams, grids=grids,
                          config=record, progress=progress, trace_every=trace_every,
                          held_out=held_out, retain_free=retain_free, noise_floor=noise_floor)
