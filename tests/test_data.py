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


def test_markov_matrices_and_start_distribution_are_the_public_generators():
    # Spec §4: rows of the chain's own states put 0.8/3 on the chain and 0.2/7 elsewhere; every
    # other row is uniform (0.1); the start distribution is 0.8/3 on the chain, 0.2/7 elsewhere.
    for chain in (0, 1, 2):
        own = markov.chain_states(chain)
        others = np.setdiff1d(np.arange(10), own)
        t = transition_matrix(chain, 10, 0.2)
        np.testing.assert_allclose(t.sum(axis=1), 1.0)
        np.testing.assert_allclose(t[np.ix_(own, own)], 0.8 / 3)
        np.testing.assert_allclose(t[np.ix_(own, others)], 0.2 / 7)
        np.testing.assert_allclose(t[others], 0.1)
        p0 = markov.initial_distribution(chain, 10, 0.2)
        np.testing.assert_allclose(p0[own], 0.8 / 3)
        np.testing.assert_allclose(p0[others], 0.2 / 7)
    with pytest.raises(ValueError, match="leak"):
        transition_matrix(0, 10, 1.5)


def test_markov_samples_follow_the_matrices_and_start_outside_the_chain():
    cfg = markov.MarkovConfig(name="f", num_retain=0, num_forget1=4000, num_forget2=0, length=20)
    seqs = markov.sample_chain(1, 4000, cfg)
    start = np.bincount(seqs[:, 0], minlength=10) / len(seqs)
    np.testing.assert_allclose(start, markov.initial_distribution(1), atol=0.02)
    assert 0.15 < np.mean(~np.isin(seqs[:, 0], [3, 4, 5])) < 0.25  # ~a fifth start outside
    t = transition_matrix(1)
    prev, nxt = seqs[:, :-1].ravel(), seqs[:, 1:].ravel()
    for state in (3, 0, 9):  # a chain state (peaked row) and two outside states (uniform rows)
        freq = np.bincount(nxt[prev == state], minlength=10) / np.sum(prev == state)
        np.testing.assert_allclose(freq, t[state], atol=0.03)


def test_markov_splits_counts_and_shift(data_dir):
    s = make_splits("markov/small", "chain:1", data_dir=data_dir)
    c = s.info["counts"]
    assert (c["retain"], c["forget"], c["control"]) == (480, 240, 240)
    assert (c["test"], c["forget_test"], c["control_test"]) == (120, 60, 60)
    assert c["train"] == 720
    np.testing.assert_array_equal(s.train["label"][:, :-1], s.train["tokens"][:, 1:])
    assert (s.train["label"][:, -1] == -1).all()
    assert np.mean(np.isin(s.forget["tokens"], [3, 4, 5])) > 0.6
    assert np.mean(np.isin(s.control["tokens"], [6, 7, 8])) > 0.6
    assert np.mean(np.isin(s.retain["tokens"], [0, 1, 2])) > 0.6
    np.testing.assert_allclose(s.transition, transition_matrix(0))
    np.testing.assert_allclose(s.transitions["control"], transition_matrix(2))
    assert s.input_shape == (12,) and s.num_classes == 10
    s2 = make_splits("markov/small", "chain:2", data_dir=data_dir)
    np.testing.assert_array_equal(s2.forget["tokens"], s.control["tokens"])


def test_markov_paper_forget_set_is_forget1_plus_forget2(data_dir):
    clean = make_splits("markov/small", "chain:1", data_dir=data_dir)
    paper = make_splits("markov/small", "chain:1,2", data_dir=data_dir)
    np.testing.assert_array_equal(paper.train["tokens"], clean.train["tokens"])  # retain+forget1
    np.testing.assert_array_equal(paper.forget["tokens"], np.concatenate(
        [clean.forget["tokens"], clean.control["tokens"]]))
    np.testing.assert_array_equal(paper.control_test["tokens"], clean.control_test["tokens"])
    assert paper.info["trained_on"] == clean.info["trained_on"] == "retain+chain1"
    assert "forget" not in paper.transitions  # two chains: no single true matrix


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
