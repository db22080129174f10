"""Per-example forgetting evaluations (imu_jax.lab.forgetting_score) on constructed cases whose
answer is known: identical samples/distributions, separable ones, and unit-variance Gaussians
shifted by d (analytic ε at the Bayes threshold, AUC = Φ(d/√2), TPR at FPR α = Φ(d - z_{1-α})),
with tolerances derived from the number of models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from imu_jax.lab import forgetting_score as fs
from imu_jax.lab import ulira as ul

DELTA = fs.DELTA


# ---------------------------------------------------------------------------------- statistic


def test_logit_scaled_confidence_definition_stability_and_jax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)) * 3
    labels = rng.integers(0, 7, size=50)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    py = p[np.arange(50), labels]
    expected = np.log(py) - np.log1p(-py)
    np.testing.assert_allclose(fs.logit_scaled_confidence(logits, labels), expected, rtol=1e-10)
    # JAX path (float32, jit-able) agrees; batched labels broadcast over a leading model axis.
    got = jax.jit(fs.logit_scaled_confidence)(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5)
    stacked = fs.logit_scaled_confidence(np.stack([logits, logits]), labels[None, :])
    np.testing.assert_allclose(stacked, np.stack([expected, expected]), rtol=1e-10)
    # Stable where log(p / (1 - p)) overflows: p_y = 1 - 2e-434 in float64.
    huge = np.array([[1000.0, 0.0, 0.0], [0.0, 1000.0, 0.0]])
    np.testing.assert_allclose(fs.logit_scaled_confidence(huge, np.array([0, 0])),
                               [1000 - math.log(2), -1000.0], rtol=1e-12)
    # Two classes: z_y - z_other exactly.
    two = rng.normal(size=(10, 2))
    np.testing.assert_allclose(fs.logit_scaled_confidence(two, np.zeros(10, int)),
                               two[:, 0] - two[:, 1], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- forgetting score


def test_epsilon_from_rates_rules():
    eps = fs.epsilon_from_rates([0.1, 0.0, 0.0, 0.3, 0.25, 1.0], [0.2, 0.0, 0.4, 0.0, 0.25, 0.5])
    np.testing.assert_allclose(eps[0], max(math.log((1 - DELTA - 0.1) / 0.2),
                                            math.log((1 - DELTA - 0.2) / 0.1)))
    assert eps[1] == np.inf  # perfect separation
    assert np.isnan(eps[2]) and np.isnan(eps[3])  # exactly one zero rate: discarded
    np.testing.assert_allclose(eps[4], math.log((1 - DELTA - 0.25) / 0.25))
    assert eps[5] == 0.0  # log((1-δ-1)/0.5) undefined; the other term is negative -> clipped


def test_identical_samples_give_the_best_score():
    rng = np.random.default_rng(1)
    stats = rng.normal(size=(64, 10)) * rng.uniform(0.5, 3, size=10) + rng.normal(size=10) * 5
    fq = fs.forgetting_quality(stats, stats.copy())
    np.testing.assert_array_equal(fq.epsilons, 0.0)
    assert fq.score == 1.0 and fq.max_epsilon == 5.0  # ceil(log 63)


def test_separable_and_peaky_give_the_worst_score():
    rng = np.random.default_rng(2)
    retrained = rng.normal(size=(64, 8))
    fq = fs.forgetting_quality(retrained + 20.0, retrained)
    np.testing.assert_array_equal(fq.epsilons, fs.EPSILON_CAP)
    assert fq.score == 0.0
    # An unlearned distribution 100x narrower than the retrained one: the "peaky" rule, ε = cap.
    peaky = 0.005 * rng.normal(size=(64, 1))
    assert fs.example_epsilon(peaky[:, 0], retrained[:, 0]) == fs.EPSILON_CAP


def test_null_floor_same_distribution():
    """Two samples of one distribution: ε is bounded by the finite-sample maximum log(N(1-δ)-1)
    and the score sits at the documented floor (F ≈ 0.17–0.22, median ε ≈ 1.4–1.6): the sup over
    ~160k attacks of empirical rates finds tail imbalances; it does not vanish with N."""
    n, e = 64, 24
    rng = np.random.default_rng(3)
    fq = fs.forgetting_quality(rng.normal(size=(n, e)), rng.normal(size=(n, e)))
    assert fq.epsilons.max() <= math.log(n * (1 - DELTA) - 1) + 1e-9
    # Per-example points lie in [0, 1]; their sd is below 0.5, so 4 se = 2 / sqrt(e) ≈ 0.41.
    assert 0.19 - 2 / math.sqrt(e) < fq.score < 0.19 + 2 / math.sqrt(e)
    assert 0.8 < np.median(fq.epsilons) < 2.3


def test_epsilon_at_the_bayes_threshold_matches_the_analytic_bound():
    """pos ~ N(d, 1), neg ~ N(0, 1); at t* = d/2, FPR = FNR = p = Φ(-d/2) and Eq. 1 gives
    ε* = log((1 - δ - p)/p). Each log term of the empirical ε has sd σ = sqrt(p/((1-p)N) +
    (1-p)/(pN)) (delta method); ε is the max of two such terms, biased up by at most σ·sqrt(2/π)."""
    d, n, e = 1.0, 512, 40
    p = norm.cdf(-d / 2)
    eps_star = math.log((1 - DELTA - p) / p)
    sigma = math.sqrt(p / ((1 - p) * n) + (1 - p) / (p * n))
    rng = np.random.default_rng(4)
    pos = rng.normal(size=(n, e)) + d
    neg = rng.normal(size=(n, e))
    eps_hat = fs.epsilon_from_rates((neg >= d / 2).mean(0), (pos < d / 2).mean(0))
    tol = sigma * math.sqrt(2 / math.pi) + 4 * sigma / math.sqrt(e)
    assert abs(eps_hat.mean() - eps_star) < tol
    # The full metric takes the sup over attacks that include (a grid point within 0.005 of) t*.
    n2, e2 = 128, 12
    sigma2 = math.sqrt(p / ((1 - p) * n2) + (1 - p) / (p * n2))
    u, r = rng.normal(size=(n2, e2)) + d, rng.normal(size=(n2, e2))
    eps = fs.per_example_epsilons(u, r)
    assert eps.mean() > eps_star - 4 * sigma2 / math.sqrt(e2)
    assert eps.max() <= math.log(n2 * (1 - DELTA) - 1) + 1e-9


def test_score_decreases_with_the_shift():
    rng = np.random.default_rng(5)
    base_u, base_r = rng.normal(size=(64, 12)), rng.normal(size=(64, 12))
    scores = [fs.forgetting_quality(base_u + d, base_r).score for d in (0.0, 1.0, 3.0, 20.0)]
    assert scores[0] > scores[1] > scores[2] > scores[3] == 0.0


def test_bins_follow_the_note_and_the_released_code():
    # [note]: width 0.5, H = 2 / 2^n with n = 1 for [0, 0.5), 2 for [0.5, 1), ...
    pts = fs.epsilon_points([0.0, 0.25, 0.5, 0.99, 1.0, 1.75], num_models=512)
    np.testing.assert_array_equal(pts, [1, 1, 0.5, 0.5, 0.25, 0.125])
    # [code]'s range ceil(log(N - 1)) = 7 for N = 512 (14 bins) scores every reachable ε as
    # [note]'s [0, 6.5) (13 bins): the largest finite ε, log(N(1-δ) - 1) = 6.24, is below 6.5.
    top = math.log(512 * (1 - DELTA) - 1)
    assert top < 6.5 < fs.max_epsilon_for(512) == 7.0
    reachable = np.linspace(0, top, 1001)
    np.testing.assert_array_equal(fs.epsilon_points(reachable, num_models=512),
                                  fs.epsilon_points(reachable, max_epsilon=6.5))
    assert fs.epsilon_points([fs.EPSILON_CAP, np.inf], num_models=512).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="at least 3"):
        fs.max_epsilon_for(2)
    with pytest.raises(ValueError, match="same examples"):
        fs.forgetting_quality(np.zeros((4, 3)), np.zeros((4, 2)))


def test_competition_score_combines_utility():
    fq = fs.ForgettingQuality(score=0.8, epsilons=np.zeros(1), points=np.ones(1), max_epsilon=7,
                              num_models=512)
    score = fs.competition_score(fq, retain_acc_unlearned=0.95, retain_acc_retrained=1.0,
                                 test_acc_unlearned=0.9, test_acc_retrained=0.9)
    assert score == pytest.approx(0.76)


# --------------------------------------------------------------------------------------- U-LiRA


def _populations(rng, d, models, examples):
    """Per-example location/scale differ (the attack must calibrate per example); the unlearned
    population is shifted by d of that example's scale."""
    mu = rng.normal(size=examples) * 3
    sd = rng.uniform(0.5, 2.0, size=examples)
    unlearned = mu + sd * (d + rng.normal(size=(models, examples)))
    retrained = mu + sd * rng.normal(size=(models, examples))
    return unlearned, retrained


