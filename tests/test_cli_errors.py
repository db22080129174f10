"""Every bad option of ``imu-jax run / train / data`` is one line naming the flag, exit status 2,
before any data is loaded or model trained; the Python API's messages for bad data."""

import subprocess
import sys

import numpy as np
import pytest

from imu_jax import train
from imu_jax.lab import arguments, cli, runner


RUN = {"--dataset": "digits", "--model": "mlp", "--forget": "class:3", "--methods": "imu",
       "--seeds": "0"}
ADD = object()  # marks a repeatable flag appended to the base command


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if any data is split or model trained."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(train, "train_model", forbidden)
    monkeypatch.setattr("imu_jax.data.make_splits", forbidden)


def _argv(command: str, base: dict, changes: dict, out: str, data_dir: str) -> list[str]:
    flags = {**base, "--out": out, "--data-dir": data_dir}
    extra = []
    for flag, value in changes.items():
        if isinstance(value, tuple) and value[0] is ADD:
            extra += [flag, value[1]]
        elif value is None:
            flags.pop(flag, None)
        else:
            flags[flag] = value
    argv = [command]
    for flag, value in flags.items():
        argv += [flag, value]
    return argv + extra + (["--no-progress"] if command != "data" else [])


def _assert_one_line(capsys, command: str, flag: str, *, contains: str = "") -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"imu-jax {command}: error: {flag}:"), err
    assert contains in err, err
    return err


RUN_CASES = [
    ("--hparam", {"--hparam": (ADD, "imu.learning_rate=abc")}, "expected a number"),
    ("--hparam", {"--hparam": (ADD, "imu.epochs=-3")}, "must be > 0"),
    ("--hparam", {"--hparam": (ADD, "imu.epochs=2.5")}, "expected an integer"),
    ("--hparam", {"--hparam": (ADD, "imu.no_such=1")}, "no hyperparameter 'no_such'"),
    ("--hparam", {"--hparam": (ADD, "ga.learning_rate=0.1")}, "not among the methods"),
    ("--hparam", {"--hparam": (ADD, "learning_rate=0.1")}, "METHOD.NAME=VALUE"),
    ("--hparam", {"--hparam": (ADD, "imu.optimizer=3")}, "expected a string"),
    ("--hparam", {"--hparam": (ADD, "imu.max_steps=abc")}, "expected an integer"),
    ("--hparam", {"--hparam": (ADD, "imu.max_steps=0")}, "must be > 0"),
    ("--hparam", {"--hparam": (ADD, "imu.alpha=-1")}, "must be >= 0"),
    # values only the method itself knows are out of range: checked before training too
    ("--hparam", {"--hparam": (ADD, "imu.top_fraction=2")}, "top_fraction must be in (0, 1]"),
    ("--hparam", {"--hparam": (ADD, "imu.momentum=1.5")}, "momentum must be in"),
    ("--hparam", {"--hparam": (ADD, "imu.milestones=[5]")}, "fractions of the run in (0, 1)"),
    ("--hparam", {"--hparam": (ADD, 'imu.optimizer="adam"')}, "optimizer must be"),
    ("--grid", {"--grid": (ADD, "imu.top_fraction=0.5,3")}, "top_fraction=3"),
    ("--tune-seeds", {"--tune-seeds": "0"}, "also in --seeds"),
    ("--grid", {"--grid": (ADD, "imu.epochs=10,abc")}, "expected an integer"),
    ("--grid", {"--grid": (ADD, "imu.learning_rate=0")}, "must be > 0"),
    ("--train-option", {"--train-option": (ADD, "epochs=-1")}, "must be > 0"),
    ("--train-option", {"--train-option": (ADD, "epochs=0")}, "must be > 0"),
    ("--train-option", {"--train-option": (ADD, "learning_rate=abc")}, "expected a number"),
    ("--train-option", {"--train-option": (ADD, "batch_size=0")}, "must be > 0"),
    ("--train-option", {"--train-option": (ADD, "no_such=1")}, "unknown training option"),
    ("--train-option", {"--train-option": (ADD, 'optimizer="adam"')}, "sgd or adamw"),
    ("--train-option", {"--train-option": (ADD, "epochs")}, "NAME=VALUE"),
    ("--methods", {"--methods": ""}, "at least one method"),
    ("--methods", {"--methods": "imu,"}, "at least one method"),
    ("--methods", {"--methods": "sgd"}, "unknown method 'sgd'"),
    ("--seeds", {"--seeds": ""}, "at least one seed"),
    ("--seeds", {"--seeds": "-1"}, ">= 0"),
    ("--seeds", {"--seeds": "0,0"}, "repeated"),
    ("--tune-seeds", {"--tune-seeds": "-2"}, ">= 0"),
    ("--split-seed", {"--split-seed": "-1"}, ">= 0"),
    ("--checkpoint-every", {"--checkpoint-every": "-1"}, ">= 0"),
    ("--keep-checkpoints", {"--keep-checkpoints": "0"}, ">= 1"),
    ("--dataset", {"--dataset": "cifar11"}, "Unknown dataset"),
    ("--model", {"--model": "vit"}, "unknown model 'vit'"),
    ("--model", {"--model": "vit", "--forget": None}, "unknown model 'vit'"),
    ("--forget", {"--forget": None}, "required for dataset 'digits'"),
    ("--forget", {"--forget": "class:x"}, ""),
    ("--forget", {"--forget": "everything"}, ""),
    ("--config", {"--config": "no/such/config.py"}, "No config file"),
    ("--train-config", {"--train-config": "no/such/recipe.py"}, "No config file"),
]


