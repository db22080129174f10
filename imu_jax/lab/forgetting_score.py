"""Per-example forgetting evaluations: the NeurIPS 2023 unlearning competition's forgetting score
``F`` (U-LiRA is :mod:`imu_jax.lab.ulira`), over arrays of per-example statistics shaped
``[models, examples]``.

Both compare, one forget example at a time, the outputs of many *unlearned* models (trained on the
full training set with a seed, then unlearned) with those of many *retrained* models (trained on
the retain set only, one per seed): a population attack (one threshold for the whole forget set)
can average away examples that an unlearning method leaves perfectly recognisable; these cannot.

The statistic is the **logit-scaled confidence** of the true label,
``log p_y - log(1 - p_y)`` (:func:`logit_scaled_confidence`), the statistic of LiRA (Carlini et
al. 2022), of the competition's released metric and of U-LiRA.

Sources
-------
[note]  "Evaluation for the NeurIPS Machine Unlearning Competition", the organisers, August 2023
        (``assets/data/Machine_Unlearning_Metric.pdf`` of github.com/unlearning-challenge/
        unlearning-challenge.github.io): the (ε, δ)-unlearning definition (Def. 3.1), ε from FPR
        and FNR (Eq. 1), Algorithm 1 (per-example ε), the scoring ``H(s) = 2 / 2^n(s)`` and
        ``F = mean_s H(s)`` (§4), the final score ``F · RA_U/RA_R · TA_U/TA_R`` (§5).
[paper] Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the first
        NeurIPS unlearning competition", arXiv:2406.09073. Only its abstract was readable in the
        corpora available to us; every detail below comes from [note] and [code], the
        organisers' own documents.
[code]  The organisers' released metric, github.com/google-deepmind/unlearning_evaluation
        ``metric.py`` (commit ffae0ff): it fills in what [note] leaves to "after the competition"
        (the statistic ``f`` and the decision rules). This module re-implements it in vectorised
        NumPy (no torch/CUDA); it does not copy it.
[ulira] Hayes, Shumailov, Triantafillou, Khalifa & Papernot 2024, "Inexact unlearning needs more
        careful evaluations to avoid a false sense of privacy", arXiv:2403.01218 (SaTML 2025).
[lira]  Carlini et al. 2022, "Membership inference attacks from first principles" (LiRA).

Forgetting score F: every choice, and where it comes from
---------------------------------------------------------
* Statistic: logit-scaled confidence of the true label ([code] ``compute_logit_scaled_confidence``;
  [note] only says "a function f that transforms outputs into a scalar"). [code] computes
  ``log(p_y + 1e-45) - log(sum_{j≠y} p_j + 1e-45)`` in float64; we compute the same quantity as
  ``z_y - logsumexp_{j≠y} z_j`` (exact, no 1e-45 floor: the two agree unless a logit gap exceeds
  ~100, where [code] saturates at ±103.6).
* Which distribution is "positive": per example, the one (unlearned or retrained) with the larger
  median statistic; ties make the unlearned one positive ([code]).
* δ = 1e-5 ([code] ``DELTA``; [note] says one δ is used but not which).
* ε of one attack (Eq. 1 of [note]): ``max(log((1-δ-FPR)/FNR), log((1-δ-FNR)/FPR))``, clipped at
  0 below, from the *empirical* rates over the N unlearned and N retrained models ([note] §3: the
  competition used empirical rates, not the high-probability bounds of its Eq. 2; we do the
  same). FPR = FNR = 0 (perfect separation) gives ε = inf ([note] Alg. 1); an attack with exactly
  one of FPR, FNR equal to 0 is *discarded* ([note]: "an artifact of the small number of samples").
  A term whose ``1-δ-rate`` is not positive counts as -inf (only the other term can count).
* The attacks ([code]; [note] withheld them), per example, on the pooled statistics:
  - single thresholds: "positive iff x ≥ t", t on ``linspace(min, max, ceil(100·(max-min)))`` of
    the pooled values (100 thresholds per unit, ``THRESHOLDS_PER_UNIT``);
  - double thresholds (intervals): "the peakier distribution (smaller range) iff l ≤ x ≤ r", with
    w the smaller range, r on ``linspace(max_p - 2, max_p + 2, 400)`` (max_p: the peakier
    distribution's maximum) and, for each r, l on ``r - w + linspace(-2, 2, 400)`` (buffer 2.0,
    ``INTERVAL_BUFFER``), 160,000 intervals.
  The example's ε is the largest over the surviving attacks ("worst case for the unlearning
  algorithm", [note] §4), clipped to [0, 50] (``EPSILON_CAP``, [code]); inf becomes 50.
* "Peaky" guard ([code]): if the smaller of the two ranges is below 1% of the larger, ε = 50.
* Choices of ours where [code] has none: both distributions constant → ε = 0 if they are the same
  constant, else 50 ([code] divides 0/0 there); no attack surviving → ε = 0 ([code] asserts).
* Bins ([note] §4): width 0.5, bin k = 0, 1, … holds [0.5k, 0.5(k+1)) and earns ``2^-k`` points
  (``H = 2/2^n`` with n = k + 1); ε beyond the last bin earns 0. The range: [note] uses
  [0, 6.5), B = 13 bins, "because we set N = 512, and with that N, we can't observe an ε beyond
  that range"; [code] generalises it to ``[0, ceil(log(N - 1)))`` (N = number of unlearned
  models), i.e. 14 bins for N = 512. Both give identical scores: the largest finite empirical ε
  is ``log(N(1-δ) - 1) < log(N - 1)`` (= 6.24 for N = 512), below 6.5. We follow [code]
  (``max_epsilon`` overrides it).
* F = mean over forget examples of the points; 1 is the best, 0 the worst.

Known properties of this F (measured here; they follow from [code]'s design, not from a bug):

* It is a supremum over ~160,000 attacks of *empirical* rates, so two samples of one distribution
  do not give ε = 0: the best attack is an extreme threshold or interval that isolates a few tail
  models (e.g. FPR = 0.98, FNR = 0.002). Under the null (unlearned and retrained statistics drawn
  from one distribution) the median per-example ε is ≈ 1.4–1.6 and F ≈ 0.17–0.22 for N = 32 … 512
  (``tests/test_forgetting_score.py``), hardly depending on N. F = 1 needs identical samples.
  F is a score to *rank* methods by, with retraining itself scoring ≈ 0.2, not 1.
* The grids are in units of the statistic (100 thresholds per unit, intervals ± 2 units), made
  for logit-scaled confidences, whose per-example spread across seeds is of order 1. Rescaling the
  statistic changes ε (null F ≈ 0.36 at scale 0.01, 0.13 at 0.1, 0.19 at 1, 0.22 at 10).

Examples:
  >>> import numpy as np
  >>> logits = np.array([[2.0, 0.0, 0.0]])
  >>> round(float(logit_scaled_confidence(logits, np.array([0]))[0]), 4)  # 2 - log 2
  1.3069
  >>> rng = np.random.default_rng(0)
  >>> same = forgetting_quality(rng.normal(size=(64, 20)), rng.normal(size=(64, 20)))
  >>> apart = forgetting_quality(rng.normal(size=(64, 20)) + 10, rng.normal(size=(64, 20)))
  >>> same.score > 0.1, apart.score
  (True, 0.0)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
INTERVAL_BUFFER = 2.0
PEAKY_RATIO = 0.01
BIN_WIDTH = 0.5


# --------------------------------------------------------------------------------------------
# The statistic.


def logit_scaled_confidence(logits, labels):
    """``log p_y - log(1 - p_y)`` of the true label, computed stably as
    ``z_y - logsumexp_{j≠y} z_j``.

    ``logits``: ``[..., C]`` (C ≥ 2), ``labels``: ``[...]`` integers. NumPy inputs are computed
    in float64 and return a NumPy array; JAX inputs stay in JAX (jit/vmap-able) at their dtype.

    >>> import jax.numpy as jnp
    >>> float(logit_scaled_confidence(jnp.array([[1000.0, 0.0]]), jnp.array([0]))[0])
    1000.0
    >>> logit_scaled_confidence(np.array([[0.0, 3.0, 1.0]]), np.array([1])).round(4)
    array([1.6867])
    """
    if isinstance(logits, np.ndarray) and isinstance(labels, (np.ndarray, int, np.integer)):
        z = logits.astype(np.float64)
        y = np.asarray(labels)[..., None]
        zy = np.take_along_axis(z, y, axis=-1)[..., 0]
        others = np.where(np.arange(z.shape[-1]) == y, -np.inf, z)
        m = others.max(axis=-1, keepdims=True)
        lse = m[..., 0] + np.log(np.exp(others - m).sum(axis=-1))
        return zy - lse
    import jax
    import jax.numpy as jnp

    z = jnp.asarray(logits)
    y = jnp.asarray(labels)[..., None]
    zy = jnp.take_along_axis(z, y, axis=-1)[..., 0]
    others = jnp.where(jnp.arange(z.shape[-1]) == y, -jnp.inf, z)
    return zy - jax.nn.logsumexp(others, axis=-1)


# --------------------------------------------------------------------------------------------
# Forgetting score F.


def epsilon_from_rates(fpr, fnr, delta: float = DELTA) -> np.ndarray:
    """Eq. 1 of [note] per attack: ``max(log((1-δ-FPR)/FNR), log((1-δ-FNR)/FPR))`` clipped at 0;
    ``inf`` where FPR = FNR = 0; ``nan`` (discarded) where exactly one of them is 0.

    >>> epsilon_from_rates([0.5, 0.1, 0.0, 0.0, 0.2], [0.5, 0.2, 0.0, 0.3, 0.9], delta=0.0).round(4)
    array([0.    , 2.0794,    inf,    nan, 0.    ])
    """
    fpr = np.asarray(fpr, np.float64)
    fnr = np.asarray(fnr, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(1 - delta - fpr > 0, np.log(np.maximum(1 - delta - fpr, 1e-300)), -np.inf)
        b = np.where(1 - delta - fnr > 0, np.log(np.maximum(1 - delta - fnr, 1e-300)), -np.inf)
        eps = np.maximum(a - np.log(fnr), b - np.log(fpr))
    eps = np.maximum(eps, 0.0)
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, eps)
    return np.where((fpr == 0) ^ (fnr == 0), np.nan, eps)


def _count_ge(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_x) - np.searchsorted(sorted_x, t, side="left")


def _single_threshold_rates(pos, neg, per_unit):
    """(FPR, FNR) of "positive iff x ≥ t" on [code]'s grid over the pooled range."""
    lo, hi = min(pos[0], neg[0]), max(pos[-1], neg[-1])
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * per_unit)))
    fpr = _count_ge(neg, t) / len(neg)
    fnr = (len(pos) - _count_ge(pos, t)) / len(pos)
    return fpr, fnr


