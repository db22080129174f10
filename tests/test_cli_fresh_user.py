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
