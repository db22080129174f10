"""End-to-end tests of ``imu-jax run`` (tiny digits settings) and the experiment runner."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from imu_jax import methods
from imu_jax.lab import arguments, cli, curves, selection, store


TINY = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3",
        "--train-option", "epochs=2", "--train-option", 'model_options={"hidden": [32]}',
        "--no-progress"]
TUNED = ["--methods", "retrain,ga,imu", "--seeds", "0,1", "--tune-seeds", "7",
         "--grid", "imu.learning_rate=0.01,0.05", "--grid", "imu.epochs=10",
         "--grid", "ga.learning_rate=0.05", "--grid", "ga.epochs=10"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["run", *TINY, *TUNED, "--out", str(out), "--data-dir", data_dir]) == 0
    return out


def _runs(out):
    return store.load_results(out)["runs"]  # results.json and tune_runs.jsonl.xz


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    run_parser = next(a for a in parser._subparsers._group_actions).choices["run"]
    for action in run_parser._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in text
    assert "imu_random" in text and "--resume" in text


def test_unknown_method_fails_before_any_training(tmp_path, capsys, data_dir):
    rc = cli.main(["run", *TINY, "--methods", "retrain,sgd", "--out", str(tmp_path),
                   "--data-dir", data_dir])
    assert rc == 2
    assert "unknown method 'sgd'" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_empty_forget_set_is_a_clear_error(tmp_path, capsys, data_dir):
    empty = tmp_path / "none.txt"
    empty.write_text("")
    rc = cli.main(["run", "--dataset", "digits", "--forget", f"indices:{empty}",
                   "--methods", "imu", "--out", str(tmp_path / "out"), "--data-dir", data_dir])
    assert rc == 2
    assert "empty" in capsys.readouterr().err


def test_results_json_schema_and_reports(finished):
    runs = _runs(finished)
    reported = [(r["method"], r["seed"]) for r in runs if r["role"] == "eval"]
    for method in ("original", "retrain", "ga", "imu"):
        assert {(method, 0), (method, 1)} <= set(reported)
    tuned = [r for r in runs if r["role"] == "tune"]
    assert not [r for r in json.loads((finished / "results.json").read_text())["runs"]
                if r["role"] == "tune"]  # the sweep is stored apart, in tune_runs.jsonl.xz
    # imu: 2 lr × epochs 10 (an epochs axis replaces the shared grid's step axis; the shared
    # grid has no top_fraction axis since issue 26); ga: 1 point
    assert {r["seed"] for r in tuned} == {7} and len(tuned) == 3
    assert {r["scored_on"] for r in tuned} == {"validation"}  # tuning never sees the test split
    for run in runs:
        assert set(run) >= {"method", "seed", "metrics", "avg_gap", "seconds", "hparams"}
        for key in ("ua", "ra", "ta", "mia_efficacy", "mia_entropy", "mia_prob"):
            assert 0.0 <= run["metrics"][key] <= 1.0
        if run["method"] in ("ga", "imu"):  # the unlearning's compile time, part of seconds
            assert 0.0 <= run["compile_seconds"] <= run["seconds"]
        elif run["method"] in ("original", "retrain"):
            assert run["compile_seconds"] is None  # not measured
    retrain = [r for r in runs if r["method"] == "retrain"]
    assert all(r["avg_gap"] == 0.0 for r in retrain)
    selected = selection.select_hparams(runs, "imu")
    assert all(r["hparams"] == selected for r in runs if r["method"] == "imu" and
               r["role"] == "eval")
    markdown = (finished / "results.md").read_text()
    assert "imu-jax run --dataset digits" in markdown
    assert "| imu (oracle-tuned) | forget set only |" in markdown  # tuned: selection by Retrain
    assert "| imu (retain-free) | forget set only |" in markdown  # the rule: defaults, no oracle
    assert "## Retain-free vs oracle-tuned" in markdown
    free = [r for r in runs if r["role"] == "retain_free"]
    assert {(r["method"], r["seed"]) for r in free} == {(m, s) for m in ("ga", "imu")
                                                         for s in (0, 1)}
    for run in free:
        assert run["info"]["stop_reason"] in ("already-forgotten", "reached", "cap")
        assert run["info"]["curve_file"] == f"curves.jsonl.xz#{curves.curve_name(run)}"
        curve = curves.read_curve(finished, run["info"]["curve_file"])
        assert curve["stop_reason"] == run["info"]["stop_reason"] and curve["curve"]
    assert not (finished / "curves").exists()  # PNGs are drawn on demand: imu-jax plot
    assert (finished / "tradeoff.png").stat().st_size > 10_000


def test_resume_skips_finished_runs_and_reruns_are_deterministic(finished, tmp_path, data_dir):
    out = tmp_path / "again"
    shutil.copytree(finished, out)
    runs = _runs(finished)
    kept = runs[:-2]
    store.save_results(out, {"runs": kept})
    assert cli.main(["run", *TINY, *TUNED, "--out", str(out), "--data-dir", data_dir,
                     "--resume"]) == 0
    resumed = _runs(out)
    assert resumed[:len(kept)] == kept  # untouched, including their seconds
    assert len(resumed) == len(runs)
    # The two recomputed runs reproduce the originals exactly (seeded determinism).
    for new, old in zip(resumed[len(kept):], runs[-2:]):
        assert (new["method"], new["seed"]) == (old["method"], old["seed"])
        assert new["metrics"] == old["metrics"] and new["hparams"] == old["hparams"]


def test_cached_model_of_another_architecture_is_an_error(finished, tmp_path, capsys, data_dir):
    out = tmp_path / "other"
    shutil.copytree(finished / "models", out / "models")
    other = [a.replace('[32]', '[16]') for a in TINY]
    rc = cli.main(["run", *other, "--methods", "imu", "--seeds", "0", "--out", str(out),
                   "--data-dir", data_dir])
    assert rc == 2
    err = capsys.readouterr().err
    assert "hidden=[32]" in err and "hidden=[16]" in err


def test_interrupted_run_keeps_finished_results(finished, tmp_path, monkeypatch, data_dir):
    out = tmp_path / "interrupted"
    shutil.copytree(finished / "models", out / "models")
    real = methods.METHODS["imu"]

    def crash_on_seed_1(task, hparams, seed):
        if seed == 1:
            raise KeyboardInterrupt
        return real.run(task, hparams, seed)

    monkeypatch.setitem(methods.METHODS, "imu", dataclasses.replace(real, run=crash_on_seed_1))
    args = ["run", *TINY, "--methods", "retrain,imu", "--seeds", "0,1", "--out", str(out),
            "--data-dir", data_dir]
    assert cli.main(args) == 130  # Ctrl-C: one line, exit status 130
    done = {(r["method"], r["seed"]) for r in _runs(out)}
    assert ("imu", 0) in done and ("imu", 1) not in done
    monkeypatch.setitem(methods.METHODS, "imu", real)
    assert cli.main(args + ["--resume"]) == 0
    assert ("imu", 1) in {(r["method"], r["seed"]) for r in _runs(out)}


@pytest.mark.slow
def test_markov_run_reports_sequence_metrics(tmp_path, data_dir):
    out = tmp_path / "markov"
    rc = cli.main(["run", "--dataset", "markov/small", "--forget", "chain:1",
                   "--methods", "retrain,imu", "--seeds", "0", "--no-progress",
                   "--train-option", "epochs=1",
                   "--train-option", 'model_options={"width": 16, "num_layers": 1}',
                   "--hparam", 'imu.optimizer="adamw"', "--hparam", "imu.batch_size=4",
                   "--hparam", "imu.max_steps=5", "--out", str(out), "--data-dir", data_dir])
    assert rc == 0
    runs = _runs(out)
    imu = next(r for r in runs if r["method"] == "imu")
    for key in ("kl_retrain_test", "kl_retrain_forget_test", "kl_retrain_control_test",
                "kl_true_test", "kl_true_forget_test", "kl_true_control_test"):
        assert np.isfinite(imu["metrics"][key]) and imu["metrics"][key] >= 0
    assert imu["avg_gap"] == pytest.approx(
        (imu["metrics"]["kl_retrain_test"] + imu["metrics"]["kl_retrain_forget_test"]) / 2)
    assert "KL→Retrain forget-test" in (out / "results.md").read_text()


def test_config_file_sets_options_and_flags_override(tmp_path):
    config = tmp_path / "exp.py"
    config.write_text(
        "def get_config():\n"
        "    return {'dataset': 'digits', 'forget': 'class:2', 'methods': ['retrain', 'imu'],\n"
        "            'seeds': [4], 'hparams': {'imu': {'epochs': 3}},\n"
        "            'grids': {'imu': {'learning_rate': [0.1]}}}\n")
    args = cli.build_parser().parse_args(
        ["run", "--config", str(config), "--seeds", "5,6", "--hparam", "imu.alpha=0.0",
         "--grid", "imu.epochs=1,2", "--train-option", "epochs=2", "--out", str(tmp_path)])
    options = arguments.run_options(args)
    assert options["forget"] == "class:2" and options["methods"] == ["retrain", "imu"]
    assert options["seeds"] == [5, 6] and options["tune_seeds"] == []
    assert options["hparams"] == {"imu": {"epochs": 3, "alpha": 0.0}}
    assert options["grids"] == {"imu": {"learning_rate": [0.1], "epochs": [1, 2]}}
    assert options["train_config"] == {"epochs": 2}
    config.write_text("def get_config():\n    return {'lr': 0.1}\n")
    with pytest.raises(ValueError, match="unknown key"):
        arguments.run_options(args)


@pytest.mark.slow
def test_tfds_catalogue_dataset_runs_under_mock_data(tmp_path):
    """CIFAR-10 through the same command (TFDS mock data, a tiny MLP instead of ResNet-18)."""
    import tensorflow_datasets as tfds

    out = tmp_path / "cifar"
    with tfds.testing.mock_data(num_examples=120, policy=tfds.testing.MockPolicy.USE_CODE):
        rc = cli.main(["run", "--dataset", "cifar10", "--model", "mlp", "--forget", "class:0",
                       "--methods", "retrain,imu", "--seeds", "0", "--no-progress",
                       "--train-option", "epochs=1", "--train-option", "augment=false",
                       "--train-option", 'model_options={"hidden": [16]}',
                       "--out", str(out), "--data-dir", str(tmp_path / "tfds")])
    assert rc == 0
    imu = next(r for r in _runs(out) if r["method"] == "imu")
    assert 0.0 <= imu["metrics"]["ua"] <= 1.0 and imu["info"]["closed_form"] is True
