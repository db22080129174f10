"""Every forget spec, on mock CIFAR-100 (offline) and on digits; spec errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from imu_jax.data import load, make_splits, parse_forget_spec
from imu_jax.data.cifar100_labels import CIFAR100_COARSE_OF_FINE

N = 600


@pytest.fixture(scope="module")
def mock_cifar():
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        return load("cifar100")


@pytest.fixture
def cifar_splits(mock_cifar, tmp_path):
    def make(spec, seed=0):
        with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
            return make_splits("cifar100", spec, seed=seed, data_dir=tmp_path)

    return make


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def assert_partition(s):
    c = s.info["counts"]
    assert c["forget"] > 0
    assert c["forget"] + c["retain"] == c["train"]


def test_cifar_class(cifar_splits, mock_cifar):
    k = int(np.bincount(mock_cifar["train"]["label"]).argmax())
    s = cifar_splits(f"class:{k}")
    fine = mock_cifar["train"]["label"]
    assert s.info["counts"]["forget"] == (fine == k).sum()
    assert (s.forget["label"] == k).all() and not (s.retain["label"] == k).any()
    assert not (s.test["label"] == k).any() and (s.forget_test["label"] == k).all()
    assert s.num_classes == 100 and s.input_shape == (32, 32, 3)
    assert s.train["image"].dtype == np.float32 and abs(float(s.train["image"].mean())) < 0.5
    assert_partition(s)


def test_cifar_classes(cifar_splits, mock_cifar):
    s = cifar_splits("classes:1,2,3")
    assert s.info["counts"]["forget"] == np.isin(mock_cifar["train"]["label"], [1, 2, 3]).sum()
    assert_partition(s)


def test_cifar_superclass_exact_counts(cifar_splits, mock_cifar):
    coarse_tr, coarse_te = mock_cifar["train"]["coarse_label"], mock_cifar["test"]["coarse_label"]
    s = cifar_splits("superclass:7")
    c = s.info["counts"]
    assert c["forget"] == (coarse_tr == 7).sum() > 0
    assert c["retain"] == (coarse_tr != 7).sum()
    assert c["test"] == (coarse_te != 7).sum() and c["forget_test"] == (coarse_te == 7).sum()
    assert s.num_classes == 20 and s.info["label_key"] == "coarse_label"
    assert (s.forget["label"] == 7).all() and s.train["label"].max() < 20
    assert_partition(s)


def test_cifar_subclass_exact_counts(cifar_splits, mock_cifar):
    k = 4  # "beaver", superclass 0 (aquatic mammals)
    siblings = np.flatnonzero(CIFAR100_COARSE_OF_FINE == CIFAR100_COARSE_OF_FINE[k])
    assert len(siblings) == 5 and k in siblings
    others = siblings[siblings != k]
    fine_tr, fine_te = mock_cifar["train"]["label"], mock_cifar["test"]["label"]
    s = cifar_splits(f"subclass:{k}")
    c = s.info["counts"]
    assert c["forget"] == (fine_tr == k).sum() > 0
    assert c["retain"] == np.isin(fine_tr, others).sum()
    assert c["test"] == np.isin(fine_te, others).sum()
    assert c["forget_test"] == (fine_te == k).sum()
    assert c["retrain_set"] == (fine_tr != k).sum() == len(s.retrain_data["label"])
    assert s.num_classes == 20


def test_superclass_map_is_a_partition():
    assert np.bincount(CIFAR100_COARSE_OF_FINE).tolist() == [5] * 20


@pytest.mark.parametrize("kind", ["random", "mislabeled"])
def test_cifar_fraction_specs_are_seeded(cifar_splits, kind):
    a, b, c = cifar_splits(f"{kind}:0.1", 0), cifar_splits(f"{kind}:0.1", 0), cifar_splits(
        f"{kind}:0.1", 1)
    assert a.info["counts"]["forget"] == round(0.1 * N)
    np.testing.assert_array_equal(a.forget["image"], b.forget["image"])
    assert not np.array_equal(a.forget["image"], c.forget["image"])
    assert_partition(a)


def test_cifar_mislabeled_labels_differ(cifar_splits, mock_cifar):
    s = cifar_splits("mislabeled:0.2")
    orig = mock_cifar["train"]["label"]
    changed = s.train["label"] != orig
    assert changed.sum() == s.info["counts"]["forget"] == round(0.2 * N)
    # The forget set is exactly the relabelled examples, with their wrong labels.
    np.testing.assert_array_equal(np.sort(s.forget["label"]), np.sort(s.train["label"][changed]))
    np.testing.assert_array_equal(s.retain["label"], orig[~changed])
    assert s.train["label"].min() >= 0 and s.train["label"].max() < 100


def test_cifar_indices(cifar_splits, tmp_path):
    (tmp_path / "idx.txt").write_text("5, 1\n9 1\n")
    s = cifar_splits(f"indices:{tmp_path / 'idx.txt'}")
    full = cifar_splits(None)
    np.testing.assert_array_equal(s.forget["image"], full.train["image"][[1, 5, 9]])
    np.save(tmp_path / "idx.npy", np.array([0, 2]))
    assert cifar_splits(f"indices:{tmp_path / 'idx.npy'}").info["counts"]["forget"] == 2


@pytest.mark.parametrize(
    "spec, match",
    [
        ("class:100", "out of range"),
        ("superclass:20", "out of range"),
        ("subclass:100", "out of range"),
        ("chain:1", "Markov"),
    ],
)
def test_cifar_bad_specs(cifar_splits, spec, match):
    with pytest.raises(ValueError, match=match):
        cifar_splits(spec)


@pytest.mark.parametrize(
    "spec, count",
    [("class:3", 146), ("classes:0,9", 142 + 144), ("random:0.25", 359), ("mislabeled:0.1", 144)],
)
def test_digits_specs(digits_dir, spec, count):
    s = make_splits("digits", spec, data_dir=digits_dir)
    assert s.info["counts"]["forget"] == count
    assert_partition(s)
    assert s.info["forget_spec"] == spec


def test_digits_indices(digits_dir, tmp_path):
    (tmp_path / "i.txt").write_text("0 1 2")
    s = make_splits("digits", f"indices:{tmp_path / 'i.txt'}", data_dir=digits_dir)
    full = make_splits("digits", None, data_dir=digits_dir)
    np.testing.assert_array_equal(s.forget["label"], full.train["label"][:3])
    assert full.info["counts"]["forget"] == 0


@pytest.mark.parametrize(
    "spec, match",
    [
        ("class:10", r"class \[10\] out of range \[0, 9\]"),
        ("classes:1,-1", "out of range"),
        ("random:0", "strictly between 0 and 1"),
        ("mislabeled:1.0", "strictly between 0 and 1"),
        ("superclass:1", "needs coarse labels"),
        ("subclass:1", "needs coarse labels"),
        ("random:0.0001", "leaves the forget set empty"),
        ("indices:/nonexistent/file.txt", "does not exist"),
        ("blur:1", "valid kinds: class, classes, random, superclass, subclass, indices"),
        ("class:", "needs an argument"),
        ("class:a", "integer"),
    ],
)
def test_digits_bad_specs(digits_dir, spec, match):
    with pytest.raises(ValueError, match=match):
        make_splits("digits", spec, data_dir=digits_dir)


def test_empty_indices_file(digits_dir, tmp_path):
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        make_splits("digits", f"indices:{tmp_path / 'e.txt'}", data_dir=digits_dir)
    (tmp_path / "o.txt").write_text("5000")
    with pytest.raises(ValueError, match="must lie in"):
        make_splits("digits", f"indices:{tmp_path / 'o.txt'}", data_dir=digits_dir)
    for name, content in (("w.txt", "3, a, b"), ("f.txt", "1.5 2"), ("f.npy", np.array([1.5]))):
        if name.endswith(".npy"):
            np.save(tmp_path / name, content)  # a float index would be silently truncated
        else:
            (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=rf"{name}'?: indices must be integers.*found \["):
            make_splits("digits", f"indices:{tmp_path / name}", data_dir=digits_dir)


def test_parse_is_shared_and_strict():
    assert parse_forget_spec(" Class:3 ").classes == (3,)
    with pytest.raises(ValueError, match="exactly one"):
        parse_forget_spec("class:1,2")
