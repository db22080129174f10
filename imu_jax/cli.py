"""The ``imu-jax`` command line: argument parsing only; the work is done by library functions.

Each subcommand is registered by one ``add_*_command(subparsers)`` function listed in
``SUBCOMMANDS``; other modules add theirs (``run``, ``demo``) the same way. With no subcommand the
help is printed.

Examples:
  >>> main([])  # doctest: +ELLIPSIS
  usage: imu-jax [-h] COMMAND ...
  ...
  0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys


def load_config_file(path: str) -> dict:
    """Imports ``path`` (a recipe file) and returns ``get_config()`` as a dict."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or not pathlib.Path(path).exists():
        raise FileNotFoundError(f"No config file {path}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    return dict(cfg if isinstance(cfg, dict) else vars(cfg))


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
    p.add_argument("--dataset", help="digits, markov, markov/small, cifar10, cifar100, mnist, "
                   "fashion_mnist (default: the config's, else digits)")
    p.add_argument("--model", help="mlp, cnn, resnet18, transformer (default: the recipe's)")
    p.add_argument("--forget", help="forget spec: class:K, classes:K1,K2, random:F, "
                   "superclass:K, subclass:K, indices:FILE, mislabeled:F, chain:K (default: none; "
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
    p.set_defaults(func=run_train)
    return p


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

    cfg = load_config_file(args.config) if args.config else {}
    dataset = args.dataset or cfg.get("dataset") or "digits"
    base = recipe(dataset, args.model or cfg.get("model")) if not args.config else {}
    cfg = {**base, **cfg, "dataset": dataset}
    flags = {"model": args.model, "forget": args.forget, "epochs": args.epochs,
             "batch_size": args.batch_size, "learning_rate": args.lr}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    return cfg


def run_train(args) -> int:
    """``imu-jax train``: make splits, train, save; prints the final metrics."""
    from imu_jax.data import make_splits
    from imu_jax.train import TrainConfig, train_model

    mesh = mesh_from_args(args)  # first: the multi-host runtime starts before any device use
    cfg = TrainConfig.from_dict(train_config_from_args(args))
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
                              description="Build the local TFDS datasets (digits, markov, "
                              "markov/small) into the data dir; --rebuild deletes it first.")
    p.add_argument("--dataset", required=True, help="digits, markov or markov/small")
    p.add_argument("--data-dir", help="TFDS data dir (default: $IMU_JAX_DATA_DIR or "
                   "~/.cache/imu_jax/tfds)")
    p.add_argument("--rebuild", action="store_true", help="delete and rebuild")
    p.set_defaults(func=run_data)
    return p


def run_data(args) -> int:
    from imu_jax.data import build

    print(build(args.dataset, args.data_dir, overwrite=args.rebuild))
    return 0


# Other subcommands (``run``, ``demo``) are registered by appending their add_*_command here.
SUBCOMMANDS = [add_train_command, add_data_command]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="imu-jax", description="Influence-guided machine unlearning (IMU) in JAX.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``imu-jax``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
