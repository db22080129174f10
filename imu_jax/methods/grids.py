"""One tuning protocol for every method (issue 26 item 3): the same grid for all.

Every gradient method — the IMU family, every baseline, the retain-set reference points — is
tuned over ONE grid, the Cartesian product of

* the optimizer-step count ``max_steps`` ∈ :func:`step_counts` of the setting's retain-free cap:
  1, 2, 4, … (powers of :data:`STEP_BASE`) and the cap itself (:func:`retain_free_cap`: the
  stopping rule's ``max_epochs`` passes over the forget set at the shared batch size, so the
  longest tuned run is as long as the longest retain-free run); and
* the learning rate ∈ :data:`LEARNING_RATES`, one decade apart (1e-4 … 1e-1), a set that brackets
  every method's default (3e-4 … 2e-2).

Lengths are in optimizer steps, not epochs, so a method that iterates the retain set (Fine-tune,
ℓ1-sparse) and one that iterates the forget set get the same number of updates per grid point.
Every other hyperparameter — second knobs such as IMU's ``top_fraction``, Boundary Shrink's ε,
NPO's β, SCRUB's msteps — stays at the method's default in every configuration: no method gets a
knob the others do not. The lab (``imu_jax.lab``) resizes the step axis to the experiment's cap
(the :class:`StepCounts` marker in :data:`STEP_GRID` says "resize me") and sets ``epochs`` per
point with :func:`epochs_for_steps` so that ``max_steps`` is what ends every run.

SSD takes no gradient step: it keeps its own α × λ grid (:data:`SSD_GRID`, 12 points).

The schedule (``milestones``, default ``()`` = constant) and BatchNorm mode (``bn_mode``) are
hyperparameters of every gradient method with the same default everywhere; they are not in the
grid, so every comparison uses one schedule.

>>> step_counts(50)
(1, 2, 4, 8, 16, 32, 50)
>>> len(grid_size_points(GRIDS["imu"])) == len(LEARNING_RATES) * len(step_counts(DEFAULT_CAP))
True
>>> GRIDS["imu"] is GRIDS["ga"] is GRIDS["scrub"] is STEP_GRID
True
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping

# Defaults shared by every gradient baseline (SGD momentum 0.9, coupled decay 5e-4, constant lr).
GRADIENT_DEFAULTS = {"batch_size": 256, "momentum": 0.9, "weight_decay": 5e-4, "optimizer": "sgd",
                     "max_steps": None, "milestones": ()}

# The learning rates of the shared grid: one decade apart, bracketing every method's default.
LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1)
# The step axis is geometric: 1, STEP_BASE, STEP_BASE², … up to the cap (then the cap itself).
STEP_BASE = 2
# The cap the static grid is written for (a forget set of at most one batch: 50 passes of one
# step, the retain-free rule's default); the lab replaces it with the setting's own cap.
DEFAULT_CAP = 50


class StepCounts(tuple):
    """The step axis of :data:`STEP_GRID`: a tuple of step counts that the lab resizes to each
    experiment's retain-free cap. A step axis given as a plain list or tuple is kept as is.

    >>> isinstance(STEP_GRID["max_steps"], StepCounts), StepCounts((1, 2)) == (1, 2)
    (True, True)
    """

    __slots__ = ()


def gradient_defaults(*, learning_rate: float, epochs: int, bn_mode: str, **extra) -> dict:
    """The defaults of a gradient baseline: the shared recipe plus its own values.

    >>> gradient_defaults(learning_rate=0.1, epochs=3, bn_mode="train")["milestones"]
    ()
    """
    return {"learning_rate": learning_rate, "epochs": epochs, **GRADIENT_DEFAULTS,
            "bn_mode": bn_mode, **extra}


def grid_size_points(grid: Mapping[str, tuple]) -> list[tuple]:
    """Every configuration of ``grid`` (its Cartesian product).

    >>> len(grid_size_points({"a": (1, 2), "b": (3, 4, 5)}))
    6
    """
    return list(itertools.product(*grid.values()))


def step_counts(cap: int, base: int = STEP_BASE) -> tuple[int, ...]:
    """``1, base, base², …`` below ``cap``, then ``cap``: the step axis of the shared grid.

    >>> step_counts(1), step_counts(8), step_counts(1000)[-3:]
    ((1,), (1, 2, 4, 8), (256, 512, 1000))
    """
    cap = int(cap)
    if cap < 1:
        raise ValueError(f"the step cap must be >= 1, got {cap}.")
    counts, steps = [], 1
    while steps < cap:
        counts.append(steps)
        steps *= base
    return tuple(counts + [cap])


def retain_free_cap(num_forget: int, batch_size: int = GRADIENT_DEFAULTS["batch_size"],
                    max_epochs: int | None = None) -> int:
    """The retain-free rule's step cap for a forget set of ``num_forget`` examples at the shared
    batch size: ``max_epochs`` (default: ``StopRule().max_epochs``, 50) passes of
    ``⌈num_forget / batch_size⌉`` steps.

    >>> retain_free_cap(146), retain_free_cap(5000)
    (50, 1000)
    """
    if max_epochs is None:
        from imu_jax.unlearning.stopping import StopRule

        max_epochs = StopRule().max_epochs
    return int(max_epochs) * max(1, -(-int(num_forget) // int(batch_size)))


def step_grid(cap: int = DEFAULT_CAP) -> dict[str, tuple]:
    """The shared grid for a setting whose retain-free cap is ``cap`` steps.

    >>> step_grid(4)
    {'learning_rate': (0.0001, 0.001, 0.01, 0.1), 'max_steps': (1, 2, 4)}
    """
    return {"learning_rate": LEARNING_RATES, "max_steps": StepCounts(step_counts(cap))}


def epochs_for_steps(max_steps: int, hparams: Mapping[str, Any], *, num_forget: int,
                     num_retain: int | None = None, iterates_retain: bool = False) -> int:
    """An ``epochs`` value under which a run of these hyperparameters holds at least
    ``max_steps`` steps, so that ``max_steps`` (not ``epochs``) ends it: ``max_steps`` divided
    by a lower bound on the steps of one epoch — ``⌈n / b⌉`` for ``n`` the examples the method
    iterates (the retain set for a retain-set method, else the forget set) and ``b`` its largest
    batch size; 1 for the IMU family (``top_fraction``), whose kept subset may be one example.

    >>> epochs_for_steps(50, {"batch_size": 256}, num_forget=146)
    50
    >>> epochs_for_steps(1000, {"batch_size": 256}, num_forget=5000)
    50
    >>> epochs_for_steps(8, {"batch_size": 256, "top_fraction": 0.5}, num_forget=5000)
    8
    """
    if "top_fraction" in hparams:
        per_epoch = 1
    else:
        n = num_retain if iterates_retain and num_retain else num_forget
        batch = max([int(v) for k, v in hparams.items()
                     if k.endswith("batch_size") and isinstance(v, int) and v > 0] or [1])
        per_epoch = max(1, math.ceil(int(n) / batch))
    return max(1, math.ceil(int(max_steps) / per_epoch))


STEP_GRID: dict[str, tuple] = step_grid()
# The methods that take gradient steps: all of them share STEP_GRID.
STEP_METHODS = ("imu", "imu_batch", "imu_random", "ga_head", "ga", "random_label_forget_only",
                "random_label_with_retain", "finetune", "graddiff", "boundary_shrink",
                "boundary_shrink_runner_up", "npo", "npo_rt", "simnpo", "salun", "scrub",
                "l1_sparse", "jit", "scar")
# SSD takes no gradient step: dampening strength α × selection threshold λ.
SSD_GRID: dict[str, tuple] = {"alpha": (1.0, 3.0, 10.0, 30.0), "dampening": (0.1, 1.0, 3.0)}
GRIDS: dict[str, dict[str, tuple]] = {**{name: STEP_GRID for name in STEP_METHODS},
                                      "ssd": SSD_GRID}