def _hanley_mcneil_se(a, n1, n2):
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))


def test_gaussian_llr_matches_scipy():
    rng = np.random.default_rng(6)
    a, b, x = rng.normal(size=(30, 4)) + 1, rng.normal(size=(20, 4)) * 2, rng.normal(size=(5, 4))
    expected = (norm.logpdf(x, a.mean(0), a.std(0, ddof=1))
                - norm.logpdf(x, b.mean(0), b.std(0, ddof=1)))
    np.testing.assert_allclose(ul.gaussian_log_likelihood_ratio(x, a, b), expected, rtol=1e-10)


def test_auc_and_tpr_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(7)
    pos, neg = rng.normal(size=3000) + 0.7, rng.normal(size=5000)
    labels = np.r_[np.ones(3000), np.zeros(5000)]
    scores = np.r_[pos, neg]
    assert ul.roc_auc(pos, neg) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    for alpha in (0.01, 0.001, 0.1):
        assert ul.tpr_at_fpr(pos, neg, alpha) == pytest.approx(tpr[fpr <= alpha].max())
    ties = ul.roc_auc(np.array([[1.0, 2.0], [1.0, 3.0]]), np.array([[1.0, 2.0]]), axis=0)
    np.testing.assert_allclose(ties, [0.5, 0.75])