@pytest.mark.parametrize("flag,changes,contains", RUN_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(RUN_CASES)])
def test_run_rejects_bad_values_before_any_work(flag, changes, contains, tmp_path, capsys,
                                                no_work):
    out = tmp_path / "out"
    argv = _argv("run", RUN, changes, str(out), str(tmp_path / "tfds"))
    assert cli.main(argv) == 2
    _assert_one_line(capsys, "run", flag, contains=contains)
    assert not (out / "models").exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
@pytest.mark.parametrize("flag", ["--out", "--data-dir"])
def test_run_rejects_unusable_folders(flag, where, tmp_path, capsys, no_work):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    path = a_file if where == "file" else a_file / "below"
    paths = {"--out": str(tmp_path / "out"), "--data-dir": str(tmp_path / "tfds"), flag: str(path)}
    argv = _argv("run", RUN, {}, paths["--out"], paths["--data-dir"])
    assert cli.main(argv) == 2
    _assert_one_line(capsys, "run", flag, contains=str(a_file))


TRAIN_CASES = [
    ("--epochs", {"--epochs": "0"}, ">= 1"),
    ("--epochs", {"--epochs": "-1"}, ">= 1"),
    ("--batch-size", {"--batch-size": "0"}, ">= 1"),
    ("--lr", {"--lr": "-0.1"}, "> 0"),
    ("--lr", {"--lr": "nan"}, "> 0"),
    ("--seed", {"--seed": "-1"}, ">= 0"),
    ("--dataset", {"--dataset": "cifar11"}, "Unknown dataset"),
    ("--model", {"--model": "vit"}, "unknown model"),
    ("--forget", {"--forget": "class:x"}, ""),
    ("--config", {"--config": "no/such/recipe.py"}, "No config file"),
]


@pytest.mark.parametrize("flag,changes,contains", TRAIN_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TRAIN_CASES)])
def test_train_rejects_bad_values_before_any_work(flag, changes, contains, tmp_path, capsys,
                                                  no_work):
    base = {"--dataset": "digits", "--model": "mlp"}
    out = tmp_path / "out"
    assert cli.main(_argv("train", base, changes, str(out), str(tmp_path / "tfds"))) == 2
    _assert_one_line(capsys, "train", flag, contains=contains)
    assert not out.exists()


