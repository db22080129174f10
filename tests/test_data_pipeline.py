"""batches(): seeded shuffling, remainders, per-process slices, augmentation."""

import numpy as np
import pytest

from imu_jax.data import batches, random_crop_flip


def data(n=10):
    return {"x": np.arange(n), "image": np.zeros((n, 4, 4, 1), np.float32)}


def xs(**kw):
    return np.concatenate([b["x"] for b in batches(data(), 4, **kw)])


def test_epoch_is_a_seeded_permutation():
    a, b = xs(seed=0, epoch=0), xs(seed=0, epoch=0)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(10))
    assert not np.array_equal(a, xs(seed=0, epoch=1))
    assert not np.array_equal(a, xs(seed=1, epoch=0))


def test_drop_remainder_and_sizes():
    sizes = [len(b["x"]) for b in batches(data(), 4, seed=0)]
    assert sizes == [4, 4, 2]
    assert [len(b["x"]) for b in batches(data(), 4, seed=0, drop_remainder=True)] == [4, 4]


def test_processes_partition_each_global_batch():
    parts = [list(batches(data(), 4, seed=3, process_index=i, process_count=2)) for i in (0, 1)]
    full = list(batches(data(), 4, seed=3, process_index=0, process_count=1))
    for p0, p1, g in zip(*parts, full):
        assert sorted(np.concatenate([p0["x"], p1["x"]]).tolist()) == sorted(g["x"].tolist())
    with pytest.raises(ValueError, match="divisible"):
        next(batches(data(), 3, seed=0, process_index=0, process_count=2))


def test_crop_flip_keeps_content_and_is_seeded():
    img = np.random.default_rng(0).random((64, 32, 32, 3)).astype(np.float32)
    a = random_crop_flip(img, np.random.default_rng(1))
    b = random_crop_flip(img, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and not np.array_equal(a, img)
    # A crop with zero offset and no flip is the identity on the interior: every output pixel
    # value is either padding (0) or a pixel of the input image.
    assert np.isin(a[0], np.append(img[0].ravel(), 0)).all()
    # Some images get flipped: flipping a crop back matches a shifted copy of the input row sums.
    assert (a == 0).any()


def test_augment_flag_only_touches_images():
    d = {"x": np.arange(8), "image": np.ones((8, 32, 32, 3), np.float32)}
    b = next(batches(d, 8, seed=0, augment=True))
    assert (b["image"] == 0).any()  # padding shows up
    assert sorted(b["x"].tolist()) == list(range(8))
