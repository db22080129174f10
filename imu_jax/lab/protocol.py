"""The evaluation protocol of the lab (issue 26): which held-out data each role reads, and what
``results.json`` records about it.

Held-out data has three disjoint roles: the retain-free stopping rule (``held_out_for``) and the
oracle tuning (every ``"tune"`` run is scored on ``evaluation.validation_view``) read the
VALIDATION split; TA, the membership attack's non-members and every distance of the reported
runs (``"eval"``, ``"retain_free"``) are measured on the TEST split, which neither saw.
"""

from __future__ import annotations

import pathlib
from typing import Mapping

import numpy as np

from imu_jax import methods as methods_lib


# The evaluation protocol of the results a run writes (recorded in results.json; --resume
# refuses a folder written under another): 2 = issue 26 (validation split for the stopping rule
# and the tuning, TA / MIA on the rest of the test split; the Retrain-vs-Retrain floor; one grid
# in optimizer steps for all). Results without it were scored on the whole test split.
PROTOCOL = 2

# Which split each role is scored on: the tuning never sees the test split.
SCORED_ON = {"tune": "validation", "eval": "test", "retain_free": "test"}

FLOOR_SEED_OFFSET = 1000  # retrain_floor: Retrain of seed + 1000 against Retrain of seed

# How the floor row pairs Retrain models: True / "offset" trains one more Retrain model per seed
# (seed + FLOOR_SEED_OFFSET); "next_seed" scores the Retrain of the next seed of the experiment
# (cyclically: 0→1, 1→2, 2→0), which costs no model when there are two seeds or more — for
# settings where a model costs a quarter of an hour. Both are two Retrains of the same retain
# set that differ only in their training seed.
FLOOR_PAIRINGS = (True, "offset", "next_seed")


def floor_seed(seed: int, seeds, pairing=True) -> int:
    """The seed of the Retrain model that the floor row scores against Retrain of ``seed``.

    >>> floor_seed(2, [0, 1, 2]), floor_seed(2, [0, 1, 2], "next_seed")
    (1002, 0)
    >>> floor_seed(0, [0], "next_seed")
    Traceback (most recent call last):
    ...
    ValueError: noise_floor='next_seed' pairs the Retrain models of the experiment's seeds, so it needs two seeds or more (got [0]); use noise_floor=True (seed + 1000).
    """
    if pairing not in FLOOR_PAIRINGS:
        raise ValueError(f"noise_floor must be one of {FLOOR_PAIRINGS} or False, "
                         f"got {pairing!r}.")
    if pairing != "next_seed":
        return int(seed) + FLOOR_SEED_OFFSET
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) < 2:
        raise ValueError("noise_floor='next_seed' pairs the Retrain models of the experiment's "
                         f"seeds, so it needs two seeds or more (got {seeds}); use "
                         f"noise_floor=True (seed + {FLOOR_SEED_OFFSET}).")
    return seeds[(seeds.index(int(seed)) + 1) % len(seeds)]


def _floor(task, hparams, seed):
    raise RuntimeError("'retrain_floor' is a Retrain model of another seed; the runner "
                       "evaluates it.")


# A pseudo-method: the Retrain model of another seed (:func:`floor_seed`) measured against the
# Retrain model of seed, the distance that only training randomness makes and no method can beat.
RETRAIN_FLOOR = methods_lib.Method(
    name="retrain_floor", needs="retain set (another seed)",
    summary="Retrain of another seed vs Retrain: the floor of every distance", run=_floor,
    reference=True)


def with_floor(methods: list, seeds, noise_floor) -> list:
    """``methods`` (registry ``Method`` objects) with :data:`RETRAIN_FLOOR` right after Retrain's
    row (first without one) when ``noise_floor`` asks for it and it is not there; a pairing
    that cannot be made (:func:`floor_seed`) fails here, before any model is trained.

    >>> [m.name for m in with_floor([RETRAIN_FLOOR], [0], True)], with_floor([], [0], False)
    (['retrain_floor'], [])
    """
    if not noise_floor:
        return list(methods)
    floor_seed(seeds[0], seeds, noise_floor)
    names = [m.name for m in methods]
    if RETRAIN_FLOOR.name in names:
        return list(methods)
    at = names.index("retrain") + 1 if "retrain" in names else 0
    return methods[:at] + [RETRAIN_FLOOR] + methods[at:]


def _evaluated_by_the_runner(task, hparams, seed):
    raise RuntimeError("'original' is the trained model itself; the runner evaluates it.")


# A pseudo-method so the original model gets a row (and an Avg. Gap) in every table.
ORIGINAL = methods_lib.Method(name="original", needs="— (before unlearning)",
                              summary="the trained model, nothing unlearned",
                              run=_evaluated_by_the_runner)


def is_test_data(arrays: Mapping[str, np.ndarray], splits) -> bool:
    """Whether ``arrays`` is (or shares its arrays with) a split that reported runs are scored on
    (``test``, ``forget_test``, ``control_test``)."""
    from imu_jax.data.validation import HELD_OUT_SPLITS

    for name in HELD_OUT_SPLITS:
        split = getattr(splits, name, None)
        if split is not None and any(arrays.get(k) is v for k, v in split.items()):
            return True
    return False


def held_out_record(splits) -> dict:
    """What results.json records about the held-out data: the sizes of the validation and test
    splits (and their forget / control parts), how the validation split was carved, and which
    split each role reads.

    >>> import types, numpy as np
    >>> s = types.SimpleNamespace(validation={"label": np.zeros(3)}, test={"label": np.zeros(4)})
    >>> record = held_out_record(s)
    >>> record["validation"], record["test"], record["roles"]["validation"][:20]
    (3, 4, 'the retain-free stop')
    """
    from imu_jax.data.validation import HELD_OUT_SPLITS

    sizes = {}
    for name, val_name in HELD_OUT_SPLITS.items():
        for part in (val_name, name):
            if getattr(splits, part, None) is not None:
                sizes[part] = int(len(getattr(splits, part)["label"]))
    carve = (getattr(splits, "info", None) or {}).get("validation") or {}
    return {**sizes, "carve": carve,
            "roles": {"validation": "the retain-free stopping rule and the oracle tuning's "
                                    "Avg. Gap (tuning seeds)",
                      "test": "TA, the membership attack's non-members and every reported "
                              "distance (reported seeds)"}}


def check_protocol(out: pathlib.Path, results: Mapping, record: Mapping | None = None) -> None:
    """Refuses (``ValueError``) to resume ``results`` written under another :data:`PROTOCOL`, or
    (with the new run's config ``record``) with validation / test splits of other sizes: runs
    scored on other splits cannot share a table with new ones. Results without a config are left
    to ``store.check_resume``."""
    saved = results.get("config")
    if not (results.get("runs") and saved):
        return
    where = pathlib.Path(out) / "results.json"
    if saved.get("protocol") != PROTOCOL:
        raise ValueError(f"--resume: {where} was scored under an earlier evaluation protocol (TA "
                         "and the stopping rule on the whole test split); rerun into another "
                         "--out.")
    sizes = {k: v for k, v in (saved.get("held_out") or {}).items() if isinstance(v, int)}
    wanted = {k: v for k, v in ((record or {}).get("held_out") or {}).items()
              if isinstance(v, int)}
    if record is not None and sizes != wanted:
        raise ValueError(f"--resume: {where} was scored on held-out splits of other sizes "
                         f"({sizes} → {wanted}); rerun into another --out.")
