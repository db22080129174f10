"""MNIST-1D generated locally by the ``mnist1d`` package and served as a TFDS dataset."""

import random

import numpy as np
import pytest

from imu_jax.data import load, make_splits
from imu_jax.data.mnist_1d import mnist1d_arrays
from imu_jax.models import create, functional
from imu_jax.train import recipe, train_model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_tfds_copy_equals_the_package_generator(data_dir):
    import mnist1d.data

    direct = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    raw = load("mnist1d", data_dir=data_dir)
    assert raw["train"]["image"].shape == (4000, 40, 1)
    assert raw["test"]["image"].shape == (1000, 40, 1)
    np.testing.assert_allclose(raw["train"]["image"][..., 0], direct["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(raw["test"]["image"][..., 0], direct["x_test"], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(raw["train"]["label"], direct["y"])
    np.testing.assert_array_equal(raw["test"]["label"], direct["y_test"])
    assert np.bincount(raw["train"]["label"]).min() > 350  # ~400 per class


def test_generation_leaves_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    mnist1d_arrays()
    after = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    assert after == (np.random.random(), random.random())


def test_forget_specs_and_passthrough_normalisation(data_dir):
    raw = load("mnist1d", data_dir=data_dir)
    s = make_splits("mnist1d", "class:4", data_dir=data_dir)
    np.testing.assert_array_equal(s.train["image"], raw["train"]["image"])  # already standardised
    assert s.input_shape == (40, 1) and s.num_classes == 10
    assert (s.forget["label"] == 4).all() and (s.forget_test["label"] == 4).all()
    assert len(s.forget["label"]) == int((raw["train"]["label"] == 4).sum())
    s = make_splits("mnist1d", "random:0.25", data_dir=data_dir, seed=2)
    assert s.info["counts"] == {"train": 4000, "forget": 1000, "retain": 3000, "test": 1000}
    s = make_splits("mnist1d", "mislabeled:0.1", data_dir=data_dir)
    assert (s.forget["label"] != raw["train"]["label"][np.isin(
        np.arange(4000), np.flatnonzero(s.train["label"] != raw["train"]["label"]))]).all()
    assert int((s.train["label"] != raw["train"]["label"]).sum()) == 400


def test_recipes_are_the_packages():
    cnn, mlp = recipe("mnist1d"), recipe("mnist1d", "mlp")
    for r in (cnn, mlp):  # Adam 1e-2, no weight decay, batch 100, 6,000 steps
        assert (r["optimizer"], r["learning_rate"], r["weight_decay"], r["batch_size"]) == (
            "adamw", 1e-2, 0.0, 100)
        assert r["epochs"] * 4000 // r["batch_size"] == 6000
    assert cnn["model"] == "cnn1d" and mlp["model_options"] == {"hidden": (100, 100)}
    fm = functional(create("cnn1d", num_classes=10, input_shape=(40, 1)))
    assert fm.params["head"]["kernel"].shape == (125, 10)  # ConvBase: 25 channels x length 5
    assert fm.num_params() == 25 * 5 + 25 + 2 * (25 * 25 * 3 + 25) + 125 * 10 + 10


def test_short_mlp_training_learns(data_dir):
    splits = make_splits("mnist1d", data_dir=data_dir)
    cfg = {**recipe("mnist1d", "mlp"), "epochs": 5}
    _, _, _, metrics = train_model(cfg, splits, progress=False)
    assert metrics["test_acc"] > 0.3  # chance is 0.1; the full recipe reaches ~0.6-0.7


def test_run_command_on_mnist1d(tmp_path, data_dir):
    """``imu-jax run --dataset mnist1d`` end to end (few epochs), as the README shows it."""
    import json

    from imu_jax.lab import cli

    out = tmp_path / "run"
    rc = cli.main(["run", "--dataset", "mnist1d", "--model", "mlp", "--forget", "random:0.1",
                   "--methods", "retrain,imu", "--seeds", "0", "--train-option", "epochs=3",
                   "--no-progress", "--out", str(out), "--data-dir", str(data_dir)])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    imu = next(r for r in runs if r["method"] == "imu")
    assert imu["info"]["closed_form"] is True and 0.0 <= imu["metrics"]["ua"] <= 1.0
    assert json.loads((out / "results.json").read_text())["config"]["dataset"] == "mnist1d"
