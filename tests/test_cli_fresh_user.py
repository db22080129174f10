"""What a new user hit on a fresh clone, each now one clear line: the forget spec's range errors
name --forget, Ctrl-C says what was saved, a catalogue dataset offline fails at once naming the
folder, a failed model save names the folder and cause and leaves nothing half-written."""

import argparse
import errno
import json

import numpy as np
import pytest

from imu_jax import checkpoint, train
from imu_jax.lab import cli


BASE = ["--dataset", "digits", "--model", "mlp", "--methods", "imu", "--seeds", "0",
        "--no-progress"]


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(train, "train_model",
                        lambda *a, **k: pytest.fail("a model was trained before the error"))


def _one_line(capsys) -> str:
    """The error line (progress notes such as "building imu_digits" may precede it)."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("spec,contains", [
    ("class:99", "class [99] out of range [0, 9]"),
    ("indices:EMPTY", "leaves the forget set empty"),
    ("indices:FAR", "must lie in [0,"),
])
def test_forget_spec_errors_name_the_flag(spec, contains, tmp_path, capsys, no_training):
    np.save(tmp_path / "empty.npy", np.zeros(0, np.int64))
    np.save(tmp_path / "far.npy", np.array([1, 10**6]))
    spec = spec.replace("EMPTY", str(tmp_path / "empty.npy")).replace(
        "FAR", str(tmp_path / "far.npy"))
    argv = ["run", *BASE, "--forget", spec, "--out", str(tmp_path / "o"),
            "--data-dir", str(tmp_path / "tfds")]
    assert cli.main(argv) == 2
    err = _one_line(capsys)
    assert err.startswith("imu-jax run: error: --forget: ") and contains in err, err


def _args(out):
    return argparse.Namespace(out=str(out), command="run")


def test_interrupt_before_anything_finished_says_so(tmp_path):
    message = cli.run_interrupted(_args(tmp_path / "never_written"))
    assert message.startswith("interrupted before anything finished")
    assert "results.json" not in message and "--resume" not in message


def test_interrupt_after_some_work_names_what_was_saved(tmp_path):
    (tmp_path / "models" / "original_seed0" / "checkpoint").mkdir(parents=True)
    (tmp_path / "models" / "retrain_seed0").mkdir()  # empty: not a saved model
    (tmp_path / "results.json").write_text(json.dumps({"runs": [{}, {}]}))
    message = cli.run_interrupted(_args(tmp_path))
    assert "2 finished run(s)" in message and "1 trained model(s)" in message
    assert "original_seed0" in message and "retrain_seed0" not in message
    assert message.endswith("--resume.")


def test_catalogue_dataset_offline_fails_at_once_naming_the_folder(tmp_path, capsys,
                                                                   monkeypatch):
    from imu_jax.data import sources

    monkeypatch.setattr(sources, "online", lambda *a, **k: False)
    def data_source(*args, download=True, **kwargs):
        if download:
            pytest.fail("TFDS was asked to download")
        raise FileNotFoundError("not prepared")  # what TFDS raises for data it does not have

    monkeypatch.setattr(sources.tfds, "data_source", data_source)
    data_dir = tmp_path / "my_tfds"
    assert cli.main(["run", *BASE, "--dataset", "cifar10", "--model", "fastcnn", "--forget",
                     "class:0", "--out", str(tmp_path / "o"), "--data-dir", str(data_dir)]) == 2
    err = _one_line(capsys)
    assert "network cannot be reached" in err and str(data_dir) in err, err
    assert "imagefolder:" in err


def test_a_full_disk_while_saving_a_model_is_one_line_and_leaves_nothing(tmp_path, capsys,
                                                                       monkeypatch):
    def full_disk(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError("orbax: save failed") from err  # as a library would wrap it

    monkeypatch.setattr(checkpoint, "save", full_disk)
    out = tmp_path / "model"
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--out",
            str(out), "--data-dir", str(tmp_path / "tfds"), "--no-progress"]
    assert cli.main(argv) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and str(out) in err, err
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert not out.exists()


def test_a_config_file_with_a_syntax_error_is_one_line(tmp_path, capsys, no_training):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n    return {}\n")
    assert cli.main(["run", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = _one_line(capsys)
    assert f"config file {bad}, line 1" in err, err


def test_forgetting_every_class_is_refused_before_training(tmp_path, capsys, no_training):
    argv = ["run", *BASE, "--forget", "classes:" + ",".join(map(str, range(10))),
            "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "tfds")]
    assert cli.main(argv) == 2
    err = _one_line(capsys)
    assert err.startswith("imu-jax run: error: --forget: ") and "retain set empty" in err, err


def test_a_grid_without_tuning_seeds_is_refused(tmp_path, capsys, no_training):
    argv = ["run", *BASE, "--forget", "class:3", "--grid", "imu.learning_rate=0.01,0.02",
            "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "tfds")]
    assert cli.main(argv) == 2
    assert "--grid: only means something with --tune-seeds" in _one_line(capsys)


# -- argparse errors: one line and a hint, like every other error ------------------------------

@pytest.mark.parametrize("argv,prog,contains", [
    (["run", "--seeds", "a", "--out", "o"], "imu-jax run",
     "--seeds: expected comma-separated integers, got 'a'"),
    (["run", "--forget", "class:3"], "imu-jax run", "the following arguments are required: --out"),
    (["run", "--out", "o", "--bogus"], "imu-jax run", "unrecognized arguments: --bogus"),
    (["run", "--out", "o", "--resume", "--overwrite"], "imu-jax run",
     "--overwrite: not allowed with argument --resume"),
    (["train", "--out", "o", "--epochs", "x"], "imu-jax train", "--epochs: invalid int value"),
    (["rnu"], "imu-jax", "invalid choice: 'rnu'"),
    (["plot"], "imu-jax plot", "required: OUT"),
])
def test_argparse_errors_are_one_line_with_a_hint(argv, prog, contains, capsys, no_training):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "usage:" not in err, err
    assert err.startswith(f"{prog}: error: ") and contains in err, err
    assert err.endswith(f"(see {prog} --help)"), err


# -- an --out that holds finished runs -----------------------------------------------------------

TINY = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--train-option",
        "epochs=1", "--train-option", 'model_options={"hidden": [16]}', "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (retrain + imu, seed 0) and its command line."""
    out = tmp_path_factory.mktemp("finished")
    argv = ["run", *TINY, "--methods", "retrain,imu", "--seeds", "0", "--no-noise-floor",
            "--out", str(out), "--data-dir", str(tmp_path_factory.mktemp("tfds"))]
    assert cli.main(argv) == 0
    return out, argv


