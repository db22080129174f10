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