def _interval_rates(pos, neg, per_unit, buffer):
    """(FPR, FNR) of "the peakier distribution iff l ≤ x ≤ r" on [code]'s grid of intervals."""
    width = min(pos[-1] - pos[0], neg[-1] - neg[0])
    inside, outside = (neg, pos) if pos[-1] - pos[0] >= neg[-1] - neg[0] else (pos, neg)
    lo, hi = inside[0] + width - buffer, inside[-1] + buffer
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * per_unit)))
    offsets = np.linspace(-buffer, buffer, int(math.ceil(2 * buffer * per_unit)))
    left = (right[:, None] - width + offsets[None, :]).ravel()
    right = np.repeat(right, len(offsets))

    def count_in(x):
        c = np.searchsorted(x, right, side="right") - np.searchsorted(x, left, side="left")
        return np.maximum(c, 0)

    fpr = count_in(outside) / len(outside)
    fnr = (len(inside) - count_in(inside)) / len(inside)
    return fpr, fnr


def _distinct_rates(fpr, fnr, n_fp: int, n_fn: int):
    """The distinct (FPR, FNR) pairs among attacks whose rates are counts over ``n_fp`` and
    ``n_fn`` models: ε is a function of the pair, so its maximum over the ~160,000 attacks is its
    maximum over these (at most ``(n_fp + 1)(n_fn + 1)``); the same floats, far fewer logs.

    >>> _distinct_rates(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 1.0]), 2, 4)
    (array([0. , 0.5]), array([1.  , 0.25]))
    """
    fp = np.rint(np.asarray(fpr) * n_fp).astype(np.int64)
    fn = np.rint(np.asarray(fnr) * n_fn).astype(np.int64)
    seen = np.flatnonzero(np.bincount(fp * (n_fn + 1) + fn, minlength=(n_fp + 1) * (n_fn + 1)))
    return (seen // (n_fn + 1)) / n_fp, (seen % (n_fn + 1)) / n_fn


def example_epsilon(unlearned, retrained, *, delta: float = DELTA,
                    thresholds_per_unit: int = THRESHOLDS_PER_UNIT,
                    buffer: float = INTERVAL_BUFFER) -> float:
    """One forget example's ε ([note] Algorithm 1 with [code]'s attacks), in [0, ``EPSILON_CAP``].

    ``unlearned``: ``[N_u]`` statistics of the example under the unlearned models; ``retrained``:
    ``[N_r]`` under the retrained models.

    >>> example_epsilon([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0])
    0.0
    >>> example_epsilon([10.0, 11.0, 12.0], [0.0, 1.0, 2.0])
    50.0
    """
    u = np.sort(np.asarray(unlearned, np.float64))
    r = np.sort(np.asarray(retrained, np.float64))
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    rp, rn = pos[-1] - pos[0], neg[-1] - neg[0]
    if max(rp, rn) == 0:
        return 0.0 if pos[0] == neg[0] else EPSILON_CAP
    if min(rp, rn) / max(rp, rn) < PEAKY_RATIO:
        return EPSILON_CAP
    fpr_s, fnr_s = _distinct_rates(*_single_threshold_rates(pos, neg, thresholds_per_unit),
                                   len(neg), len(pos))
    inside = len(neg) if rp >= rn else len(pos)
    fpr_d, fnr_d = _distinct_rates(*_interval_rates(pos, neg, thresholds_per_unit, buffer),
                                   len(pos) + len(neg) - inside, inside)
    eps = epsilon_from_rates(np.concatenate([fpr_s, fpr_d]), np.concatenate([fnr_s, fnr_d]),
                             delta)
    eps = eps[~np.isnan(eps)]
    if not len(eps):
        return 0.0
    return float(np.clip(eps.max(), 0.0, EPSILON_CAP))


def per_example_epsilons(unlearned, retrained, **kwargs) -> np.ndarray:
    """``[E]`` ε of each forget example from ``[N_u, E]`` and ``[N_r, E]`` statistics
    (keyword arguments: those of :func:`example_epsilon`)."""
    u, r = _check_pair(unlearned, retrained)
    return np.array([example_epsilon(u[:, e], r[:, e], **kwargs) for e in range(u.shape[1])])


def max_epsilon_for(num_models: int) -> float:
    """[code]'s range of scored ε, ``ceil(log(N - 1))``: 7 for N = 512 (its 14th bin, [6.5, 7),
    is unreachable: the largest finite ε is ``log(N(1-δ) - 1)`` = 6.24, so [note]'s [0, 6.5)
    scores the same).

    >>> max_epsilon_for(512), max_epsilon_for(64)
    (7.0, 5.0)
    """
    if num_models < 3:
        raise ValueError(
            f"The forgetting score needs at least 3 models per side, got {num_models}.")
    return float(math.ceil(math.log(num_models - 1)))


def epsilon_points(epsilons, *, num_models: int | None = None, max_epsilon: float | None = None,
                   bin_width: float = BIN_WIDTH) -> np.ndarray:
    """``H = 2^-k`` for ε in bin k = ⌊ε / 0.5⌋, 0 beyond the last bin ([note] §4).

    >>> epsilon_points([0.0, 0.49, 0.5, 1.2, 6.2, 50.0], num_models=512).tolist()
    [1.0, 1.0, 0.5, 0.25, 0.000244140625, 0.0]
    """
    if max_epsilon is None:
        if num_models is None:
            raise ValueError("Give num_models (the range is ceil(log(N - 1))) or max_epsilon.")
        max_epsilon = max_epsilon_for(num_models)
    n_bins = int(math.floor(max_epsilon / bin_width + 1e-9))
    eps = np.nan_to_num(np.asarray(epsilons, np.float64), posinf=EPSILON_CAP)
    k = np.floor(eps / bin_width)
    return np.where(k < n_bins, 2.0 ** -np.minimum(k, n_bins), 0.0)


@dataclasses.dataclass(frozen=True)
class ForgettingQuality:
    """The competition's forgetting score and its parts.

    Attributes:
      score: F, the mean of ``points`` (1 best, 0 worst).
      epsilons: ``[E]`` per-example ε in [0, 50].
      points: ``[E]`` per-example ``H`` in {0} ∪ {2^-k}.
      max_epsilon: upper end of the scored range.
      num_models: N used for the range (the number of unlearned models, as in [code]).
    """

    score: float
    epsilons: np.ndarray
    points: np.ndarray
    max_epsilon: float
    num_models: int


def forgetting_quality(unlearned, retrained, *, delta: float = DELTA,
                       max_epsilon: float | None = None,
                       thresholds_per_unit: int = THRESHOLDS_PER_UNIT,
                       buffer: float = INTERVAL_BUFFER) -> ForgettingQuality:
    """The competition's forgetting score F from ``[N_u, E]`` unlearned and ``[N_r, E]`` retrained
    per-example statistics (the logit-scaled confidence, for the competition's F)."""
    u, r = _check_pair(unlearned, retrained)
    eps = per_example_epsilons(u, r, delta=delta, thresholds_per_unit=thresholds_per_unit,
                               buffer=buffer)
    n = u.shape[0]
    top = max_epsilon_for(n) if max_epsilon is None else float(max_epsilon)
    points = epsilon_points(eps, max_epsilon=top)
    return ForgettingQuality(score=float(points.mean()), epsilons=eps, points=points,
                             max_epsilon=top, num_models=n)


def competition_score(forgetting: float | ForgettingQuality, *, retain_acc_unlearned: float,
                      retain_acc_retrained: float, test_acc_unlearned: float,
                      test_acc_retrained: float) -> float:
    """[note] §5: ``F · RA_U/RA_R · TA_U/TA_R`` (accuracies averaged over the N models of each
    kind; the competition also rejected methods slower than ~20% of retraining, not modelled).

    >>> competition_score(0.5, retain_acc_unlearned=0.9, retain_acc_retrained=1.0,
    ...                   test_acc_unlearned=0.8, test_acc_retrained=0.8)
    0.45
    """
    f = forgetting.score if isinstance(forgetting, ForgettingQuality) else float(forgetting)
    return f * (retain_acc_unlearned / retain_acc_retrained) * (
        test_acc_unlearned / test_acc_retrained)


# --------------------------------------------------------------------------------------------
# U-LiRA.


def _check_pair(unlearned, retrained):
    u = np.asarray(unlearned, np.float64)
    r = np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"Expected [models, examples] arrays over the same examples; got "
                         f"{u.shape} (unlearned) and {r.shape} (retrained).")
    return u, r


__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "ForgettingQuality",
    "competition_score",
    "epsilon_from_rates",
    "epsilon_points",
    "example_epsilon",
    "forgetting_quality",
    "logit_scaled_confidence",
    "max_epsilon_for",
    "per_example_epsilons",
]