def _copy(finished, tmp_path, name="copy"):
    import shutil

    out, argv = finished
    copy = tmp_path / name
    shutil.copytree(out, copy)
    return copy, [str(copy) if a == str(out) else a for a in argv]


def _runs(out):
    return json.loads((out / "results.json").read_text())["runs"]


def test_a_fresh_run_into_a_folder_with_finished_runs_is_refused(finished, tmp_path, capsys,
                                                                 monkeypatch):
    """Rerunning the command (or another one) into a folder with results silently dropped them
    at the first save; now it names the folder and the two ways on, before any work."""
    from imu_jax.lab import runner

    out, argv = _copy(finished, tmp_path)
    before = (out / "results.json").read_text()
    monkeypatch.setattr(runner, "make_splits", lambda *a, **k: pytest.fail("data loaded"),
                        raising=False)
    monkeypatch.setattr(runner, "cached_trainer", lambda *a, **k: pytest.fail("trained"))
    assert cli.main(argv) == 2
    err = _one_line(capsys)
    count = len(json.loads(before)["runs"])
    assert err.startswith(f"imu-jax run: error: --out: {out} already holds {count} finished "
                          "run(s)"), err
    assert "--resume" in err and "--overwrite" in err, err
    assert (out / "results.json").read_text() == before


