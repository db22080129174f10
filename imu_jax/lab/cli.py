"""The ``imu-jax`` command line: argument parsing only; the work is done by library functions.

Each subcommand is registered by one ``add_*_command(subparsers)`` function listed in
``SUBCOMMANDS``; other modules add theirs (``run``, ``demo``) the same way. With no subcommand the
help is printed.

Examples:
  >>> main([])  # doctest: +ELLIPSIS
  usage: imu-jax [-h] [--version] COMMAND ...
  ...
  0
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import traceback

from imu_jax._extras import MissingExtraError
from imu_jax.lab.cli_forgetting import add_forgetting_score_command
from imu_jax.lab.arguments import (MODEL_NAMES, _csv_ints, add_mesh_arguments, is_user_error,
                                   mesh_from_args, run_command_line, run_options, run_values,
                                   train_config_from_args)


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Registers ``imu-jax train``."""
    p = subparsers.add_parser(
        "train",
        help="train the original model (or the Retrain reference with --retrain)",
        description="Train the original model on the training set (with --forget mislabeled:F "
        "the labels are corrupted first), or with --retrain the Retrain reference on the "
        "retain set only. Writes an Orbax checkpoint to OUT/checkpoint and OUT/metrics.json. "
        "Options not given come from --config, else from the dataset's default recipe.",
    )
    p.add_argument("--config", help="recipe file with get_config(), e.g. "
                   "experiments/configs/train_digits_cnn.py")
    p.add_argument("--dataset", help="digits, mnist1d, markov, markov/small, cifar10, cifar100, "
                   "mnist, fashion_mnist, or imagefolder:PATH (a <split>/<class>/<image> folder "
                   "or .zip) (default: the config's, else digits)")
    p.add_argument("--model", help=f"{MODEL_NAMES} (default: the recipe's)")
    p.add_argument("--forget", help="forget spec: class:K, classes:K1,K2, random:F, "
                   "superclass:K|NAME, subclass:K|NAME (CIFAR-100, or an image folder with "
                   "coarse_labels.json), indices:FILE, mislabeled:F, chain:K (default: none; "
                   "Markov data: chain:1)")
    p.add_argument("--retrain", action="store_true",
                   help="train the Retrain reference on the retain set only")
    p.add_argument("--seed", type=int, default=0,
                   help="model init, shuffling and forget-spec seed (default: 0)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    p.add_argument("--data-dir", help="TFDS data dir (default: $IMU_JAX_DATA_DIR or "
                   "~/.cache/imu_jax/tfds)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_mesh_arguments(p)
    p.set_defaults(func=run_train, interrupted=lambda args: "interrupted; nothing was saved "
                   "(the model is written when training ends).")
    return p


def run_train(args) -> int:
    """``imu-jax train``: make splits, train, save; prints the final metrics."""
    from imu_jax.data import make_splits
    from imu_jax.lab import validate
    from imu_jax.train import TrainConfig, train_model

    mesh = mesh_from_args(args)  # first: the multi-host runtime starts before any device use
    flags = {"config": args.config, "dataset": args.dataset, "model": args.model,
             "forget": args.forget, "seed": args.seed, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "out": args.out,
             "data_dir": args.data_dir}
    validate.validate(validate.TRAIN_CHECKS, flags)
    merged = train_config_from_args(args)
    validate.validate(validate.TRAIN_CHECKS, {**flags, "dataset": merged["dataset"],
                                              "model": merged.get("model"),
                                              "forget": merged.get("forget"),
                                              "train_config": merged})
    cfg = TrainConfig.from_dict(merged)
    splits = make_splits(cfg.dataset, cfg.forget, seed=args.seed, data_dir=args.data_dir)
    which = "retrain" if args.retrain else "original"
    print(f"imu-jax train: {cfg.model} on {cfg.dataset} ({which}), "
          f"splits {json.dumps(splits.info['counts'])}", file=sys.stderr)
    _, _, _, metrics = train_model(cfg, splits, retrain=args.retrain, seed=args.seed,
                                   workdir=args.out, progress=not args.no_progress, mesh=mesh)
    keys = [k for k, v in metrics.items() if isinstance(v, float)]
    print(json.dumps({k: round(metrics[k], 5) for k in keys}))
    out = pathlib.Path(args.out)
    print(f"wrote {out / 'metrics.json'} and {out / 'checkpoint'}", file=sys.stderr)
    return 0


def add_data_command(subparsers) -> argparse.ArgumentParser:
    """Registers ``imu-jax data`` (build or rebuild a local dataset)."""
    p = subparsers.add_parser("data", help="build (or rebuild) a local dataset",
                              description="Build the local TFDS datasets (digits, mnist1d, "
                              "markov, markov/small, imagefolder:PATH) into the data dir (they "
                              "are also built on first use); --rebuild deletes it first.")
    p.add_argument("--dataset", required=True, help="digits, mnist1d, markov, markov/small or "
                   "imagefolder:PATH")
    p.add_argument("--data-dir", help="TFDS data dir (default: $IMU_JAX_DATA_DIR or "
                   "~/.cache/imu_jax/tfds)")
    p.add_argument("--rebuild", action="store_true", help="delete and rebuild")
    p.set_defaults(func=run_data, interrupted=lambda args: "interrupted; run it again with "
                   "--rebuild.")
    return p


def run_data(args) -> int:
    from imu_jax.data import build
    from imu_jax.lab import validate

    validate.validate(validate.DATA_CHECKS, {"dataset": args.dataset, "data_dir": args.data_dir})
    print(build(args.dataset, args.data_dir, overwrite=args.rebuild))
    return 0


def add_run_command(subparsers) -> argparse.ArgumentParser:
    """Registers ``imu-jax run`` (unlearning experiments; the work is ``runner.run``)."""
    from imu_jax.lab.runner import runnable_methods

    p = subparsers.add_parser(
        "run",
        help="unlearn with IMU and baselines, compare against Retrain",
        description="Train (or load from OUT/models) the original and Retrain models of every "
        "seed, run each method on each seed, and write OUT/results.json (after every finished "
        "run; the tuning runs in OUT/tune_runs.jsonl.xz), OUT/results.md (mean ± std over "
        "seeds) and OUT/tradeoff.png (forget vs test accuracy as each method's lr / step count "
        "sweeps). Options come from the flags, else "
        "from --config, else from the defaults shown. Methods: " + ", ".join(runnable_methods())
        + ".",
        epilog="Example: imu-jax run --dataset digits --model mlp --forget class:3 "
        "--methods retrain,ga,imu --seeds 0,1,2 --tune-seeds 100,101 --out runs/digits_class3",
    )
    p.add_argument("--config", help="experiment file whose get_config() returns a dict of these "
                   "options (keys: dataset, model, forget, methods, seeds, tune_seeds, "
                   "tune_methods, split_seed, hparams, grids, train_config), e.g. "
                   "experiments/configs/unlearn_digits_class.py")
    p.add_argument("--dataset", help="digits, mnist1d, markov, markov/small, cifar10, cifar100, "
                   "mnist, fashion_mnist, imagefolder:PATH (default: digits)")
    p.add_argument("--model", help=f"{MODEL_NAMES} (default: the dataset's recipe)")
    p.add_argument("--forget", help="forget spec: class:K, classes:K1,K2, random:F, "
                   "superclass:K|NAME, subclass:K|NAME (CIFAR-100, or an image folder with "
                   "coarse_labels.json), indices:FILE, mislabeled:F, chain:K, chain:1,2 (Markov "
                   "default: chain:1)")
    p.add_argument("--methods", help="comma-separated methods (default: retrain,ga,ga_head,imu)")
    p.add_argument("--seeds", type=_csv_ints,
                   help="reported seeds; each trains its own original and Retrain model "
                   "(default: 0,1,2)")
    p.add_argument("--tune-seeds", type=_csv_ints,
                   help="tune every method on these seeds (one grid for all: optimizer steps "
                   "1, 2, 4, ... up to the retain-free cap × lr 1e-4..1e-1; scored on the "
                   "validation split, smallest mean Avg. Gap wins) before reporting on --seeds; "
                   "empty (default) = use the defaults, which are the public IMU code's")
    p.add_argument("--tune-methods",
                   help="with --tune-seeds: oracle-tune only these comma-separated methods "
                   "(default: every method); the others get only their retain-free row")
    p.add_argument("--out", required=True, help="output directory (models are cached in "
                   "OUT/models)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the runs already in OUT/results.json and skip them (also to "
                       "add methods or seeds; with --checkpoint-every: continue an interrupted "
                       "run from its checkpoint)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the runs already in OUT/results.json (without --resume or "
                       "--overwrite a folder with finished runs is refused; the trained models "
                       "in OUT/models are reused either way)")
    p.add_argument("--hparam", action="append", metavar="METHOD.NAME=VALUE",
                   help="override a method's default, e.g. imu.learning_rate=0.02 (repeatable)")
    p.add_argument("--grid", action="append", metavar="METHOD.NAME=V1,V2",
                   help="replace one axis of a method's tuning grid, e.g. "
                   "imu.learning_rate=0.01,0.02 (an epochs axis, imu.epochs=10,20, replaces the "
                   "step axis) (repeatable)")
    p.add_argument("--train-config", help="recipe file with get_config() for the original and "
                   "Retrain models (default: the dataset's recipe)")
    p.add_argument("--train-option", action="append", metavar="NAME=VALUE",
                   help="override a training-recipe field, e.g. epochs=5 (repeatable)")
    p.add_argument("--split-seed", type=int,
                   help="seed of random:/mislabeled: forget sets (default: 0)")
    p.add_argument("--data-dir", help="TFDS data dir (default: $IMU_JAX_DATA_DIR or "
                   "~/.cache/imu_jax/tfds)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--fixed-length", action="store_true",
                   help="no retain-free stopping rule: every method runs its fixed-length "
                   "defaults (default: each method also runs as 'retain-free', stopped by the "
                   "rule of docs/STOPPING.md on the forget set vs the validation split, half of "
                   "the released test split; TA and the attack use the other half)")
    p.add_argument("--no-noise-floor", action="store_true",
                   help="leave out the 'retrain vs retrain (noise floor)' row (default: every "
                   "seed also trains a second Retrain model, seed + 1000, scored against the "
                   "first; a config's \"noise_floor\": \"next_seed\" pairs the seeds' own)")
    add_mesh_arguments(p)
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="checkpoint each IMU-family unlearning run every K steps in "
                   "OUT/checkpoints (Orbax, async); with --resume an interrupted run continues "
                   "from its newest checkpoint (default 0: off)")
    p.add_argument("--keep-checkpoints", type=int, default=2, metavar="N",
                   help="checkpoints kept per run (default 2)")
    p.set_defaults(func=run_run, interrupted=run_interrupted)
    return p


def run_run(args) -> int:
    """``imu-jax run``: resolve options, call :func:`imu_jax.lab.runner.run`; user errors
    (unknown method, empty forget set, a cached model of another architecture, ...) print one
    line and exit with status 2 (:func:`main`)."""
    import contextlib

    from imu_jax import _extras, sharding
    from imu_jax.lab import runner, validate
    from imu_jax.unlearning import loop_checkpoint

    for module, purpose in (("matplotlib", "imu-jax run's plots"),
                            ("sklearn", "imu-jax run's membership attack")):
        _extras.require(module, "experiments", purpose)  # the lab's extra, before any work

    mesh = mesh_from_args(args)  # first: the multi-host runtime starts before device use
    options = run_options(args)
    validate.validate(validate.RUN_CHECKS, run_values(args, options))
    with contextlib.ExitStack() as scale:  # mesh and checkpoints of the unlearning loops
        scale.enter_context(sharding.use_mesh(mesh))
        if args.checkpoint_every > 0:
            scale.enter_context(loop_checkpoint.use_run_checkpoints(
                pathlib.Path(args.out) / "checkpoints", save_every=args.checkpoint_every,
                keep=args.keep_checkpoints, resume=args.resume))
        runner.run(**options, out=args.out, resume=args.resume, overwrite=args.overwrite,
                   data_dir=args.data_dir, progress=not args.no_progress,
                   command=run_command_line(args),
                   retain_free=not getattr(args, "fixed_length", False))
    out = pathlib.Path(args.out)
    print_summary(out)
    return 0


def print_summary(out: pathlib.Path) -> None:
    """The main results table (stdout) and where the full report and plot are (stderr)."""
    from imu_jax.lab import report, store

    results = store.load_results(out)
    columns = report.SEQUENCE_COLUMNS if report.is_sequence(results) else \
        report.CLASSIFICATION_COLUMNS
    print(report.table(results, columns))
    curves = (f" and {out / 'curves.jsonl.xz'} (each check of the runs the retain-free rule "
              f"stopped; draw them with: imu-jax plot {out})"
              if (out / "curves.jsonl.xz").exists() else "")
    print(f"wrote {out / 'results.md'} (all tables and the command), {out / 'results.json'}, "
          f"{out / 'tradeoff.png'} (forget vs test accuracy of every method){curves}",
          file=sys.stderr)


def run_interrupted(args) -> str:
    """The line printed when ``imu-jax run`` is interrupted (Ctrl-C): what was saved, if any."""
    out = pathlib.Path(args.out)
    from imu_jax.lab.store import saved_run_count

    runs = saved_run_count(out)
    models = sorted(p.name for p in (out / "models").glob("*_seed*")
                    if p.is_dir() and any(p.iterdir())) if (out / "models").is_dir() else []
    if not runs and not models:
        return ("interrupted before anything finished: no model or run was saved; rerun the "
                "same command to start again.")
    saved = []
    if runs:
        saved.append(f"{runs} finished run(s) in {out / 'results.json'}")
    if models:
        saved.append(f"{len(models)} trained model(s) in {out / 'models'} ({', '.join(models)})")
    return f"interrupted. Saved: {'; '.join(saved)}; rerun the same command with --resume."


def add_plot_command(subparsers) -> argparse.ArgumentParser:
    """Registers ``imu-jax plot`` (figures drawn on demand; the work is
    :func:`imu_jax.lab.figures.draw`)."""
    p = subparsers.add_parser(
        "plot", help="draw the stopping-curve PNGs (and summary figures) of a run's output",
        description="Draw the per-check stopping curve of runs in OUT/curves.jsonl.xz as "
        "<name>.png (forget accuracy, held-out accuracy and the stopping statistic against the "
        "optimizer step; the threshold and the utility guard's floor as lines), and with "
        "--summary OUT/tradeoff.png (and steps.png) from OUT/results.json. With neither --run, "
        "--all nor --summary every curve is drawn.",
        epilog="Example: imu-jax plot experiments/results/digits_class/class3 "
        "--run imu_retain_free_seed0 --into /tmp/curves")
    p.add_argument("out", metavar="OUT", help="the --out folder of an imu-jax run")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", action="append", metavar="NAME",
                       help="a run's curve, named <method>_<role>_seed<S> as in "
                       "OUT/curves.jsonl.xz (repeatable)")
    which.add_argument("--all", action="store_true", help="every run's curve")
    p.add_argument("--summary", action="store_true",
                   help="also (or, without --run / --all, only) the summary figures "
                   "tradeoff.png and steps.png")
    p.add_argument("--into", metavar="DIR", help="folder of the PNGs (default: OUT/curves/ for "
                   "curves, OUT for the summary figures)")
    p.set_defaults(func=run_plot)
    return p


