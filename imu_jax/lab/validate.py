"""Checks of the command line's options, all before any data is loaded or model trained.

Each command has a table of ``(flag, check)`` rows; ``check(values)`` returns what is wrong with
the resolved option values (a dict: flags, else ``--config``, else defaults) or ``None``.
:func:`validate` raises :class:`OptionError` (a ``ValueError``) for the first problem, as one
line naming the flag; the CLI prints it and exits with status 2. A new flag = one row.

Examples:
  >>> validate(TRAIN_CHECKS, {"dataset": "digits", "epochs": 0, "out": "runs/x"})
  Traceback (most recent call last):
  ...
  imu_jax.lab.validate.OptionError: --epochs: must be >= 1, got 0
  >>> check_value("epochs", 10.5, 10)
  'expected an integer (like the default 10), got 10.5'
"""

from __future__ import annotations

import itertools
import math
import pathlib
import tempfile
from typing import Any, Callable, Mapping


Check = Callable[[Mapping[str, Any]], "str | None"]


class OptionError(ValueError):
    """A command-line option with a bad value; the message starts with the flag."""


# Numeric settings that must be > 0 (every other number must be >= 0).
POSITIVE = {"learning_rate", "lr", "epochs", "batch_size", "eval_batch_size", "max_steps",
            "top_fraction", "keep_checkpoints", "gamma"}

# Settings whose default is None (= off / automatic) that otherwise take an integer.
OPTIONAL_INTEGERS = {"max_steps", "influence_chunk_size"}


def _kind(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, dict):
        return "dict"
    return "any"


_EXPECTED = {"bool": "true or false", "int": "an integer", "number": "a number", "str": "a string",
             "list": "a JSON list", "dict": "a JSON object"}


def check_value(name: str, value: Any, default: Any) -> str | None:
    """What is wrong with ``value`` for a setting whose default is ``default``, or ``None``:
    the same JSON type as the default (an integer where the default is one), finite, and
    ``> 0`` for the names in :data:`POSITIVE`, ``>= 0`` for other numbers.

    >>> check_value("learning_rate", "abc", 0.01)
    "expected a number (like the default 0.01), got 'abc'"
    >>> check_value("learning_rate", 0.02, 0.01) is None, check_value("max_steps", 5, None)
    (True, None)
    >>> check_value("max_steps", "abc", None)
    "expected an integer (like the default None), got 'abc'"
    """
    kind = "int" if default is None and name in OPTIONAL_INTEGERS else _kind(default)
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "list": lambda v: isinstance(v, (list, tuple)),
          "dict": lambda v: isinstance(v, dict),
          "any": lambda v: True}[kind]
    if value is None and default is None:
        return None
    if not ok(value):
        return f"expected {_EXPECTED[kind]} (like the default {default!r}), got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if name in POSITIVE and not value > 0:
            return f"must be > 0, got {value!r}"
        if value < 0:
            return f"must be >= 0, got {value!r}"
    return None


# -- individual checks (each returns a problem or None) --------------------------------------

def _dataset(values) -> str | None:
    from imu_jax.data.sources import canonical_name

    if values.get("dataset") is None:
        return None
    try:
        canonical_name(values["dataset"])
    except ValueError as err:
        return str(err)
    return None


def _model(values) -> str | None:
    from imu_jax.models import REGISTRY

    model = values.get("model")
    if model is not None and model not in REGISTRY:
        return f"unknown model {model!r}; valid: {', '.join(REGISTRY)}"
    return None


def _is_sequence(dataset: str) -> bool:
    return dataset.split("/")[0] in ("markov", "markov_chain")


def _forget(values) -> str | None:
    from imu_jax.data import parse_forget_spec

    forget, dataset = values.get("forget"), values.get("dataset") or "digits"
    if forget is None:
        if values.get("forget_required") and not _is_sequence(dataset):
            return (f"required for dataset {dataset!r} (what to forget, e.g. class:3, "
                    "random:0.1, mislabeled:0.1)")
        return None
    try:
        parse_forget_spec(forget)
    except ValueError as err:
        return str(err)
    return None


