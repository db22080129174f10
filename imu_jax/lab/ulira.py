"""U-LiRA (Hayes et al. 2024): a per-example likelihood-ratio attack telling unlearned models from
retrained ones, over arrays of per-example statistics shaped ``[models, examples]`` (the
statistic and the sources are those of :mod:`imu_jax.lab.forgetting_score`).

U-LiRA: every choice, and where it comes from
---------------------------------------------
* Game ([ulira]): for an example x, the target model either was trained with x and then unlearned
  it ("in", positive) or never saw x (retrained without it, "out"). A per-example attacker fits one
  Gaussian to the statistic of x under *unlearned* shadow models (trained with x, then unlearned
  by the same algorithm) and one under *retrained* shadow models, and scores a target model by the
  log likelihood ratio ``log N(s; μ_in, σ_in) - log N(s; μ_out, σ_out)`` (LiRA's online test
  [lira] with the unlearned models as the "in" world). Passing the *original* models' statistics as
  ``in_shadow`` gives plain LiRA pointed at unlearned targets (an attacker who assumes unlearning
  did nothing); [ulira]'s attacker knows the unlearning algorithm and is stronger.
* Shadow/target split (:func:`ulira_split`): [ulira] trains its shadow models on random halves
  of the data, each with its own forget set, so each example is "in" for some shadows and "out"
  for others. Our lab fixes one forget set and varies only the seed, so the unlearned and the
  retrained populations already are the two worlds; ``ulira_split`` draws a random half of each
  population (seeded) as shadows and keeps the other half as targets, disjointly. (Only the
  abstract of [ulira] was readable here; this protocol follows its description of per-example
  U-MIAs and the U-LiRA descriptions of later benchmarks that re-implement it.)
* Gaussian fit: per-example mean and standard deviation (ddof = 1) of each shadow population,
  floored at ``min_std`` (1e-4); ``fixed_variance=True`` uses one pooled within-example standard
  deviation for both (LiRA's variant for few shadow models; [lira]'s code pools differently: the
  std of all "in" values).
* Reported: per-example AUC of the score over the target models (Mann–Whitney, ties count ½),
  per-example balanced accuracy at the likelihood-ratio threshold 1 (score > 0; [ulira] reports
  attack accuracy, 0.5 = ideal); pooled over all (target model, example) pairs, as in [lira]: the
  AUC, the balanced accuracy and the TPR at FPR ≤ 1% and 0.1% (a per-example TPR at 0.1% FPR would
  need ≥ 1,000 retrained targets per example). With n retrained target pairs, an FPR below 1/n is
  measured as "no false positive at all".

Examples:
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> r = ulira_split(rng.normal(size=(128, 20)) + 1, rng.normal(size=(128, 20)), seed=0)
  >>> 0.7 < r.auc < 0.84  # Φ(1/√2) = 0.760
  True"""

from __future__ import annotations
from imu_jax.lab.forgetting_score import _check_pair
import dataclasses
import math
import numpy as np



FPR_LEVELS = (0.01, 0.001)