def run_plot(args) -> int:
    """``imu-jax plot``: the paths written on stdout; a folder without results or an unknown
    run name is one line and exit status 2 (:func:`main`)."""
    from imu_jax import _extras
    from imu_jax.lab import figures

    _extras.require("matplotlib", "experiments", "imu-jax plot")
    from imu_jax.lab import forgetting_report

    if forgetting_report.is_forgetting_results(args.out):  # imu-jax forgetting-score's --out
        print(forgetting_report.plot(args.out, args.into))
        return 0
    runs = args.run if args.run else (None if args.all or not args.summary else [])
    for path in figures.draw(args.out, runs, summary=args.summary, into=args.into):
        print(path)
    return 0


# Other subcommands (``run``, ``demo``) are registered by appending their add_*_command here.
SUBCOMMANDS = [add_train_command, add_data_command, add_run_command, add_plot_command,
               add_forgetting_score_command]


class UsageError(Exception):
    """A command line that argparse cannot parse (unknown flag, missing ``--out``, a value of the
    wrong type): :func:`main` prints it as one line with a hint, not argparse's usage block."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, its subcommands' parsers) whose
    errors are :class:`UsageError`.

    >>> try:
    ...     _Parser(prog="imu-jax run").parse_args(["--nope"])
    ... except UsageError as err:
    ...     print(err.prog, "|", err)
    imu-jax run | unrecognized arguments: --nope
    """

    def error(self, message: str):
        if message.startswith("argument "):  # "argument --seeds: ..." → "--seeds: ..."
            message = message[len("argument "):]
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from imu_jax import __version__

    parser = _Parser(
        prog="imu-jax", description="Influence-guided machine unlearning (IMU) in JAX.")
    parser.add_argument("--version", action="version", version=f"imu-jax {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``imu-jax``; returns the exit status. Ctrl-C anywhere inside it (also while
    JAX is busy, see :mod:`imu_jax.lab.interrupts`) is one line and exit status 130."""
    from imu_jax.lab import interrupts

    args = None
    with interrupts.reliable_interrupts():
        try:
            parser = build_parser()
            try:
                args = _parse(parser, argv)
            except UsageError as err:  # one line and a hint, like every other error
                print(f"{err.prog}: error: {err} (see {err.prog} --help)", file=sys.stderr)
                return 2
            if getattr(args, "func", None) is None:
                parser.print_help()
                return 0
            return _call(args)
        except Exception:
            if not interrupts.requested():
                raise
            # else an error the Ctrl-C caused: a C extension imported meanwhile (tensorstore,
            # under Orbax) turns it into "ImportError: initialization failed"
        except KeyboardInterrupt:
            pass
        with interrupts.quiet():  # a second Ctrl-C while the line is written
            message = getattr(args, "interrupted", None)
            command = f"imu-jax {args.command}" if args is not None else "imu-jax"
            print(f"{command}: " + (message(args) if message else "interrupted."),
                  file=sys.stderr)
            return 130


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with unrecognized arguments charged to the subcommand they
    were given to (``imu-jax run: error: unrecognized arguments: ...``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        prog = f"imu-jax {args.command}" if getattr(args, "command", None) else "imu-jax"
        raise UsageError(prog, f"unrecognized arguments: {' '.join(extra)}")
    return args


def _call(args) -> int:
    """Runs the subcommand; user errors are one line with exit status 2, a bug a traceback and 1
    (an error that a Ctrl-C caused goes on to :func:`main`, which reports the interruption)."""
    from imu_jax.lab import interrupts

    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if interrupts.requested() or not isinstance(err, (MissingExtraError, ValueError,
                                                          OSError)):
            raise
        if isinstance(err, MissingExtraError):  # one line naming the pip install that adds it
            print(f"imu-jax {args.command}: error: {err}", file=sys.stderr)
            return 2
        if is_user_error(err):  # one line, exit status 2
            flag = f"{err.flag}: " if getattr(err, "flag", None) else ""  # e.g. ForgetSpecError
            print(f"imu-jax {args.command}: error: {flag}{err}", file=sys.stderr)
            return 2
        traceback.print_exception(err)
        print(f"imu-jax {args.command}: internal error: {type(err).__name__}: {err} (raised "
              "outside imu-jax's input checks: please report it with the traceback above).",
              file=sys.stderr)
        return 1


def entry() -> int:
    """The ``imu-jax`` script: :func:`main`, but after Ctrl-C it leaves at once (exit status
    130) instead of tearing down an interpreter whose JAX / Orbax threads were interrupted
    mid-work (that teardown can crash). What was saved is complete: results and models are
    written atomically."""
    import os

    status = main()
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return status


if __name__ == "__main__":
    sys.exit(entry())