def test_ulira_identical_distributions_is_chance():
    models, examples = 128, 300  # 64 shadow + 64 target models per side
    r = ul.ulira_split(*_populations(np.random.default_rng(8), 0.0, models, examples), seed=0)
    t = models // 2
    se = _hanley_mcneil_se(0.5, t, t)
    assert abs(r.mean_example_auc - 0.5) < 4 * se / math.sqrt(examples)
    n = t * examples  # pooled targets per side
    assert abs(r.auc - 0.5) < 4 * _hanley_mcneil_se(0.5, n, n)
    assert abs(r.accuracy - 0.5) < 4 * math.sqrt(0.25 / n)
    alpha = 0.01  # positives and negatives share one law: TPR = FPR up to both sampling errors
    assert abs(r.tpr_at_fpr[alpha] - alpha) < 4 * 2 * math.sqrt(alpha * (1 - alpha) / n)


def test_ulira_separable_is_perfect():
    r = ul.ulira_split(*_populations(np.random.default_rng(9), 20.0, 32, 10), seed=1)
    np.testing.assert_array_equal(r.per_example_auc, 1.0)
    np.testing.assert_array_equal(r.per_example_accuracy, 1.0)
    assert r.auc == 1.0 and r.accuracy == 1.0 and r.tpr_at_fpr[0.001] == 1.0


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_ulira_gaussian_shift_matches_analytic_auc_tpr_and_accuracy(fixed_variance):
    """Unit-variance Gaussians (in units of each example's scale) shifted by d: the likelihood
    ratio is monotone in the statistic, so AUC = Φ(d/√2), TPR at FPR α = Φ(d - z_{1-α}) and the
    balanced accuracy at likelihood ratio 1 is Φ(d/2). S = 2,000 shadows per side make the fitted
    Gaussians nearly exact; T = 128 targets per side and E = 400 examples set the sampling error.
    Tolerances: 4 standard errors (Hanley–McNeil for AUCs, binomial for accuracy; for the TPR the
    binomial error plus the ROC slope times the error of the FPR quantile) plus, for pooled
    quantities, the fit error: per-example means and scales off by ~sqrt(2/S) move the pooled
    operating point by that much in z units. The pooled (LiRA-style) quantities need calibrated
    per-example scores; with ``fixed_variance`` the per-example scales must then be equal."""
    d, s, t, e = 1.0, 2000, 128, 400
    rng = np.random.default_rng(10)
    mu = rng.normal(size=e) * 3
    sd = np.ones(e) if fixed_variance else rng.uniform(0.5, 2.0, size=e)
    unlearned = mu + sd * (d + rng.normal(size=(s + t, e)))
    retrained = mu + sd * rng.normal(size=(s + t, e))
    r = ul.ulira(unlearned[:s], retrained[:s], unlearned[s:], retrained[s:],
                 fixed_variance=fixed_variance)
    fit = math.sqrt(2 / s)
    auc = norm.cdf(d / math.sqrt(2))
    assert abs(r.mean_example_auc - auc) < 4 * _hanley_mcneil_se(auc, t, t) / math.sqrt(e)
    n = t * e  # pooled (target, example) pairs per side
    assert abs(r.auc - auc) < 4 * _hanley_mcneil_se(auc, n, n) + norm.pdf(d / math.sqrt(2)) * fit
    acc = norm.cdf(d / 2)
    assert abs(r.accuracy - acc) < 4 * math.sqrt(acc * (1 - acc) / (2 * n)) + norm.pdf(d / 2) * fit
    np.testing.assert_allclose(r.per_example_accuracy.mean(), r.accuracy, atol=1e-12)
    alpha = 0.01
    z = norm.ppf(1 - alpha)
    tpr = norm.cdf(d - z)
    slope = norm.pdf(d - z) / norm.pdf(z)
    se = math.sqrt(tpr * (1 - tpr) / n) + slope * math.sqrt(alpha * (1 - alpha) / n)
    assert abs(r.tpr_at_fpr[alpha] - tpr) < 4 * se + norm.pdf(d - z) * fit


def test_ulira_split_validates():
    u, r = np.zeros((4, 3)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="num_shadow"):
        ul.ulira_split(u, r, num_shadow=4)
    with pytest.raises(ValueError, match="same examples"):
        ul.ulira_split(u, np.zeros((4, 2)))
