"""The ``imu-jax`` CLI: help, train end to end (digits, Markov), recipes, data command."""

import json
import pathlib

import pytest

from imu_jax import checkpoint
from imu_jax.lab import arguments, cli


REPO = pathlib.Path(__file__).resolve().parents[1]


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "data" in out


def test_train_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--dataset", "--model", "--forget", "--retrain", "--seed", "--out", "--epochs",
                 "--batch-size", "--lr", "--data-dir", "--config"):
        assert flag in out


def test_subcommands_are_pluggable():
    def add_probe(subparsers):
        p = subparsers.add_parser("probe-subcommand")
        p.set_defaults(func=lambda args: 7)

    cli.SUBCOMMANDS.append(add_probe)
    try:
        assert cli.main(["probe-subcommand"]) == 7
    finally:
        cli.SUBCOMMANDS.remove(add_probe)


def test_train_digits_mlp_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "--dataset", "digits", "--model", "mlp", "--forget", "class:3",
                   "--retrain", "--seed", "1", "--out", str(out), "--epochs", "2",
                   "--batch-size", "64", "--lr", "0.05", "--data-dir", str(tmp_path / "d"),
                   "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.8 and metrics["retrain"] is True and metrics["seed"] == 1
    assert metrics["num_train"] == metrics["splits"]["counts"]["retain"]
    assert metrics["config"]["epochs"] == 2 and metrics["config"]["learning_rate"] == 0.05
    fm, params, state, meta = checkpoint.restore(out / "checkpoint")
    assert fm.name == "mlp" and meta["config"]["forget"] == "class:3"
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["test_acc"] == pytest.approx(metrics["test_acc"], abs=1e-5)


@pytest.mark.slow
def test_train_markov_small_reports_kl(tmp_path):
    out = tmp_path / "m"
    cfg = tmp_path / "tiny_markov.py"
    cfg.write_text(
        "def get_config():\n"
        "    return {'dataset': 'markov/small', 'model': 'transformer', 'epochs': 1,\n"
        "            'batch_size': 64, 'optimizer': 'adamw', 'learning_rate': 3e-3,\n"
        "            'model_options': {'num_layers': 1, 'width': 16, 'num_heads': 2}}\n")
    assert cli.main(["train", "--config", str(cfg), "--out", str(out), "--no-progress",
                     "--data-dir", str(tmp_path / "d")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("kl_true_retain_test", "kl_true_forget_test", "kl_true_control_test", "test_acc"):
        assert key in metrics
    assert metrics["kl_true_retain_test"] < 0.5
    assert metrics["splits"]["forget_spec"] == "chain:1"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments/configs").glob(
    "train_*.py")))
def test_recipe_files_load_and_are_valid(name):
    from imu_jax.train import TrainConfig

    path = REPO / "experiments/configs" / name
    cfg = TrainConfig.from_dict(arguments.load_config_file(str(path)))
    assert cfg.epochs > 0
    doc = path.read_text()
    assert "imu-jax train --config experiments/configs/" + name in doc and "Expected" in doc


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments/configs").glob(
    "unlearn_*.py")))
def test_experiment_files_pass_the_run_checks(name, tmp_path):
    """Every unlearning config names methods, hyperparameters and grids that exist today (a
    renamed method fails here, not after an hour of training) and gives its command."""
    from imu_jax.lab import arguments, cli, validate

    path = REPO / "experiments/configs" / name
    args = cli.build_parser().parse_args(["run", "--config", str(path), "--out", str(tmp_path)])
    options = arguments.run_options(args)
    validate.validate(validate.RUN_CHECKS, {**arguments.run_values(args, options), "data_dir": None})
    command = " ".join(path.read_text().replace("\\\n", " ").split())  # continuation lines
    assert "imu-jax run --config experiments/configs/" + name in command


def test_default_recipe_is_picked_from_dataset(tmp_path):
    args = cli.build_parser().parse_args(["train", "--dataset", "cifar10", "--out", "x"])
    cfg = arguments.train_config_from_args(args)
    assert cfg["model"] == "resnet18" and cfg["epochs"] == 182
    args = cli.build_parser().parse_args(["train", "--dataset", "digits", "--model", "mlp",
                                          "--epochs", "3", "--out", "x"])
    cfg = arguments.train_config_from_args(args)
    assert (cfg["model"], cfg["epochs"]) == ("mlp", 3)


def test_data_command_rebuilds(tmp_path, capsys):
    assert cli.main(["data", "--dataset", "markov/small", "--data-dir", str(tmp_path)]) == 0
    assert cli.main(["data", "--dataset", "markov/small", "--data-dir", str(tmp_path),
                     "--rebuild"]) == 0
    assert "imu_markov_chain" in capsys.readouterr().out
