"""``imu-jax forgetting-score``: the subcommand's arguments, over
:func:`imu_jax.lab.forgetting_experiment.run_forgetting_score` (registered in
:data:`imu_jax.lab.cli.SUBCOMMANDS`)."""

from __future__ import annotations

import argparse
import pathlib
import sys


def add_forgetting_score_command(subparsers) -> argparse.ArgumentParser:
    """Registers ``imu-jax forgetting-score`` (the work is
    :func:`imu_jax.lab.forgetting_experiment.run_forgetting_score`)."""
    p = subparsers.add_parser(
        "forgetting-score", help="per-example forgetting evaluation: the competition's F and "
        "U-LiRA over N original, 2N retrained and N unlearned models per method",
        description="Train N original and 2N retrained models at once (vmap), apply each "
        "method to the originals (each run stopped by the retain-free rule on the validation "
        "split), and score "
        "the forget set by the NeurIPS 2023 competition's forgetting score F and U-LiRA beside "
        "the Avg. Gap and the SVC attack. Writes OUT/results.json and OUT/results.md; "
        "imu-jax plot OUT draws OUT/epsilons.png.",
        epilog="Example: imu-jax forgetting-score --config "
        "experiments/configs/forgetting_score_digits_class.py --out runs/fs_digits")
    p.add_argument("--config", required=True, help="file whose get_config() returns dataset, "
                   "model, forget, methods ({name: models}), n_models and optionally "
                   "train_config, hparams, bootstrap, calibration_models, split_seed")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--data-dir", help="TFDS data dir (default: $IMU_JAX_DATA_DIR or "
                   "~/.cache/imu_jax/tfds)")
    p.add_argument("--no-progress", action="store_true", help="print nothing while running")
    p.set_defaults(func=run_forgetting_score_command)
    return p


def run_forgetting_score_command(args) -> int:
    """``imu-jax forgetting-score``: the config's options to ``run_forgetting_score``."""
    import shlex

    from imu_jax import _extras
    from imu_jax.lab import forgetting_report
    from imu_jax.lab.arguments import load_config_file
    from imu_jax.lab.forgetting_experiment import check_config, run_forgetting_score

    _extras.require("sklearn", "experiments", "the SVC membership attack")
    cfg = load_config_file(args.config)
    check_config(cfg, f"config file {args.config}")
    command = "imu-jax forgetting-score " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "forgetting-score" else \
        f"imu-jax forgetting-score --config {args.config} --out {args.out}"
    results = run_forgetting_score(**cfg, out=args.out, data_dir=args.data_dir,
                                   command=command, progress=not args.no_progress)
    print(forgetting_report.table(results))
    print(f"wrote {pathlib.Path(args.out) / forgetting_report.RESULTS_MD} and "
          f"{forgetting_report.RESULTS_JSON} (imu-jax plot {args.out} draws the per-example ε "
          "distributions)", file=sys.stderr)
    return 0