def gaussian_log_likelihood_ratio(x, in_shadow, out_shadow, *, fixed_variance: bool = False,
                                  min_std: float = 1e-4) -> np.ndarray:
    """``log N(x; μ_in, σ_in) - log N(x; μ_out, σ_out)`` per example: ``x`` ``[T, E]``, shadows
    ``[S_in, E]`` and ``[S_out, E]`` (their per-example mean and std, ddof 1, floored at
    ``min_std``; ``fixed_variance``: one pooled within-example std for both).

    >>> float(gaussian_log_likelihood_ratio(np.zeros((1, 1)), np.array([[-1.0], [1.0]]),
    ...                                     np.array([[1.0], [3.0]]))[0, 0]).__round__(4)
    1.0
    """
    x = np.asarray(x, np.float64)
    a = np.asarray(in_shadow, np.float64)
    b = np.asarray(out_shadow, np.float64)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("Each shadow population needs at least 2 models.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    if fixed_variance:
        pooled = np.sqrt(np.mean(np.concatenate([a.var(0, ddof=1), b.var(0, ddof=1)])))
        sd_a = sd_b = np.full_like(mu_a, max(pooled, min_std))
    else:
        sd_a = np.maximum(a.std(0, ddof=1), min_std)
        sd_b = np.maximum(b.std(0, ddof=1), min_std)
    return (-0.5 * ((x - mu_a) / sd_a) ** 2 - np.log(sd_a)) - (
        -0.5 * ((x - mu_b) / sd_b) ** 2 - np.log(sd_b))


def roc_auc(positive, negative, axis: int | None = None):
    """Mann–Whitney AUC (ties count ½): ``P(score_pos > score_neg)``. ``axis=None`` pools all
    values; ``axis=0`` gives one AUC per column.

    >>> roc_auc([2.0, 3.0], [1.0, 2.0])
    0.875
    """
    from scipy.stats import rankdata

    p = np.asarray(positive, np.float64)
    q = np.asarray(negative, np.float64)
    if axis is None:
        p, q, axis = p.ravel(), q.ravel(), 0
    n_p, n_q = p.shape[axis], q.shape[axis]
    ranks = rankdata(np.concatenate([p, q], axis=axis), axis=axis)
    rp = np.take(ranks, np.arange(n_p), axis=axis).sum(axis=axis)
    out = (rp - n_p * (n_p + 1) / 2) / (n_p * n_q)
    return float(out) if np.ndim(out) == 0 else out


def tpr_at_fpr(positive, negative, fpr: float) -> float:
    """TPR of "positive iff score > τ" at the smallest τ whose FPR is ≤ ``fpr`` (pooled).

    >>> tpr_at_fpr([5.0, 4.0, 0.5], [3.0, 1.0, 0.0, -1.0], 0.25)  # τ = 1: one false positive
    0.6666666666666666
    """
    p = np.sort(np.asarray(positive, np.float64).ravel())
    q = np.sort(np.asarray(negative, np.float64).ravel())[::-1]
    allowed = int(math.floor(fpr * len(q) + 1e-9))  # false positives allowed
    # scores strictly above q[allowed] are at most `allowed` negatives (fewer with ties)
    tau = q[allowed] if allowed < len(q) else -np.inf
    return float((p > tau).mean())


def _balanced_accuracy(s_in, s_out, axis=None):
    return 0.5 * (np.mean(s_in > 0, axis=axis) + np.mean(s_out <= 0, axis=axis))


@dataclasses.dataclass(frozen=True)
class ULiRAResult:
    """U-LiRA on a set of target models (positive: unlearned targets; negative: retrained ones).

    Attributes:
      per_example_auc: ``[E]`` AUC of the score over the targets, per example (0.5 = ideal).
      per_example_accuracy: ``[E]`` balanced accuracy of "score > 0" (likelihood ratio > 1).
      auc: pooled AUC over all (target, example) pairs.
      accuracy: pooled balanced accuracy at likelihood ratio 1.
      tpr_at_fpr: pooled ``{fpr: tpr}`` (e.g. 1% and 0.1%).
      scores_in: ``[T_in, E]`` log likelihood ratios of the unlearned targets.
      scores_out: ``[T_out, E]`` of the retrained targets.
    """

    per_example_auc: np.ndarray
    per_example_accuracy: np.ndarray
    auc: float
    accuracy: float
    tpr_at_fpr: dict
    scores_in: np.ndarray
    scores_out: np.ndarray

    @property
    def mean_example_auc(self) -> float:
        return float(np.mean(self.per_example_auc))


def ulira(in_shadow, out_shadow, in_target, out_target, *, fixed_variance: bool = False,
          fpr_levels=FPR_LEVELS, min_std: float = 1e-4) -> ULiRAResult:
    """U-LiRA: fit per-example Gaussians to the ``in_shadow`` ``[S_in, E]`` (unlearned shadow
    models) and ``out_shadow`` ``[S_out, E]`` (retrained shadow models) statistics, then score the
    held-out ``in_target`` ``[T_in, E]`` and ``out_target`` ``[T_out, E]`` models."""
    kw = {"fixed_variance": fixed_variance, "min_std": min_std}
    s_in = gaussian_log_likelihood_ratio(in_target, in_shadow, out_shadow, **kw)
    s_out = gaussian_log_likelihood_ratio(out_target, in_shadow, out_shadow, **kw)
    return ULiRAResult(
        per_example_auc=roc_auc(s_in, s_out, axis=0),
        per_example_accuracy=_balanced_accuracy(s_in, s_out, axis=0),
        auc=roc_auc(s_in, s_out),
        accuracy=float(_balanced_accuracy(s_in, s_out)),
        tpr_at_fpr={float(a): tpr_at_fpr(s_in, s_out, a) for a in fpr_levels},
        scores_in=s_in, scores_out=s_out)


def ulira_split(unlearned, retrained, *, num_shadow: int | None = None, seed: int = 0,
                **kwargs) -> ULiRAResult:
    """U-LiRA from one population of ``[N_u, E]`` unlearned and ``[N_r, E]`` retrained models:
    ``num_shadow`` of each (default: half, drawn with ``seed``) fit the Gaussians, the rest are
    the targets (disjoint). Keyword arguments: those of :func:`ulira`."""
    u, r = _check_pair(unlearned, retrained)
    rng = np.random.default_rng(seed)
    pu, pr = rng.permutation(len(u)), rng.permutation(len(r))
    ku = len(u) // 2 if num_shadow is None else num_shadow
    kr = len(r) // 2 if num_shadow is None else num_shadow
    if not (2 <= ku < len(u) and 2 <= kr < len(r)):
        raise ValueError(f"num_shadow must leave ≥ 2 shadows and ≥ 1 target per side; got "
                         f"{num_shadow} of {len(u)} unlearned and {len(r)} retrained models.")
    return ulira(u[pu[:ku]], r[pr[:kr]], u[pu[ku:]], r[pr[kr:]], **kwargs)


__all__ = ["FPR_LEVELS", "ULiRAResult", "gaussian_log_likelihood_ratio", "roc_auc", "tpr_at_fpr",
           "ulira", "ulira_split"]
