"""Closed-form per-sequence influence of an output layer against the generic path (spec §1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imu_jax as imu
from imu_jax.unlearning.losses import example_loss


def _problem(n=6, t=5, d=4, v=11, seed=0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(n, t, d)), jnp.float32)
    labels = rng.integers(0, v, (n, t))
    labels[1, 3:] = -1          # padding at the end of a sequence
    labels[2, 0] = -1           # and inside one
    labels[4, :] = -1           # a sequence with no token at all: zero gradient, zero influence
    head = {"kernel": jnp.asarray(rng.normal(0, 0.5, (d, v)), jnp.float32),
            "bias": jnp.asarray(rng.normal(0, 0.5, v), jnp.float32)}
    return features, jnp.asarray(labels, jnp.int32), head


def _generic(features, labels, head, damping=0.01):
    def loss(head, example):  # the loss imu_jax.unlearn uses for labels [N, T]
        return example_loss(example["h"] @ head["kernel"] + head["bias"], example["y"])
    return imu.influence_scores(loss, head, {"h": features, "y": labels}, damping=damping)


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("vocab_chunk", [None, 1, 4, 11, 16])  # 4: padded last chunk; 16 > V
def test_matches_generic_path(vocab_chunk):
    features, labels, head = _problem()
    expected = _generic(features, labels, head)
    scores = imu.sequence_influence(features, labels, head, vocab_chunk=vocab_chunk)
    assert scores.shape == (6,) and scores.dtype == jnp.float32
    assert _rel_err(scores, expected) < 1e-5
    assert float(scores[4]) == 0.0
    assert np.sum(np.asarray(expected) < 0) > 0  # some sequences are selected


def test_damping_and_under_jit():
    features, labels, head = _problem(seed=1)
    for damping in (0.01, 1.0):
        expected = _generic(features, labels, head, damping)
        jitted = jax.jit(lambda f, y, h: imu.sequence_influence(f, y, h, damping=damping,
                                                                vocab_chunk=3))
        assert _rel_err(jitted(features, labels, head), expected) < 1e-5


def test_bfloat16_is_close_to_float32():
    features, labels, head = _problem(n=8, t=16, d=32, v=50, seed=2)
    exact = imu.sequence_influence(features, labels, head)
    low = imu.sequence_influence(features, labels, head, compute_dtype=jnp.bfloat16)
    err = _rel_err(low, exact)
    assert 0 < err < 0.05
    assert np.corrcoef(np.asarray(low), np.asarray(exact))[0, 1] > 0.999


def test_bad_input_is_rejected():
    features, labels, head = _problem()
    with pytest.raises(ValueError, match="features must be"):
        imu.sequence_influence(features[0], labels, head)
    with pytest.raises(ValueError, match="labels must be"):
        imu.sequence_influence(features, labels[:, :2], head)
    with pytest.raises(ValueError, match="labels must be integers"):
        imu.sequence_influence(features, labels.astype(jnp.float32), head)
    with pytest.raises(ValueError, match="out of range"):
        imu.sequence_influence(features, labels.at[0, 0].set(11), head)
    with pytest.raises(ValueError, match="do not fit"):
        imu.sequence_influence(features[..., :3], labels, head)
    with pytest.raises(ValueError, match="kernel"):
        imu.sequence_influence(features, labels, {"w": head["kernel"]})
    with pytest.raises(ValueError, match="damping"):
        imu.sequence_influence(features, labels, head, damping=0.0)
    with pytest.raises(ValueError, match="vocab_chunk"):
        imu.sequence_influence(features, labels, head, vocab_chunk=0)


def test_blocks_of_sequences_with_padding(monkeypatch):
    """N = 7 in blocks of 3 (a padded last block) and a padded vocabulary chunk."""
    from imu_jax import lm_head
    monkeypatch.setattr(lm_head, "_sequence_block", lambda n, d, c: 3)
    features, labels, head = _problem(n=7, t=4, d=5, v=9, seed=3)
    expected = _generic(features, labels, head)
    assert _rel_err(imu.sequence_influence(features, labels, head, vocab_chunk=4), expected) < 1e-5
