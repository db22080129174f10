"""Unlearning methods behind one interface, and the registry that names them.

Adding a baseline is one module with a ``METHOD`` plus one line in ``_REGISTERED``.

>>> available()[:3]
['imu', 'imu_batch', 'imu_random']
>>> get_method("npo").needs
'forget set + original model'
"""

from __future__ import annotations

from imu_jax.methods import (boundary_shrink, finetune, ga, ga_head, graddiff, imu, imu_random,
                             jit_lipschitz, l1_sparse, npo, npo_rt, random_label, retrain, salun,
                             scar, scrub, simnpo, ssd)
from imu_jax.methods.base import Method, MethodOutput, UnlearnTask

_REGISTERED = (
    imu.METHOD,
    imu.PER_BATCH,
    imu_random.METHOD,
    ga_head.METHOD,
    ga.METHOD,
    random_label.METHOD,
    boundary_shrink.METHOD,
    boundary_shrink.RUNNER_UP,
    boundary_shrink.REFERENCE,
    npo.METHOD,
    ssd.METHOD,
    salun.METHOD,
    scrub.METHOD,
    l1_sparse.METHOD,
    jit_lipschitz.METHOD,
    scar.METHOD,
    graddiff.METHOD,
    npo_rt.METHOD,
    simnpo.METHOD,
    finetune.METHOD,
    random_label.WITH_RETAIN,
    retrain.METHOD,
)
METHODS: dict[str, Method] = {m.name: m for m in _REGISTERED}

# The methods of every classification comparison table, in row order: the experiment configs
# name them through this, so adding or renaming a method changes one line (and
# tests/test_cli_train.py checks every config's names against the registry).
CLASSIFICATION_COMPARISON = (
    "retrain", "finetune", "ga", "ga_head", "imu", "imu_random", "random_label_forget_only",
    "boundary_shrink", "boundary_shrink_runner_up", "npo", "ssd", "random_label_with_retain",
    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo")

__all__ = ["CLASSIFICATION_COMPARISON", "METHODS", "Method", "MethodOutput", "UnlearnTask",
           "available", "get_method"]


def available() -> list[str]:
    """Registered method names, in table order.

    >>> "imu" in available() and "retrain" in available()
    True
    """
    return list(METHODS)


def get_method(name: str) -> Method:
    """The method called ``name``; a ``ValueError`` listing the valid names otherwise.

    >>> get_method("ga_head").needs
    'forget set only'
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}.") from None
