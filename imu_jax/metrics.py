"""Unlearning metrics of the literature (SalUn / Unlearn-Sparse), spec §5.

Everything here works on plain arrays of probabilities or logits, so it does not care which model
or framework produced them:

* ``accuracy`` — UA = 1 − acc(D_f), RA = acc(D_r), TA = acc(D_test);
* ``mia_efficacy`` — the SVC membership-inference attack (RBF, C = 3, gamma = "auto"), with the
    ``confidence`` (default), ``entropy``, ``m_entropy``, ``correctness`` and ``prob`` features;
* ``avg_gap`` — mean |metric − Retrain's metric| over UA, RA, TA, MIA-efficacy;
* ``prediction_wasserstein`` — mean per-example W1 between two models' predicted distributions;
* ``token_kl`` / ``transition_kl`` — per-token KL for sequence models (Markov experiment).

``classification_metrics`` bundles them for one model given its probabilities on each split.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# scipy and scikit-learn are imported where they are used: ``import imu_jax`` stays fast.

MIA_FEATURES = ("confidence", "entropy", "m_entropy", "correctness", "prob")
GAP_KEYS = ("ua", "ra", "ta", "mia_efficacy")
_LOG_FLOOR = 1e-30


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64. A row with a non-finite logit
    (a diverged model) becomes uniform, so it counts as knowing nothing rather than crashing the
    attack.

    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)], [np.nan, 1.0]])).round(3)
    array([[0.5 , 0.5 ],
           [0.25, 0.75],
           [0.5 , 0.5 ]])
    """
    z = np.asarray(logits, np.float64)
    broken = ~np.all(np.isfinite(z), axis=-1, keepdims=True)
    z = np.where(broken, 0.0, z)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label (nan for an empty set).

    >>> accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]))
    0.6666666666666666
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def mia_features(probs: np.ndarray, labels: np.ndarray, kind: str = "confidence") -> np.ndarray:
    """Per-example attack features ``[N, k]`` computed from predicted probabilities.

    * ``confidence``: p_y, the true-class probability;
    * ``entropy``: −Σ p log p;
    * ``m_entropy``: Song & Mittal's modified entropy −(1−p_y) log p_y − Σ_{c≠y} p_c log(1−p_c)
        (the public SalUn code indexes columns by the whole label vector; this is the intended formula);
    * ``correctness``: 1 if the arg-max is the label else 0;
    * ``prob``: the full probability vector.

    >>> p = np.array([[0.5, 0.5], [1.0, 0.0]])
    >>> mia_features(p, np.array([0, 0]), "confidence").ravel()
    array([0.5, 1. ])
    >>> mia_features(p, np.array([0, 0]), "entropy").ravel().round(4).tolist()
    [0.6931, 0.0]
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    if kind not in MIA_FEATURES:
        raise ValueError(f"unknown MIA feature {kind!r}; choose one of {MIA_FEATURES}")
    if labels.ndim != 1 or probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"mia_features needs probs [N, C] and integer labels [N]; got probs "
                         f"{probs.shape} and labels {labels.shape}.")
    labels = labels.astype(np.int64)
    rows = np.arange(probs.shape[0])
    true_prob = probs[rows, labels]
    if kind == "confidence":
        return true_prob[:, None]
    if kind == "correctness":
        return (np.argmax(probs, axis=-1) == labels).astype(np.float64)[:, None]
    if kind == "prob":
        return probs
    log_p = np.log(np.maximum(probs, _LOG_FLOOR))
    if kind == "entropy":
        return np.abs(np.sum(probs * log_p, axis=-1))[:, None]
    log_not_p = np.log(np.maximum(1.0 - probs, _LOG_FLOOR))
    others = -np.sum(probs * log_not_p, axis=-1) + true_prob * log_not_p[rows, labels]
    return (-(1.0 - true_prob) * log_p[rows, labels] + others)[:, None]


def svc_nonmember_rate(members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray) -> float:
    """Fit the RBF SVC (C = 3, gamma = "auto") on members (1) vs non-members (0) and return the
    fraction of ``targets`` it calls non-members (nan when there are no targets). Both classes must
    be present: without members or without non-members there is no attack to fit, and it raises a
    ``ValueError`` naming the empty side.

    >>> rng = np.random.default_rng(0)
    >>> members = rng.uniform(0.9, 1.0, (50, 1)); nonmembers = rng.uniform(0.0, 0.5, (50, 1))
    >>> svc_nonmember_rate(members, nonmembers, np.array([[0.05], [0.95]]))
    0.5
    """
    for name, side in (("non-members (the test examples)", nonmembers),
                       ("members (the shadow retain examples)", members)):
        if len(side) == 0:
            raise ValueError(f"the membership-inference attack has no {name}: it needs examples "
                             "of both classes to fit its SVC.")
    x = np.concatenate([members, nonmembers]).reshape(len(members) + len(nonmembers), -1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    if len(targets) == 0:
        return float("nan")
    targets = np.asarray(targets).reshape(len(targets), -1)
    from imu_jax import _extras

    _extras.require("sklearn", "experiments", "the SVC membership attack (mia_efficacy)")
    from sklearn.svm import SVC

    classifier = SVC(C=3, gamma="auto", kernel="rbf")
    classifier.fit(x, y)
    return float(1.0 - np.mean(classifier.predict(targets)))


def shadow_member_indices(num_retain: int, num_test: int, *, seed: int = 0) -> np.ndarray:
    """Indices of the |D_test| retain examples used as the attack's members (all if fewer).

    >>> shadow_member_indices(10, 3, seed=0).shape
    (3,)
    >>> shadow_member_indices(2, 3).tolist()
    [0, 1]
    """
    if num_retain <= num_test:
        return np.arange(num_retain)
    return np.sort(np.random.default_rng(seed).choice(num_retain, num_test, replace=False))


def mia_efficacy(
        retain_probs: np.ndarray,
        retain_labels: np.ndarray,
        test_probs: np.ndarray,
        test_labels: np.ndarray,
        forget_probs: np.ndarray,
        forget_labels: np.ndarray,
        *,
        kind: str = "confidence",
        seed: int = 0,
) -> float:
    """MIA-efficacy: the fraction of D_f that an SVC trained on (|D_test| retain = members,
    D_test = non-members) calls non-members. Higher = more forgotten. ``nan`` for an empty D_f; an
    empty D_r or D_test (no attack can be fitted) is a ``ValueError``.

    >>> rng = np.random.default_rng(0)
    >>> member = np.tile([[0.99, 0.01]], (40, 1)); nonmember = np.tile([[0.4, 0.6]], (40, 1))
    >>> labels = np.zeros(40, np.int64)
    >>> mia_efficacy(member, labels, nonmember, labels, member[:5], labels[:5])
    0.0
    >>> mia_efficacy(member, labels, nonmember, labels, nonmember[:5], labels[:5])
    1.0
    """
    members = shadow_member_indices(len(retain_labels), len(test_labels), seed=seed)
    return svc_nonmember_rate(
            mia_features(np.asarray(retain_probs)[members], np.asarray(retain_labels)[members], kind),
            mia_features(test_probs, test_labels, kind),
            mia_features(forget_probs, forget_labels, kind),
    )


def prediction_wasserstein(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Mean over examples of the Wasserstein-1 distance between two models' predicted class
    distributions on the SAME example, with the 0/1 ground metric between classes (classes are
    unordered). Under that metric W1 equals the total variation distance, ``½ Σ_c |p_c − q_c|``
    (Gibbs & Su, "On choosing and bounding probability metrics", 2002, §2 and Thm. 4; Villani,
    "Optimal Transport", 2009, ch. 6). 0 = identical predictions on every example, 1 = disjoint
    ones. Per example, so two models that swap their predictions are far apart — unlike a W1
    between the two sets of confidences (or of predicted labels, the public code's
    ``compute_wasserstein_distance``), which scores that 0.

    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> prediction_wasserstein(a, a[::-1]), prediction_wasserstein(a, a)
    (1.0, 0.0)
    >>> prediction_wasserstein(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
    0.5
    """
    probs_a, probs_b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    if probs_a.shape != probs_b.shape:
        raise ValueError(f"probs_a and probs_b must have the same shape, got {probs_a.shape} and "
                         f"{probs_b.shape}.")
    return float(np.mean(0.5 * np.abs(probs_a - probs_b).sum(axis=-1)))


