"""Builders (digits, Markov), loading, data-dir errors."""

import numpy as np
import pytest

from imu_jax.data import DataDirError, build, load, make_splits, markov, transition_matrix
from imu_jax.data.paths import ENV_VAR, resolve_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_digits_shapes_and_split(data_dir):
    raw = load("digits", data_dir=data_dir)
    assert raw["train"]["image"].shape == (1437, 8, 8, 1)
    assert raw["test"]["image"].shape == (360, 8, 8, 1)
    assert raw["train"]["image"].max() == 16
    # Disjoint, covering split of the 1,797 images.
    ids = np.concatenate([raw["train"]["id"], raw["test"]["id"]])
    assert sorted(ids.tolist()) == list(range(1797))
    assert set(np.unique(raw["test"]["label"])) == set(range(10))


def test_digits_builder_is_deterministic(tmp_path, data_dir):
    a = load("digits", data_dir=data_dir)
    b = load("digits", data_dir=tmp_path)  # built again from scratch
    for split in ("train", "test"):
        for key in a[split]:
            np.testing.assert_array_equal(a[split][key], b[split][key])


def test_markov_builder_is_deterministic_and_matches_generator(tmp_path, data_dir):
    a = load("markov/small", data_dir=data_dir)
    b = load("markov/small", data_dir=tmp_path)
    np.testing.assert_array_equal(a["train"]["tokens"], b["train"]["tokens"])
    cfg = markov.MarkovConfig(name="small", length=12, num_retain=600, num_forget1=300,
                              num_forget2=300)
    expected = markov.generate(cfg)
    np.testing.assert_array_equal(a["test"]["tokens"], expected["test"]["tokens"])
    other_seed = markov.generate(markov.MarkovConfig(name="s", seed=1, length=12, num_retain=600,
                                                     num_forget1=300, num_forget2=300))
    assert not np.array_equal(other_seed["train"]["tokens"], expected["train"]["tokens"])


def test_markov_transition_rows_and_empirical_frequencies():
    t = transition_matrix(1, 10, 0.2)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    np.testing.assert_allclose(t[0, [3, 4, 5]], 0.8 / 3)
    np.testing.assert_allclose(t[0, [0, 1, 2, 6, 7, 8, 9]], 0.2 / 7)
    cfg = markov.MarkovConfig(name="f", num_retain=0, num_forget1=2000, num_forget2=0, length=20)
    seqs = markov.sample_chain(1, 2000, cfg)
    freq = np.bincount(seqs[:, 1:].ravel(), minlength=10) / seqs[:, 1:].size
    np.testing.assert_allclose(freq, t[0], atol=0.01)
    assert set(np.unique(seqs[:, 0])) <= {3, 4, 5}


def test_markov_splits_counts_and_shift(data_dir):
    s = make_splits("markov/small", "chain:1", data_dir=data_dir)
    c = s.info["counts"]
    assert (c["retain"], c["forget"], c["control"]) == (480, 240, 240)
    assert (c["test"], c["forget_test"], c["control_test"]) == (120, 60, 60)
    assert c["train"] == 720
    np.testing.assert_array_equal(s.train["label"][:, :-1], s.train["tokens"][:, 1:])
    assert (s.train["label"][:, -1] == -1).all()
    assert np.isin(s.forget["tokens"][:, 0], [3, 4, 5]).all()
    assert np.isin(s.control["tokens"][:, 0], [6, 7, 8]).all()
    assert np.isin(s.retain["tokens"][:, 0], [0, 1, 2]).all()
    np.testing.assert_allclose(s.transition, transition_matrix(0))
    np.testing.assert_allclose(s.transitions["control"], transition_matrix(2))
    assert s.input_shape == (12,) and s.num_classes == 10
    s2 = make_splits("markov/small", "chain:2", data_dir=data_dir)
    assert np.isin(s2.forget["tokens"][:, 0], [6, 7, 8]).all()


@pytest.mark.parametrize("spec", ["class:1", "random:0.1", "chain:0", "chain:3"])
def test_markov_rejects_bad_specs(data_dir, spec):
    with pytest.raises(ValueError, match="chain|Markov"):
        make_splits("markov/small", spec, data_dir=data_dir)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(ENV_VAR)
    assert str(resolve_data_dir()).endswith("imu_jax/tfds")


def test_env_var_picks_build_location(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    load("digits")
    assert (tmp_path / "imu_digits" / "1.0.0").is_dir()


def test_missing_data_dir_says_how_to_rebuild(tmp_path):
    with pytest.raises(DataDirError, match=r"not built.*imu_jax\.data\.build\('digits'"):
        load("digits", data_dir=tmp_path / "missing", download=False)


def test_corrupt_data_dir_says_how_to_rebuild(tmp_path):
    load("digits", data_dir=tmp_path)
    for f in (tmp_path / "imu_digits" / "1.0.0").glob("*train.array_record*"):
        f.write_bytes(b"\x00garbage")
    with pytest.raises(DataDirError, match=r"Could not read.*--rebuild"):
        load("digits", data_dir=tmp_path)
    build("digits", data_dir=tmp_path, overwrite=True)  # the advertised fix works
    assert load("digits", data_dir=tmp_path)["train"]["label"].shape == (1437,)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*digits"):
        load("imagenet")


def test_missing_catalogue_dataset_says_how_to_build(tmp_path):
    with pytest.raises(DataDirError, match=r"tfds build mnist --file_format=array_record"):
        load("mnist", data_dir=tmp_path, download=False)
