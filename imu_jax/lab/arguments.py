"""The command line's values: config files, option lists (``--hparam method.key=value``), the
run's settings and the command that reproduces them. Parsing only; the checks are
:mod:`imu_jax.lab.validate`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import shlex
import traceback


# The models ``--model`` takes, for the help texts: spelled out rather than read from
# ``imu_jax.models.REGISTRY``, whose import (Flax NNX, ~0.7 s) every ``imu-jax`` start would pay;
# tests/test_cli_errors.py keeps the two equal.
MODEL_NAMES = "mlp, cnn, cnn1d, fastcnn, resnet18, transformer"


def load_config_module(path: str):
    """Imports ``path`` (a config or recipe file) as a module: a config built on another reads
    its constants (e.g. a method list) this way."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or not pathlib.Path(path).exists():
        raise FileNotFoundError(f"No config file {path}.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:  # the user's file: one line, not a traceback
        raise ValueError(f"config file {path}, line {err.lineno}: {err.msg}") from None
    return module


def load_config_file(path: str) -> dict:
    """Imports ``path`` (a recipe file) and returns ``get_config()`` as a dict."""
    module = load_config_module(path)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"config file {path} defines no get_config() function.")
    cfg = module.get_config()
    return dict(cfg if isinstance(cfg, dict) else vars(cfg))


def add_mesh_arguments(p: argparse.ArgumentParser) -> None:
    """``--mesh``, ``--mesh-axis-types`` and the multi-host flags (see docs/SCALING.md)."""
    from imu_jax import sharding

    sharding.add_arguments(p)


def mesh_from_args(args):
    """The device mesh the flags ask for (starting the multi-host runtime first), or ``None``."""
    from imu_jax import sharding

    if not (args.mesh or args.coordinator_address or args.num_processes
            or _env_configured()):
        return None
    return sharding.mesh_from_args(args)


def _env_configured() -> bool:
    import os

    return any(os.environ.get(n) for n in ("IMU_COORDINATOR_ADDRESS", "IMU_NUM_PROCESSES"))


def train_config_from_args(args) -> dict:
    """Merges recipe file / default recipe / command-line flags into TrainConfig fields."""
    from imu_jax.train import recipe

    with _naming("--config"):
        cfg = load_config_file(args.config) if args.config else {}
    dataset = args.dataset or cfg.get("dataset") or "digits"
    base = recipe(dataset, args.model or cfg.get("model")) if not args.config else {}
    cfg = {**base, **cfg, "dataset": dataset}
    flags = {"model": args.model, "forget": args.forget, "epochs": args.epochs,
             "batch_size": args.batch_size, "learning_rate": args.lr}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    return cfg


def _csv_ints(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]`` (empty string → ``[]``)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _value(text: str):
    """A JSON value if it parses (``0.1``, ``true``, ``[64]``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_method_options(items: list[str] | None, *, sweep: bool) -> dict[str, dict]:
    """``["imu.learning_rate=0.1"]`` → ``{"imu": {"learning_rate": 0.1}}``; with ``sweep`` the
    value is a comma-separated list (``"imu.epochs=10,20"`` → ``{"imu": {"epochs": [10, 20]}}``).

    >>> parse_method_options(["imu.epochs=10,20", "ga.learning_rate=0.01"], sweep=True)
    {'imu': {'epochs': [10, 20]}, 'ga': {'learning_rate': [0.01]}}
    """
    out: dict[str, dict] = {}
    for item in items or []:
        target, sep, value = item.partition("=")
        method, dot, name = target.partition(".")
        if not sep or not dot or not method or not name:
            raise ValueError(f"expected METHOD.NAME=VALUE, got {item!r}")
        parsed = [_value(v) for v in value.split(",")] if sweep else _value(value)
        out.setdefault(method, {})[name] = parsed
    return out


def parse_train_options(items: list[str] | None) -> dict:
    """``["epochs=5"]`` → ``{"epochs": 5}`` (TrainConfig field overrides; values are JSON)."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        out[name] = _value(value)
    return out


RUN_DEFAULTS = {"dataset": "digits", "model": None, "forget": None,
                "methods": ["retrain", "ga", "ga_head", "imu"], "seeds": [0, 1, 2],
                "tune_seeds": [], "tune_methods": None, "split_seed": 0, "hparams": {},
                "grids": {}, "train_config": {}, "trace_every": 0, "noise_floor": True}