def test_train_rejects_a_bad_recipe_file(tmp_path, capsys, no_work):
    recipe = tmp_path / "recipe.py"
    recipe.write_text("def get_config():\n    return {'dataset': 'digits', 'model': 'mlp', "
                      "'epochs': 0}\n")
    argv = ["train", "--config", str(recipe), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    _assert_one_line(capsys, "train", "--config", contains="epochs: must be > 0")


@pytest.mark.parametrize("dataset,contains", [("cifar10", "TFDS catalogue"),
                                              ("nope", "Unknown dataset")])
def test_data_rejects_datasets_it_cannot_build(dataset, contains, tmp_path, capsys):
    assert cli.main(["data", "--dataset", dataset, "--data-dir", str(tmp_path)]) == 2
    _assert_one_line(capsys, "data", "--dataset", contains=contains)
    assert not any(tmp_path.iterdir())


def test_data_rejects_a_file_as_data_dir(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert cli.main(["data", "--dataset", "digits", "--data-dir", str(a_file)]) == 2
    _assert_one_line(capsys, "data", "--data-dir", contains="not a folder")


@pytest.mark.parametrize("dataset,model,forget", [("markov/small", "cnn", "chain:1"),
                                                  ("markov/small", "mlp", "chain:1"),
                                                  ("digits", "transformer", "class:3")])
def test_model_that_does_not_fit_the_data_fails_before_training(dataset, model, forget,
                                                                 tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "cached_trainer", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "out"
    rc = cli.main(["run", "--dataset", dataset, "--model", model, "--forget", forget,
                   "--methods", "imu", "--seeds", "0", "--no-progress", "--out", str(out),
                   "--data-dir", str(tmp_path / "tfds")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("imu-jax run: error: model ")
    assert repr(model) in err and repr(dataset) in err
    assert not (out / "models").exists()


def test_version_flag(capsys):
    import imu_jax

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"imu-jax {imu_jax.__version__}"


# -- the Python API -----------------------------------------------------------------------------

class _Linear:
    def apply(self, params, state, x, *, train=False):
        return x @ params["head"]["kernel"] + params["head"]["bias"], state


def _params(d=4, c=3):
    import jax.numpy as jnp

    return {"head": {"kernel": jnp.zeros((d, c)), "bias": jnp.zeros(c)}}


def test_unlearn_names_a_missing_label_key():
    import imu_jax as imu

    with pytest.raises(ValueError, match=r"needs a 'label' array next to 'image'.*\['image'\]"):
        imu.unlearn(_Linear(), _params(), {"image": np.ones((5, 4), np.float32)})


def test_unlearn_names_non_finite_inputs_by_the_users_key():
    import imu_jax as imu

    for bad in (np.nan, np.inf):
        image = np.ones((5, 4), np.float32)
        image[2, 1] = bad
        with pytest.raises(ValueError, match=r"forget contains NaN or inf values \(at \['image'\]"):
            imu.unlearn(_Linear(), _params(), {"image": image, "label": np.zeros(5, np.int32)})


def test_unlearn_names_inputs_that_do_not_fit_the_model():
    import imu_jax as imu

    forget = {"image": np.ones((5, 7), np.float32), "label": np.zeros(5, np.int32)}
    with pytest.raises(ValueError, match=r"forget: inputs float32\[7\] per example do not fit "
                                         r"the model"):
        imu.unlearn(_Linear(), _params(), forget)
    forget = {"image": np.ones((5, 4), np.float32), "label": np.zeros((5, 2), np.int32)}
    with pytest.raises(ValueError, match=r"logits are \[N, C\] = \[N, 3\] .* labels must be "
                                         r"integer classes \[N\] = \[5\] or one-hot .* shape "
                                         r"\(5, 2\)"):
        imu.unlearn(_Linear(), _params(), forget)
    with pytest.raises(ValueError, match="5 'image' rows but 4 'label' rows"):
        imu.unlearn(_Linear(), _params(), {"image": np.ones((5, 4), np.float32),
                                           "label": np.zeros(4, np.int32)})


def test_import_is_light():
    """``import imu_jax`` loads no scipy, scikit-learn, matplotlib, Orbax or TFDS (they are
    imported where they are used), so ``import imu_jax`` and ``imu-jax --help`` start fast."""
    heavy = ("scipy", "sklearn", "matplotlib", "orbax.checkpoint", "tensorflow_datasets")
    code = (f"import sys, imu_jax, imu_jax.lab.cli; imu_jax.lab.cli.build_parser(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_methods_flag_accepts_every_name_the_runner_runs():
    """``retrain_floor`` is the runner's pseudo-method (Retrain of another seed): valid for
    ``--methods`` although it is not in the methods registry."""
    from imu_jax.lab import runner, validate

    assert validate._methods({"methods": runner.runnable_methods()}) is None
    assert "retrain_floor" in validate._methods({"methods": ["nope"]})


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_bug_outside_our_checks_shows_its_traceback_not_a_user_error(command, tmp_path, capsys,
                                                                       monkeypatch):
    """A ValueError from inside numpy (here: a reduction over an empty array, as an empty split
    once caused) is not bad input: the CLI shows the traceback and says so, exit status 1."""
    def numpy_bug(*args, **kwargs):
        return np.max(np.zeros(0))

    monkeypatch.setattr(train, "train_model", numpy_bug)
    monkeypatch.setattr(runner, "run", numpy_bug)
    base = RUN if command == "run" else {"--dataset": "digits", "--model": "mlp"}
    assert cli.main(_argv(command, base, {}, str(tmp_path / "o"), str(tmp_path / "d"))) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "numpy_bug" in err
    assert f"imu-jax {command}: internal error: ValueError: zero-size array" in err
    assert arguments.is_user_error(ValueError("raised here, in the test")) is True  # no traceback


def test_help_lists_every_model():
    from imu_jax.models import REGISTRY

    assert sorted(arguments.MODEL_NAMES.split(", ")) == sorted(REGISTRY)
