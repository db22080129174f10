"""The per-example forgetting evaluation end to end on a tiny setting (digits, class 3, a
16-unit MLP, 2 epochs, 6 models per population): the CLI writes results with N, seeds and the
command; the floor is F of the two retrained populations; doing nothing on a class scores worse
than the floor; ``imu-jax plot`` draws the per-example ε figure."""

import json
import pathlib

import numpy as np
import pytest

from imu_jax.data import VALIDATION_FRACTION, make_splits
from imu_jax.lab import cli, forgetting_report
from imu_jax.lab.ensemble import statistics, train_ensemble
from imu_jax.lab.forgetting_experiment import run_forgetting_score, score_method
from imu_jax.lab.forgetting_score import forgetting_quality
from imu_jax.train import recipe

REPO = pathlib.Path(__file__).resolve().parents[1]

N = 6
TRAIN = {"epochs": 2, "model_options": {"hidden": (16,)}}
CONFIG = f'''
def get_config():
    return {{"dataset": "digits", "model": "mlp", "forget": "class:3", "n_models": {N},
            "methods": {{"retrain_floor": {N}, "original": {N}, "ga_head": 4}},
            "train_config": {TRAIN!r}, "bootstrap": 1}}
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    data_dir = str(root / "tfds")
    (root / "cfg.py").write_text(CONFIG)
    out = root / "out"
    assert cli.main(["forgetting-score", "--config", str(root / "cfg.py"), "--out", str(out),
                     "--data-dir", data_dir, "--no-progress"]) == 0
    return out, data_dir, json.loads((out / "results.json").read_text())


def test_results_record_n_seeds_and_command(run):
    out, _, results = run
    cfg = results["config"]
    assert cfg["n_models"] == N and cfg["kind"] == "forgetting_score"
    assert cfg["seeds"]["original"] == list(range(N))
    assert cfg["seeds"]["retrained"] == list(range(N))
    assert not set(cfg["seeds"]["floor"]) & set(cfg["seeds"]["retrained"])
    assert cfg["command"].startswith("imu-jax forgetting-score --config")
    assert cfg["counts"]["forget"] == len(results["methods"]["original"]["epsilons"])
    md = (out / "results.md").read_text()
    assert cfg["command"] in md and f"N (populations): {N}" in md
    assert results["methods"]["ga_head"]["n_models"] == 4
    assert len(results["methods"]["ga_head"]["steps_per_model"]) == 4
    assert all(k in results["times"] for k in ("train_original_s", "train_floor_s"))


def test_floor_is_f_of_the_two_retrained_populations(run):
    _, data_dir, results = run
    splits = make_splits("digits", "class:3", data_dir=data_dir, validation=VALIDATION_FRACTION)
    cfg = {**recipe("digits", "mlp"), **TRAIN}
    seeds = results["config"]["seeds"]
    floor = statistics(train_ensemble(cfg, splits, seeds["floor"], retrain=True), splits.forget)
    reference = statistics(train_ensemble(cfg, splits, seeds["retrained"], retrain=True),
                           splits.forget)
    expected = forgetting_quality(floor, reference)
    assert results["methods"]["retrain_floor"]["F"] == pytest.approx(expected.score, abs=1e-9)
    np.testing.assert_allclose(results["methods"]["retrain_floor"]["epsilons"],
                               expected.epsilons, atol=1e-3)


def test_doing_nothing_on_a_class_scores_worse_than_the_floor(run):
    _, _, results = run
    floor, original = results["methods"]["retrain_floor"], results["methods"]["original"]
    assert original["F"] < floor["F"]
    assert original["ulira"]["auc"] > floor["ulira"]["auc"]
    assert original["avg_gap"] > floor["avg_gap"]
    assert original["metrics"]["ua"] < 0.5 < floor["metrics"]["ua"]  # floor: never saw class 3
    assert forgetting_report.ranked(results)[-1][0] != "retrain_floor"


def test_plot_draws_the_epsilon_distributions(run, capsys):
    out, _, _ = run
    assert cli.main(["plot", str(out)]) == 0
    assert (out / "epsilons.png").stat().st_size > 1000
    assert "epsilons.png" in capsys.readouterr().out


def test_score_method_bootstrap_and_subsets():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(16, 5))
    ref = rng.normal(size=(16, 5))
    metrics = [{"ua": 0.0, "ra": 1.0, "ta": 1.0, "mia_efficacy": 0.0}] * 16
    entry = score_method(same + 20.0, ref, metrics, metrics, bootstrap=4, subsets=(8,))
    assert entry["F"] == 0.0 and set(entry["F_by_n"]) == {"8", "16"}
    assert entry["F_bootstrap"]["resamples"] == 4 and entry["ulira"]["auc"] > 0.99
    assert entry["avg_gap"] == 0.0


def test_unknown_method_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_forgetting_score(dataset="digits", model="mlp", forget="class:3",
                             methods={"nope": 4}, out=tmp_path)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments/configs").glob(
    "forgetting_score_*.py")))
def test_config_files_are_valid_and_give_command_and_time(name):
    from imu_jax.lab.arguments import load_config_file
    from imu_jax.lab.forgetting_experiment import check_config

    path = REPO / "experiments/configs" / name
    cfg = load_config_file(str(path))
    check_config(cfg, name)
    counts = cfg["methods"]
    for core in ("retrain_floor", "imu", "ga_head"):  # the N >= 32
        assert counts[core] >= 32
    doc = " ".join(path.read_text().replace("\\\n", " ").split())
    assert "imu-jax forgetting-score --config experiments/configs/" + name in doc
    assert "Measured time" in doc


def test_cli_refuses_a_bad_config_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text('def get_config():\n    return {"dataset": "digits", "forget": "class:3", '
                   '"methods": {"imu": 8}, "seeds": [0]}\n')
    assert cli.main(["forgetting-score", "--config", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['seeds']" in err and "Traceback" not in err
    assert not (tmp_path / "results.json").exists()


def test_fixed_step_choice_runs_every_model_for_the_validation_median(run, tmp_path):
    _, data_dir, _ = run
    results = run_forgetting_score(
        dataset="digits", model="mlp", forget="class:3", methods={"ga_head": 4}, n_models=4,
        out=tmp_path, train_config=TRAIN, bootstrap=0, step_choice="fixed",
        calibration_models=3, data_dir=data_dir)
    entry = results["methods"]["ga_head"]
    assert len(entry["calibration_steps"]) == 3
    assert entry["steps"] == int(np.floor(np.median(entry["calibration_steps"]))) > 0
    assert entry["steps_per_model"] == [entry["steps"]] * 4
    assert entry["hparams"]["max_steps"] == entry["steps"]
    assert results["config"]["step_choice"] == "fixed"