def _methods(values) -> str | None:
    from imu_jax.lab.runner import runnable_methods as available

    methods = values.get("methods")
    if not methods or not all(str(m).strip() for m in methods):
        return f"give at least one method (comma-separated, no empty names): {', '.join(available())}"
    unknown = [m for m in methods if m not in available()]
    if unknown:
        return f"unknown method {unknown[0]!r}; valid: {', '.join(available())}"
    return None


def _tune_seeds_apart(values) -> str | None:
    """Tuning on a seed that is also reported selects on the numbers it then reports."""
    both = sorted(set(values.get("tune_seeds") or []) & set(values.get("seeds") or []))
    if both:
        return (f"seed(s) {both} are also in --seeds: tuning there would select each method on "
                f"the runs it then reports; use tuning seeds apart from the evaluated ones "
                f"(e.g. --tune-seeds 100)")
    return None


def _grids_need_tuning(values) -> str | None:
    """A grid is what tuning runs on: without tuning seeds it would be silently unused."""
    if values.get("grids") and not values.get("tune_seeds"):
        return "only means something with --tune-seeds (the seeds the grid runs on)"
    return None


def _tune_methods(values) -> str | None:
    chosen = values.get("tune_methods")
    if chosen is None:
        return None
    running = list(values.get("methods") or [])
    outside = [m for m in chosen if m not in running]
    if outside:
        return f"{outside[0]!r} is not among the methods being run ({', '.join(running)})"
    if not values.get("tune_seeds"):
        return "only means something with --tune-seeds (the seeds the grid runs on)"
    return None


def _seed_list(key: str, *, required: bool) -> Check:
    def check(values):
        seeds = values.get(key)
        if seeds is None:
            return None
        if required and not seeds:
            return "give at least one seed"
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            return f"seeds are integers >= 0, got {bad[0]!r}"
        if len(set(seeds)) != len(seeds):
            return f"a seed is repeated: {list(seeds)}"
        return None
    return check


def _integer(key: str, minimum: int) -> Check:
    def check(values):
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if value < minimum:
            return f"must be >= {minimum}, got {value}"
        return None
    return check


def _positive_number(key: str) -> Check:
    def check(values):
        value = values.get(key)
        if value is None:
            return None
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            return f"must be a number > 0, got {value!r}"
        return None
    return check


def _method_values(key: str, *, sweep: bool) -> Check:
    def check(values):
        from imu_jax.methods import get_method

        running = set(values.get("methods") or [])
        for method, settings in (values.get(key) or {}).items():
            if method not in running:
                return (f"{method!r} is not among the methods being run "
                        f"({', '.join(sorted(running))})")
            defaults = get_method(method).defaults
            for name, value in settings.items():
                if name not in defaults:
                    return (f"method {method!r} has no hyperparameter {name!r}; it takes "
                            f"{', '.join(sorted(defaults)) or 'none'}")
                items = value if sweep else [value]
                if sweep and (not isinstance(value, (list, tuple)) or not value):
                    return f"{method}.{name}: give at least one value"
                for item in items:
                    problem = check_value(name, item, defaults[name])
                    if problem:
                        return f"{method}.{name}: {problem}"
            points = [dict(zip(settings, combo)) for combo in itertools.product(
                *[v if sweep else [v] for v in settings.values()])]
            for point in points:  # what the method itself would refuse, before any training
                try:
                    get_method(method).validate(point)
                except ValueError as err:
                    given = ", ".join(f"{method}.{k}={v!r}" for k, v in point.items())
                    return f"{given}: {err}"
        return None
    return check


def _train_options(values) -> str | None:
    import dataclasses

    from imu_jax.train import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    for name, value in (values.get("train_config") or {}).items():
        if name not in fields:
            return f"unknown training option {name!r}; valid: {', '.join(sorted(fields))}"
        if name in ("dataset", "model", "forget"):
            continue
        problem = check_value(name, value, getattr(defaults, name))
        if problem:
            return f"{name}: {problem}"
    optimizer = (values.get("train_config") or {}).get("optimizer", "sgd")
    if optimizer not in ("sgd", "adamw"):
        return f"optimizer: expected sgd or adamw, got {optimizer!r}"
    return None


