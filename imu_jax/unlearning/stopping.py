"""A retain-free stopping rule for unlearning loops, and the divergence guard every loop uses.

A user of a retain-free method has the trained model, the forget set D_f and usually held-out data
the model never trained on (a validation or test split) — never the retain set and never a
Retrain model. The rule below uses only those two sets, every ``eval_every`` optimizer steps:

* **Class removal** (the forget set is whole classes): a model that never saw a class never
  predicts it, so Retrain's accuracy on D_f is 0. Stop once the forget accuracy is at most
  ``class_threshold`` (default: chance, ``1 / num_classes``). At chance the forgotten class is
  predicted no more often than a uniform guess would, and UA ≥ 1 − 1/C; a stricter target costs
  extra ascent steps, which on head-only ascent is where utility collapses (docs/STOPPING.md has
  the measurements).
* **Sample removal** (random examples of classes that stay): Retrain treats D_f like any unseen
  example of the same distribution. Stop once a loss-threshold membership test (Yeom et al., 2018;
  the held-out-based MIA of SCRUB, Kurmanji et al., 2023, and the forget-vs-test comparison of
  U-LiRA, Hayes et al., 2024) can no longer tell D_f from held-out data: the area under its ROC
  curve, ``P(loss_forget < loss_held_out)``, is within ``auc_margin`` of chance (0.5). The default
  margin is the one-sided 5 % critical value of the Mann–Whitney statistic under the null,
  ``1.645 · sqrt((n_f + n_h + 1) / (12 n_f n_h))``: the rule stops when the test no longer rejects
  "forget and held-out losses come from one distribution".
* **Subclass removal** (the forget set is one fine class of a superclass, labelled with the
  superclass, and the held-out data are its sibling fine classes, which carry the same label and
  stay): Retrain never saw the subclass, so it predicts it no better than any unseen class (on
  CIFAR-20, Retrain's accuracy on the forgotten ``rocket`` images, train and test, is 2 %). The
  target is the class-removal one, forget accuracy ≤ ``class_threshold`` (chance by default),
  but the held-out siblings are what must not move, so the utility guard is on by default and
  reads them. Unseen images of the forgotten subclass are no reference here: Retrain
  misclassifies them as it does D_f, so a rule or a guard that keeps their accuracy (the sample
  rule) keeps the subclass.

**The utility guard** (sample and subclass removal by default): forget-only ascent raises the
loss of held-out data too, and on a model that overfits (MNIST-1D: 100 % train, 68 % test
accuracy) it can destroy the model before the forget losses look like held-out ones
(docs/STOPPING.md has the curves). So every check also measures the held-out accuracy and stops
once it has fallen more than ``max_utility_drop`` below its value at step 0, handing back the
parameters of the last check within that tolerance (stop reason ``"utility-guard"``). The
default tolerance is the one-sided 5 % noise level of that accuracy, ``1.645 · sqrt(p₀ (1 − p₀)
/ n_h)`` (at least ``1 / n_h``): a drop the held-out set cannot tell from resampling noise is
allowed, a larger one is not. Class removal has no guard by default (Retrain itself changes the
other classes' accuracy, and forgetting the class is the requirement); pass a number to guard it
too. Where the held-out labels are not the ones utility is measured with (``mislabeled:``
compares the forget set with held-out data relabelled the same way), the held-out arrays carry
the true labels under ``UTILITY_LABEL`` and the guard uses those.

The step cap (``max_epochs`` passes over the examples the method iterates, or ``max_steps``)
ends a run that never reaches the target, and says so. Every check also tests that the
parameters and the forget loss are finite: a non-finite value rolls the run back to the last
finite evaluated step with a :class:`DivergenceWarning` and the stop reason ``"diverged"``.

Stop reasons (``STOP_REASONS``): ``"already-forgotten"`` (the target held at step 0, nothing was
done), ``"reached"``, ``"utility-guard"``, ``"cap"``, ``"diverged"``; fixed-length runs end with
``"fixed"``.

The :class:`~imu_jax.unlearning.monitor.Monitor` applies the rule to a running loop (its docstring
has an example).

References:
  Yeom, Giacomelli, Fredrikson, Jha. Privacy risk in machine learning: analyzing the connection
  to overfitting. CSF 2018. — Kurmanji, Triantafillou, Hayes, Triantafillou. Towards unbounded
  machine unlearning (SCRUB). NeurIPS 2023. — Hayes, Shumailov, Triantafillou, Khalifa,
  Papernot. Inexact unlearning needs more careful evaluations to avoid a false sense of privacy.
  SaTML 2025 (arXiv 2403.01218, 2024).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


PyTree = Any


REMOVALS = ("auto", "class", "sample", "subclass")
# the removal kinds whose target is a forget accuracy (the others: a membership AUC)
BY_FORGET_ACCURACY = ("class", "subclass")


STOP_REASONS = ("already-forgotten", "reached", "utility-guard", "cap", "diverged", "fixed")


UTILITY_LABEL = "utility_label"  # held-out key: the labels the utility guard measures with


_AUTO = "auto"


class DivergenceWarning(RuntimeWarning):
    """A loop produced a non-finite loss or parameter and was rolled back."""


@dataclasses.dataclass(frozen=True)
class StopRule:
    """How a monitored loop decides to stop (module docstring).

    Attributes:
      removal: ``"class"``, ``"sample"``, ``"subclass"`` or ``"auto"`` (``"class"`` when no
        held-out example carries a forgotten label, else ``"sample"``; pass it explicitly when
        your held-out data contains the forgotten classes, and ``"subclass"`` when the forget set
        is a subclass and the held-out data its siblings under the same label).
      class_threshold: class and subclass removal stop at forget accuracy ≤ this; ``None`` =
        ``1/num_classes``.
      auc_margin: sample removal stops at membership AUC ≤ 0.5 + this; ``None`` = the one-sided
        5 % Mann–Whitney critical value for the two set sizes.
      max_utility_drop: the utility guard stops once held-out accuracy is more than this below
        its step-0 value and hands back the last check within it; ``"auto"`` (default) = the
        one-sided 5 % noise level of that accuracy for sample and subclass removal and no guard
        for class removal; ``None`` = no guard.
      eval_every: optimizer steps between checks.
      max_epochs: step cap, in passes over the examples the loop iterates.
      max_steps: optional absolute step cap (the smaller cap wins).
      max_eval_examples: at most this many forget / held-out examples are evaluated per check
        (a fixed random subset), bounding the cost of a check on large sets.
      seed: the subset's seed.
    """

    removal: str = "auto"
    class_threshold: float | None = None
    auc_margin: float | None = None
    max_utility_drop: float | str | None = _AUTO
    eval_every: int = 1
    max_epochs: int = 50
    max_steps: int | None = None
    max_eval_examples: int = 2048
    seed: int = 0

    def __post_init__(self):
        if self.removal not in REMOVALS:
            raise ValueError(f"removal must be one of {REMOVALS}, got {self.removal!r}.")
        if self.eval_every < 1 or self.max_epochs < 1 or self.max_eval_examples < 2:
            raise ValueError("eval_every and max_epochs must be >= 1 and max_eval_examples >= 2, "
                             f"got {self.eval_every}, {self.max_epochs}, "
                             f"{self.max_eval_examples}.")
        drop = self.max_utility_drop
        if drop != _AUTO and drop is not None and (isinstance(drop, str) or not drop >= 0):
            raise ValueError(f"max_utility_drop must be 'auto', None or a number >= 0, got "
                             f"{drop!r}.")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 or None, got {self.max_steps}.")

    def cap(self, steps_per_epoch: int) -> int:
        """The step cap for a loop of ``steps_per_epoch`` steps per pass.

        >>> StopRule(max_epochs=3).cap(4), StopRule(max_epochs=3, max_steps=5).cap(4)
        (12, 5)
        """
        cap = self.max_epochs * max(1, int(steps_per_epoch))
        return cap if self.max_steps is None else min(cap, int(self.max_steps))


def membership_auc(forget_losses: np.ndarray, held_out_losses: np.ndarray) -> float:
    """``P(loss_f < loss_h) + ½ P(loss_f = loss_h)``: the ROC AUC of the loss-threshold membership
    test calling low-loss examples members (0.5 = chance; 1 = every forget loss is lower).

    >>> membership_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    1.0
    >>> membership_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.5
    """
    f, h = np.asarray(forget_losses, np.float64), np.asarray(held_out_losses, np.float64)
    if f.size == 0 or h.size == 0:
        raise ValueError(f"membership_auc needs non-empty sets, got {f.size} forget and "
                         f"{h.size} held-out losses.")
    values = np.concatenate([f, h])
    ranks = _average_ranks(values)
    u_held = np.sum(ranks[f.size:]) - h.size * (h.size + 1) / 2  # pairs with held-out above
    return float(u_held / (f.size * h.size))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def default_auc_margin(num_forget: int, num_held_out: int) -> float:
    """One-sided 5 % critical value of the Mann–Whitney AUC under the null (module docstring).

    >>> round(default_auc_margin(100, 100), 4)
    0.0673
    """
    return 1.645 * math.sqrt((num_forget + num_held_out + 1) / (12 * num_forget * num_held_out))


def default_utility_drop(accuracy: float, num_held_out: int) -> float:
    """The utility guard's default tolerance: the one-sided 5 % noise level of an accuracy
    ``accuracy`` measured on ``num_held_out`` examples, at least one example (module docstring).

    >>> round(default_utility_drop(0.68, 1000), 4), default_utility_drop(1.0, 100)
    (0.0243, 0.01)
    """
    noise = 1.645 * math.sqrt(accuracy * (1.0 - accuracy) / num_held_out)
    return max(noise, 1.0 / num_held_out)


def infer_removal(forget_labels: np.ndarray, held_out_labels: np.ndarray) -> str:
    """``"class"`` when no held-out example carries a forgotten label; ``"sample"`` when the
    forget set's labels cover every class of the held-out data; otherwise the two readings
    disagree (a test split that still holds the forgotten class, or a handful of forgotten
    examples) and a ``ValueError`` asks for ``StopRule(removal=...)``.

    >>> infer_removal(np.array([3, 3]), np.array([0, 1, 2]))
    'class'
    >>> infer_removal(np.array([0, 1]), np.array([0, 1]))
    'sample'
    >>> infer_removal(np.array([3, 3]), np.array([0, 1, 2, 3]))
    Traceback (most recent call last):
    ...
    ValueError: cannot tell the removal kind: the held-out data holds the forgotten classes [3] ...
    """
    forgotten, held = np.unique(forget_labels), np.unique(held_out_labels)
    shared = np.intersect1d(forgotten, held)
    if shared.size == 0:
        return "class"
    if np.isin(held, forgotten).all():
        return "sample"
    raise ValueError(
        f"cannot tell the removal kind: the held-out data holds the forgotten classes "
        f"{shared.tolist()} but the forget set covers only {forgotten.size} of its {held.size} "
        "classes. Pass stop_rule=StopRule(removal='class') to forget whole classes (the "
        "held-out examples of those classes are then left out of the rule) or "
        "StopRule(removal='sample') to forget these examples only.")