def classification_metrics(
        probs: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray],
        *,
        mia_kinds: Sequence[str] = MIA_FEATURES,
        seed: int = 0,
) -> dict[str, float]:
    """UA, RA, TA and the MIA variants for one model.

    Args:
        probs: ``{"forget", "retain", "test"}`` → predicted probabilities ``[N, C]``.
        labels: the same keys → integer labels ``[N]``.
        mia_kinds: which attack features to report; ``"confidence"`` is reported as
            ``mia_efficacy`` and the others as ``mia_<kind>``.
        seed: picks the |D_test| retain members of the attack.

    Returns:
        Fractions in [0, 1]: ``ua``, ``ra``, ``ta``, ``fa`` (= 1 − ua), ``mia_efficacy``, ``mia_<kind>``.

    >>> p = {"forget": np.array([[0.2, 0.8]]), "retain": np.tile([[0.9, 0.1]], (4, 1)),
    ...      "test": np.tile([[0.6, 0.4]], (4, 1))}
    >>> y = {"forget": np.array([0]), "retain": np.zeros(4, int), "test": np.zeros(4, int)}
    >>> m = classification_metrics(p, y, mia_kinds=("confidence",))
    >>> m["ua"], m["ra"], m["ta"], m["mia_efficacy"]
    (1.0, 1.0, 1.0, 1.0)
    """
    forget_accuracy = accuracy(probs["forget"], labels["forget"])
    result = {
            "ua": 1.0 - forget_accuracy,
            "fa": forget_accuracy,
            "ra": accuracy(probs["retain"], labels["retain"]),
            "ta": accuracy(probs["test"], labels["test"]),
    }
    for kind in mia_kinds:
        name = "mia_efficacy" if kind == "confidence" else f"mia_{kind}"
        result[name] = mia_efficacy(
                probs["retain"], labels["retain"], probs["test"], labels["test"],
                probs["forget"], labels["forget"], kind=kind, seed=seed)
    return result


