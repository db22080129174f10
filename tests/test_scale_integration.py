"""``--mesh`` on the training CLI: same model as one device, checkpoint restorable on 1 device."""

import json

import jax
import numpy as np
import pytest

from imu_jax import checkpoint, cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize("axis_types", ["explicit", "auto"])
def test_train_on_a_mesh_matches_one_device(tmp_path, axis_types, data_dir):
    common = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
              "--batch-size", "64", "--lr", "0.05", "--data-dir", data_dir, "--no-progress"]
    assert cli.main([*common, "--out", str(tmp_path / "one")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "mesh"), "--mesh", "data=4,model=2",
                     "--mesh-axis-types", axis_types]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    mesh = json.loads((tmp_path / "mesh" / "metrics.json").read_text())
    assert mesh["test_acc"] == pytest.approx(one["test_acc"], abs=2e-3)
    assert mesh["history"][0]["train_loss"] == pytest.approx(one["history"][0]["train_loss"],
                                                             rel=1e-4)
    # saved sharded over 8 devices, restored here onto one
    _, params_one, _, _ = checkpoint.restore(tmp_path / "one" / "checkpoint")
    _, params_mesh, _, _ = checkpoint.restore(tmp_path / "mesh" / "checkpoint")
    for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_mesh)):
        assert len(b.sharding.device_set) == 1
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4)


def test_train_help_lists_the_mesh_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--mesh", "--mesh-axis-types", "--coordinator-address", "--num-processes",
                 "--process-id"):
        assert flag in out


# --- the unlearning loop and `imu-jax run` (branch unlearn) -----------------------------------

@pytest.fixture(scope="module")
def trained_digits(data_dir):
    from imu_jax import train
    from imu_jax.data import make_splits

    splits = make_splits("digits", "class:3", data_dir=data_dir)
    cfg = train.TrainConfig(model="cnn", epochs=1, learning_rate=0.05, batch_size=64)
    fm, params, state, _ = train.train_model(cfg, splits, progress=False)
    return fm, params, state, splits


def _max_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("mode,closed_form", [("global", "auto"), ("global", "never"),
                                              ("per_batch", "auto")])
def test_unlearn_on_a_mesh_matches_one_device(trained_digits, mode, closed_form):
    from imu_jax import sharding
    from imu_jax.unlearn import UnlearnConfig, unlearn

    fm, params, state, splits = trained_digits
    config = UnlearnConfig(epochs=2, batch_size=32, top_fraction=0.5, influence_mode=mode,
                           closed_form=closed_form, influence_chunk_size=64)
    one, report = unlearn(fm, params, splits.forget, config, state=state, seed=1)
    for spec, axis_types in (("data=4,model=2", "explicit"), ("data=8", "auto")):
        mesh = sharding.make_mesh(spec, axis_types=axis_types)
        with sharding.use_mesh(mesh):  # the way `imu-jax run --mesh` hands it over
            many, report_mesh = unlearn(fm, params, splits.forget, config, state=state, seed=1)
        assert _max_difference(one, many) < 1e-5
        assert report_mesh.steps == report.steps and report_mesh.num_kept == report.num_kept
        assert report_mesh.closed_form == report.closed_form
    assert _max_difference(one["head"], params["head"]) > 1e-4  # it did unlearn


def test_unlearn_checkpoints_and_resumes_bit_identically(trained_digits, tmp_path):
    import shutil

    from imu_jax import run_checkpoint
    from imu_jax.unlearn import UnlearnConfig, unlearn

    fm, params, state, splits = trained_digits
    config = UnlearnConfig(epochs=3, batch_size=32, top_fraction=0.5)
    straight, report = unlearn(fm, params, splits.forget, config, state=state, seed=2)
    with run_checkpoint.use_run_checkpoints(tmp_path, save_every=2, keep=5):
        unlearn(fm, params, splits.forget, config, state=state, seed=2)
    (run_dir,) = list(tmp_path.iterdir())
    steps = sorted(int(p.name) for p in run_dir.iterdir() if p.name.isdigit())
    assert steps[-1] == report.steps and len(steps) >= 3
    for step in steps[1:]:  # as if killed after the first checkpoint
        shutil.rmtree(run_dir / str(step))
    ckpt = run_checkpoint.RunCheckpointer(run_dir)
    resumed, _ = unlearn(fm, params, splits.forget, config, state=state, seed=2,
                         checkpointer=ckpt, resume=True)
    ckpt.close()
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_run_cli_with_mesh_and_checkpoints(tmp_path, data_dir):
    tiny = ["run", "--dataset", "digits", "--model", "mlp", "--forget", "class:3",
            "--train-option", "epochs=1", "--train-option", 'model_options={"hidden": [32]}',
            "--methods", "imu", "--seeds", "0", "--hparam", "imu.epochs=2", "--no-progress",
            "--fixed-length", "--data-dir", data_dir]  # the fixed 2 epochs, not the rule
    assert cli.main([*tiny, "--out", str(tmp_path / "one")]) == 0
    assert cli.main([*tiny, "--out", str(tmp_path / "mesh"), "--mesh", "data=4,model=2",
                     "--checkpoint-every", "2"]) == 0
    runs = {name: json.loads((tmp_path / name / "results.json").read_text())["runs"]
            for name in ("one", "mesh")}
    imu = {name: next(r for r in rs if r["method"] == "imu") for name, rs in runs.items()}
    for key, value in imu["one"]["metrics"].items():
        assert imu["mesh"]["metrics"][key] == pytest.approx(value, abs=1e-3), key
    (run_dir,) = list((tmp_path / "mesh" / "checkpoints").iterdir())
    assert any(p.name.isdigit() for p in run_dir.iterdir())
