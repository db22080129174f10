"""Tests for imu_jax.metrics: hand-computable values, attack sanity, error paths."""

import numpy as np
import pytest

from imu_jax import metrics


def _random_probs(rng, n, c):
    return metrics.softmax(rng.normal(size=(n, c)) * 3)


def test_accuracy_and_empty_set():
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    assert metrics.accuracy(probs, np.array([0, 0])) == 0.5
    assert np.isnan(metrics.accuracy(np.zeros((0, 2)), np.zeros(0, int)))


def test_modified_entropy_matches_song_mittal_formula():
    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 7, 4)
    labels = rng.integers(0, 4, 7)
    got = metrics.mia_features(probs, labels, "m_entropy").ravel()
    for i in range(7):
        y = labels[i]
        expected = -(1 - probs[i, y]) * np.log(probs[i, y])
        expected -= sum(probs[i, c] * np.log(1 - probs[i, c]) for c in range(4) if c != y)
        np.testing.assert_allclose(got[i], expected, rtol=1e-10)


def test_feature_shapes_and_unknown_kind():
    rng = np.random.default_rng(1)
    probs = _random_probs(rng, 5, 3)
    labels = rng.integers(0, 3, 5)
    assert metrics.mia_features(probs, labels, "prob").shape == (5, 3)
    for kind in ("confidence", "entropy", "m_entropy", "correctness"):
        assert metrics.mia_features(probs, labels, kind).shape == (5, 1)
    with pytest.raises(ValueError, match="unknown MIA feature"):
        metrics.mia_features(probs, labels, "loss")


def test_mia_efficacy_separates_confident_members_from_unsure_nonmembers():
    rng = np.random.default_rng(2)
    n = 80
    labels = np.zeros(n, np.int64)
    confident = np.stack([rng.uniform(0.95, 1.0, n)], 1)
    unsure = np.stack([rng.uniform(0.2, 0.6, n)], 1)
    members = np.concatenate([confident, 1 - confident], 1)
    nonmembers = np.concatenate([unsure, 1 - unsure], 1)
    # Forget set that still looks like training data: efficacy near 0.
    assert metrics.mia_efficacy(members, labels, nonmembers, labels, members[:20], labels[:20]) < 0.1
    # Forget set that looks like unseen data: efficacy near 1.
    assert metrics.mia_efficacy(members, labels, nonmembers, labels, nonmembers[:20], labels[:20]) > 0.9


def test_mia_uses_test_sized_member_subset_deterministically():
    first = metrics.shadow_member_indices(100, 10, seed=3)
    assert len(first) == 10 and len(set(first.tolist())) == 10
    np.testing.assert_array_equal(first, metrics.shadow_member_indices(100, 10, seed=3))
    assert not np.array_equal(first, metrics.shadow_member_indices(100, 10, seed=4))


def test_classification_metrics_reports_all_variants_in_unit_interval():
    rng = np.random.default_rng(4)
    probs = {k: _random_probs(rng, n, 3) for k, n in (("forget", 10), ("retain", 40), ("test", 20))}
    labels = {k: rng.integers(0, 3, len(v)) for k, v in probs.items()}
    result = metrics.classification_metrics(probs, labels)
    for key in ("ua", "ra", "ta", "fa", "mia_efficacy", "mia_entropy", "mia_m_entropy",
                "mia_correctness", "mia_prob"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["ua"] == pytest.approx(1 - result["fa"])


def test_avg_gap_is_zero_against_itself_and_mean_abs_otherwise():
    a = {"ua": 0.1, "ra": 0.9, "ta": 0.8, "mia_efficacy": 0.3}
    b = {"ua": 0.3, "ra": 0.8, "ta": 0.8, "mia_efficacy": 0.7}
    assert metrics.avg_gap(a, a) == 0.0
    assert metrics.avg_gap(a, b) == pytest.approx((0.2 + 0.1 + 0.0 + 0.4) / 4)


def test_token_kl_matches_manual_and_ignores_padding():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(2, 3, 4))
    model = rng.normal(size=(2, 3, 4))
    labels = np.array([[1, 2, -1], [0, -1, -1]])
    p, q = metrics.softmax(ref), metrics.softmax(model)
    positions = [(0, 0), (0, 1), (1, 0)]
    manual = np.mean([np.sum(p[i, t] * np.log(p[i, t] / q[i, t])) for i, t in positions])
    assert metrics.token_kl(ref, model, labels) == pytest.approx(manual, rel=1e-9)
    assert metrics.token_kl(ref, model, labels) > 0


def test_transition_kl_zero_for_true_model_positive_otherwise():
    transition = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    tokens = np.array([[0, 1, 2, 0]])
    labels = np.array([[1, 2, 0, -1]])
    exact = np.log(transition)[tokens]
    assert metrics.transition_kl(transition, tokens, exact, labels) == pytest.approx(0.0, abs=1e-12)
    assert metrics.transition_kl(transition, tokens, np.zeros_like(exact), labels) > 0.05


def test_prediction_wasserstein_is_symmetric_and_zero_on_identity():
    rng = np.random.default_rng(6)
    a, b = _random_probs(rng, 30, 3), _random_probs(rng, 30, 3)
    assert metrics.prediction_wasserstein(a, a) == 0.0
    assert metrics.prediction_wasserstein(a, b) == pytest.approx(
        metrics.prediction_wasserstein(b, a))
    expected = np.mean([0.5 * np.abs(pa - pb).sum() for pa, pb in zip(a, b)])
    assert metrics.prediction_wasserstein(a, b) == pytest.approx(expected)


def test_prediction_wasserstein_sees_swapped_predictions():
    # Two models that swap their predictions: identical distributions of confidences and of
    # predicted labels (the distribution-level W1 is 0), but every example disagrees fully.
    labels = np.array([0, 1, 0, 1])
    a = np.eye(2)[labels] * 0.9 + 0.05
    b = np.eye(2)[1 - labels] * 0.9 + 0.05
    import scipy.stats
    assert scipy.stats.wasserstein_distance(a.max(1), b.max(1)) == 0.0
    assert scipy.stats.wasserstein_distance(a.argmax(1), b.argmax(1)) == 0.0
    assert metrics.prediction_wasserstein(a, b) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="same shape"):
        metrics.prediction_wasserstein(a, b[:2])


def test_diverged_model_outputs_are_uniform_not_a_crash():
    logits = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 0.0], [1.0, 2.0, 3.0]])
    probs = metrics.softmax(logits)
    np.testing.assert_allclose(probs[:2], 1 / 3)
    assert np.all(np.isfinite(probs))