def avg_gap(metrics: Mapping[str, float], reference: Mapping[str, float],
                        keys: Sequence[str] = GAP_KEYS) -> float:
    """Avg. Gap: mean |metric − reference| over ``keys`` (UA, RA, TA, MIA-efficacy by default).

    >>> round(avg_gap({"ua": 0.9, "ra": 1.0, "ta": 0.9, "mia_efficacy": 1.0},
    ...               {"ua": 1.0, "ra": 1.0, "ta": 0.95, "mia_efficacy": 1.0}), 6)
    0.0375
    """
    return float(np.mean([abs(metrics[k] - reference[k]) for k in keys]))


def token_kl(reference_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-token KL(p_reference ‖ p_model) over non-padding positions (label ≥ 0).

    ``reference_logits`` may also be probabilities from a true transition matrix: pass
    ``np.log(probs)``.

    >>> ref = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]]))
    >>> round(token_kl(ref, ref, np.array([[0, 1]])), 6)
    0.0
    >>> round(token_kl(ref, np.zeros((1, 2, 2)), np.array([[0, -1]])), 6)
    0.0
    """
    mask = np.asarray(labels) >= 0
    if not mask.any():
        return float("nan")
    p = softmax(reference_logits)[mask]
    log_p = np.log(np.maximum(p, _LOG_FLOOR))
    log_q = np.log(np.maximum(softmax(logits)[mask], _LOG_FLOOR))
    return float(np.mean(np.sum(p * (log_p - log_q), axis=-1)))


def transition_kl(transition: np.ndarray, tokens: np.ndarray, logits: np.ndarray,
                                    labels: np.ndarray) -> float:
    """Mean per-token KL(true transition row of the current token ‖ model) over non-padding tokens.

    >>> t = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> tokens = np.array([[0, 1]]); labels = np.array([[1, 0]])
    >>> round(transition_kl(t, tokens, np.log(t)[tokens], labels), 6)
    0.0
    """
    rows = np.asarray(transition, np.float64)[np.asarray(tokens)]
    return token_kl(np.log(np.maximum(rows, _LOG_FLOOR)), logits, labels)