def _writable_dir(key: str, *, required: bool) -> Check:
    """The folder may exist (then it must be a writable folder) or be creatable."""
    def check(values):
        path = values.get(key)
        if path is None:
            return "required" if required else None
        if not str(path).strip():
            return "an empty path"
        path = pathlib.Path(path).expanduser()
        if path.exists() and not path.is_dir():
            return f"{path} exists and is not a folder"
        parent = path
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is not a folder, so {path} cannot be created"
        try:  # a real try: permissions, read-only mounts and special file systems
            tempfile.TemporaryDirectory(dir=parent).cleanup()
        except OSError as err:
            return f"cannot write in {parent} ({err.strerror or err})"
        return None
    return check


def _readable_file(key: str) -> Check:
    def check(values):
        path = values.get(key)
        if path is not None and not pathlib.Path(path).is_file():
            return f"No config file {path}."
        return None
    return check


def _local_dataset(values) -> str | None:
    from imu_jax.data.sources import FOLDER, LOCAL, canonical_name

    try:
        base, _ = canonical_name(values["dataset"])
    except ValueError as err:
        return str(err)
    if base not in LOCAL and base != FOLDER:
        return (f"{values['dataset']!r} comes from the TFDS catalogue (downloaded on first use "
                "by imu-jax run / train); this command builds the local datasets: "
                f"{', '.join(sorted(LOCAL))}, markov/small and {FOLDER}:PATH")
    return None


RUN_CHECKS: list[tuple[str, Check]] = [
    ("--config", _readable_file("config")),
    ("--train-config", _readable_file("train_config_file")),
    ("--dataset", _dataset),
    ("--model", _model),
    ("--forget", _forget),
    ("--methods", _methods),
    ("--seeds", _seed_list("seeds", required=True)),
    ("--tune-seeds", _seed_list("tune_seeds", required=False)),
    ("--tune-seeds", _tune_seeds_apart),
    ("--tune-methods", _tune_methods),
    ("--split-seed", _integer("split_seed", 0)),
    ("--hparam", _method_values("hparams", sweep=False)),
    ("--grid", _method_values("grids", sweep=True)),
    ("--grid", _grids_need_tuning),
    ("--train-option", _train_options),
    ("--checkpoint-every", _integer("checkpoint_every", 0)),
    ("--keep-checkpoints", _integer("keep_checkpoints", 1)),
    ("--out", _writable_dir("out", required=True)),
    ("--data-dir", _writable_dir("data_dir", required=False)),
]

TRAIN_CHECKS: list[tuple[str, Check]] = [
    ("--config", _readable_file("config")),
    ("--dataset", _dataset),
    ("--model", _model),
    ("--forget", _forget),
    ("--seed", _integer("seed", 0)),
    ("--epochs", _integer("epochs", 1)),
    ("--batch-size", _integer("batch_size", 1)),
    ("--lr", _positive_number("lr")),
    ("--out", _writable_dir("out", required=True)),
    ("--data-dir", _writable_dir("data_dir", required=False)),
    ("--config", _train_options),  # the merged recipe (config file + flags)
]

DATA_CHECKS: list[tuple[str, Check]] = [
    ("--dataset", _local_dataset),
    ("--data-dir", _writable_dir("data_dir", required=False)),
]


def validate(checks: list[tuple[str, Check]], values: Mapping[str, Any]) -> None:
    """Raises :class:`OptionError` ``"FLAG: problem"`` for the first failing check."""
    for flag, check in checks:
        problem = check(values)
        if problem:
            raise OptionError(f"{flag}: {problem}")


__all__ = ["DATA_CHECKS", "OptionError", "RUN_CHECKS", "TRAIN_CHECKS", "check_value", "validate"]
