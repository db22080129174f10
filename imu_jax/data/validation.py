"""The validation split of an experiment, carved from the released test split (issue 26).

Held-out data has three disjoint roles: the retain-free stopping rule and every tuning decision
read the VALIDATION split; TA and the membership attack's non-members are measured on the TEST
split, which neither saw. :func:`carve_validation` makes the validation split out of each
held-out split (:data:`HELD_OUT_SPLITS`), stratified and seeded (:func:`stratified_holdout`);
``imu_jax.data.make_splits(..., validation=VALIDATION_FRACTION)`` calls it.
"""

from __future__ import annotations

import numpy as np

# The share of the released test split that becomes the validation split. None of our datasets
# (digits, MNIST-1D, image folders, the TFDS catalogue, Markov) ships one. Half keeps both parts
# the same size: the validation part decides when to stop and what is selected; the test part's
# TA then has √2 the standard error of the full split's.
VALIDATION_FRACTION = 0.5
# Each held-out split a carve divides -> the name of its validation part.
HELD_OUT_SPLITS = {"test": "validation", "forget_test": "forget_validation",
                   "control_test": "control_validation"}
# The carve draws from its own random stream of the split seed, so carving changes no forget set.
_VALIDATION_STREAM = 26


def stratified_holdout(strata: np.ndarray, fraction: float, seed: int,
                       stream: int = 0) -> np.ndarray:
    """A boolean mask of the rows that go to the validation part: ``fraction`` of each stratum
    (``strata[i]`` = the stratum of row ``i``), the rows drawn at random from the seed. Each
    stratum gets ``⌊fraction · n_k⌋`` rows, and the remaining ``round(fraction · n) − Σ⌊·⌋`` go
    one each to strata drawn at random among those with a remainder, so the total is
    ``round(fraction · n)`` and a stratum of at least two rows keeps one on each side (for
    fractions ≤ 0.5). The same ``(strata, fraction, seed, stream)`` gives the same mask.

    >>> mask = stratified_holdout(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.5, seed=0)
    >>> int(mask.sum()), int(mask[:4].sum()), int(mask[4:].sum())
    (5, 2, 3)
    >>> bool((mask == stratified_holdout(np.repeat([0, 1], [4, 6]), 0.5, seed=0)).all())
    True
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}.")
    strata = np.asarray(strata).reshape(len(strata), -1)[:, 0] if len(strata) else np.zeros(0)
    rng = np.random.default_rng([int(seed), _VALIDATION_STREAM, int(stream)])
    mask = np.zeros(len(strata), bool)
    groups = [np.flatnonzero(strata == k) for k in np.unique(strata)]
    counts = [int(np.floor(fraction * len(g))) for g in groups]
    extra = int(round(fraction * len(strata))) - sum(counts)
    remainders = [i for i, g in enumerate(groups) if fraction * len(g) > counts[i]]
    for i in rng.permutation(remainders)[:max(0, extra)]:
        counts[i] += 1
    for group, count in zip(groups, counts):
        mask[rng.permutation(group)[:count]] = True
    return mask


def carve_validation(splits, fraction: float = VALIDATION_FRACTION, seed: int = 0, *,
                     strata: dict | None = None):
    """``splits`` with a validation part carved out of each held-out split
    (:data:`HELD_OUT_SPLITS`: ``test`` → ``validation``, ``forget_test`` →
    ``forget_validation``, ``control_test`` → ``control_validation``); each held-out split keeps
    the rest. Rows are stratified by ``strata[name]`` (default: the split's labels when they are
    class ids, else unstratified) with :func:`stratified_holdout`, seeded by ``seed``. Returns a
    shallow copy (a :class:`Splits` or any object with those attributes); ``info`` (when a dict)
    gets the new ``counts`` and a ``"validation"`` entry saying how the split was made.

    >>> import types
    >>> s = types.SimpleNamespace(test={"label": np.repeat([0, 1], 4), "id": np.arange(8)})
    >>> v = carve_validation(s, 0.5, seed=1)
    >>> len(v.validation["id"]), len(v.test["id"]), set(v.validation["id"]) & set(v.test["id"])
    (4, 4, set())
    >>> np.bincount(v.validation["label"]).tolist(), len(s.test["id"])
    ([2, 2], 8)
    """
    import copy

    if getattr(splits, "validation", None) is not None:
        raise ValueError("these splits already have a validation split.")
    out = copy.copy(splits)
    strata = dict(strata or {})
    stratified_by = set()
    for stream, (name, val_name) in enumerate(HELD_OUT_SPLITS.items()):
        arrays = getattr(splits, name, None)
        if arrays is None:
            continue
        labels = np.asarray(arrays["label"])
        if name in strata:
            key, stratified_by = np.asarray(strata[name]), stratified_by | {"fine label"}
        elif labels.ndim == 1:
            key, stratified_by = labels, stratified_by | {"label"}
        else:  # sequences: next-token labels, no class to stratify by
            key = np.zeros(len(labels), np.int64)
        mask = stratified_holdout(key, fraction, seed, stream)
        setattr(out, val_name, {k: v[mask] for k, v in arrays.items()})
        setattr(out, name, {k: v[~mask] for k, v in arrays.items()})
    info = getattr(splits, "info", None)
    if isinstance(info, dict):
        info = dict(info)
        counts = dict(info.get("counts") or {})
        for name, val_name in HELD_OUT_SPLITS.items():
            for part in (name, val_name):
                if getattr(out, part, None) is not None:
                    counts[part] = int(len(getattr(out, part)["label"]))
        info["counts"] = counts
        info["validation"] = {
            "fraction": float(fraction), "seed": int(seed),
            "stratified_by": " and ".join(sorted(stratified_by)) or None,
            "carved": {n: v for n, v in HELD_OUT_SPLITS.items()
                       if getattr(out, v, None) is not None}}
        out.info = info
    return out