def run_options(args) -> dict:
    """The options of ``experiment.run``: flags, else ``--config``, else ``RUN_DEFAULTS``."""
    from imu_jax.methods import get_method

    with _naming("--config"):
        options = {**RUN_DEFAULTS, **(load_config_file(args.config) if args.config else {})}
    unknown = sorted(set(options) - set(RUN_DEFAULTS))
    if unknown:
        raise ValueError(f"--config: unknown key(s) {unknown} in {args.config}; valid: "
                         f"{sorted(RUN_DEFAULTS)}")
    flags = {"dataset": args.dataset, "model": args.model, "forget": args.forget,
             "methods": args.methods, "seeds": args.seeds,
             "tune_seeds": args.tune_seeds, "tune_methods": args.tune_methods,
             "split_seed": args.split_seed}
    options.update({k: v for k, v in flags.items() if v is not None})
    if getattr(args, "no_noise_floor", False):
        options["noise_floor"] = False
    for key in ("methods", "tune_methods"):
        if isinstance(options[key], str):
            options[key] = [m.strip() for m in options[key].split(",")]
    train_config = dict(options["train_config"])
    if args.train_config:
        with _naming("--train-config"):
            train_config.update(load_config_file(args.train_config))
    with _naming("--train-option"):
        options["train_config"] = {**train_config, **parse_train_options(args.train_option)}
    hparams = {m: dict(v) for m, v in options["hparams"].items()}
    with _naming("--hparam"):
        for method, values in parse_method_options(args.hparam, sweep=False).items():
            hparams.setdefault(method, {}).update(values)
    grids = {m: dict(v) for m, v in options["grids"].items()}
    with _naming("--grid"):
        for method, axes in parse_method_options(args.grid, sweep=True).items():
            grids[method] = {**(grids.get(method) or dict(get_method(method).grid)), **axes}
    options["hparams"], options["grids"] = hparams, grids
    return options


class _naming:
    """Prefixes a ``ValueError`` raised inside the block with the flag it came from."""

    def __init__(self, flag: str):
        self.flag = flag

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and issubclass(kind, (ValueError, OSError)) and \
                not str(err).startswith("--"):
            from imu_jax.lab.validate import OptionError

            raise OptionError(f"{self.flag}: {err}") from err
        return False


def run_values(args, options: dict) -> dict:
    """What :data:`imu_jax.lab.validate.RUN_CHECKS` checks: the resolved options and the flags."""
    return {**options, "config": args.config, "train_config_file": args.train_config,
            "checkpoint_every": args.checkpoint_every, "keep_checkpoints": args.keep_checkpoints,
            "out": args.out, "data_dir": args.data_dir, "forget_required": True}


def run_command_line(args) -> str:
    """The ``imu-jax run`` command that reproduces ``args`` (recorded in results.md)."""
    parts = ["imu-jax", "run"]
    for flag, value in (("--config", args.config), ("--dataset", args.dataset),
                        ("--model", args.model), ("--forget", args.forget),
                        ("--methods", args.methods),
                        ("--seeds", None if args.seeds is None else ",".join(map(str, args.seeds))),
                        ("--tune-seeds", None if args.tune_seeds is None
                         else ",".join(map(str, args.tune_seeds))),
                        ("--tune-methods", args.tune_methods),
                        ("--train-config", args.train_config),
                        ("--split-seed", None if args.split_seed is None else str(args.split_seed)),
                        ("--out", args.out)):
        if value is not None:
            parts += [flag, value]
    if getattr(args, "fixed_length", False):
        parts.append("--fixed-length")
    if getattr(args, "no_noise_floor", False):
        parts.append("--no-noise-floor")
    for flag, items in (("--hparam", args.hparam), ("--grid", args.grid),
                        ("--train-option", args.train_option)):
        for item in items or []:
            parts += [flag, item]
    return " ".join(shlex.quote(p) for p in parts)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` reports a problem with the user's input, shown as one line: an ``OSError``
    (a missing or unreadable file), or a ``ValueError`` raised by imu-jax's own checks. A
    ``ValueError`` raised inside another library (numpy on an empty array, ...) is a bug of
    ours that a one-line "error:" would disguise as bad input."""
    if isinstance(err, OSError):
        return True
    if not isinstance(err, ValueError):
        return False
    frames = traceback.extract_tb(err.__traceback__)
    package = pathlib.Path(__file__).resolve().parents[1]  # imu_jax/, not imu_jax/lab/
    return not frames or pathlib.Path(frames[-1].filename).resolve().is_relative_to(package)