def test_overwrite_replaces_the_runs_and_resume_keeps_them(finished, tmp_path):
    out, argv = _copy(finished, tmp_path)
    only_retrain = [a if a != "retrain,imu" else "retrain" for a in argv]
    assert cli.main(only_retrain + ["--resume"]) == 0
    assert "imu" in {r["method"] for r in _runs(out)}  # kept
    assert cli.main(only_retrain + ["--overwrite"]) == 0
    assert {r["method"] for r in _runs(out)} == {"original", "retrain"}
    assert not (out / "curves.jsonl.xz").exists()  # imu's curve went with its run


def test_results_md_names_every_command_that_made_runs(finished, tmp_path):
    """A resume that adds a method is a second command: results.md listed only the last one, so
    following it did not make the runs of the first."""
    from imu_jax.lab import report

    out, argv = _copy(finished, tmp_path)
    [first] = report.commands_of(json.loads((out / "results.json").read_text()))
    more = [a if a != "retrain,imu" else "retrain,imu,ga" for a in argv]
    assert cli.main(more + ["--resume"]) == 0
    results = json.loads((out / "results.json").read_text())
    commands = results["config"]["commands"]  # each run names its command by id
    assert {commands[r["command"]] for r in results["runs"] if r["method"] != "ga"} == {first}
    second = commands[next(r["command"] for r in results["runs"] if r["method"] == "ga")]
    assert first != second and "retrain,imu,ga" in second and "--resume" not in second
    assert report.commands_of(results) == [first, second]
    text = (out / "results.md").read_text()
    assert "Reproduce with these 2 commands" in text and "the later ones with --resume" in text
    assert text.index(first) < text.index(second)


def test_concurrent_writers_record_their_own_commands(tmp_path):
    from imu_jax.lab import report, store

    config = {"forget": "class:3", "seeds": [0], "methods": ["imu"]}
    a = store.SharedResults(tmp_path, {"config": {**config, "command": "imu-jax run --seeds 0"},
                                       "runs": []}, resume=False)
    b = store.SharedResults(tmp_path, {"config": {**config, "command": "imu-jax run --seeds 1"},
                                       "runs": []}, resume=False)  # joins a: allowed
    run = {"method": "imu", "role": "eval", "hparams": {}, "metrics": {}, "avg_gap": 0.0}
    a.add({**run, "seed": 0})
    b.add({**run, "seed": 1})
    a.close(), b.close()
    results = store.load_results(tmp_path)
    assert sorted(report.commands_of(results)) == ["imu-jax run --seeds 0",
                                                   "imu-jax run --seeds 1"]
    assert "Reproduce with these 2 commands" in report.results_markdown(results)
    with pytest.raises(ValueError, match="already holds 2 finished run"):  # alone now: refused
        store.SharedResults(tmp_path, {"config": config, "runs": []}, resume=False)


# -- a resumed --checkpoint-every run keeps the whole stopping curve ------------------------------

def test_resumed_checkpointed_run_keeps_the_whole_curve(finished, tmp_path, monkeypatch):
    """Interrupted inside IMU's monitored loop, then --resume: curves.jsonl.xz had only the
    checks after the checkpoint; now it is the uninterrupted run's curve."""
    from imu_jax.lab import curves
    from imu_jax.unlearning import monitor

    reference, _ = _copy(finished, tmp_path, "reference")
    out, argv = _copy(finished, tmp_path)
    (out / "results.json").unlink()
    (out / "curves.jsonl.xz").unlink()
    argv += ["--checkpoint-every", "1"]
    real = monitor.Monitor.after_step

    def interrupted_at_step_2(self, step, params, state):
        if step == 2:
            raise KeyboardInterrupt
        return real(self, step, params, state)

    monkeypatch.setattr(monitor.Monitor, "after_step", interrupted_at_step_2)
    assert cli.main(argv) == 130
    monkeypatch.setattr(monitor.Monitor, "after_step", real)
    assert cli.main(argv + ["--resume"]) == 0
    imu = next(r for r in _runs(out) if r["method"] == "imu")
    assert imu["info"]["resumed_from_step"] >= 1
    name = "imu_retain_free_seed0"
    whole = curves.read_curve(reference, name)["curve"]
    assert [p["step"] for p in whole][:3] == [0, 1, 2]
    assert curves.read_curve(out, name)["curve"] == whole
