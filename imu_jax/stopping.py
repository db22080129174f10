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

**The utility guard** (sample removal by default): forget-only ascent raises the loss of
held-out data too, and on a model that overfits (MNIST-1D: 100 % train, 68 % test accuracy) it
can destroy the model before the forget losses look like held-out ones (docs/STOPPING.md has the
curves). So every check also measures the held-out accuracy and stops once it has fallen more
than ``max_utility_drop`` below its value at step 0, handing back the parameters of the last
check within that tolerance (stop reason ``"utility-guard"``). The default tolerance is the
one-sided 5 % noise level of that accuracy, ``1.645 · sqrt(p₀ (1 − p₀) / n_h)`` (at least
``1 / n_h``): a drop the held-out set cannot tell from resampling noise is allowed, a larger one
is not. Class removal has no guard by default (Retrain itself changes the other classes'
accuracy, and forgetting the class is the requirement); pass a number to guard it too. Where the
held-out labels are not the ones utility is measured with (``mislabeled:`` compares the forget
set with held-out data relabelled the same way), the held-out arrays carry the true labels under
``UTILITY_LABEL`` and the guard uses those.

The step cap (``max_epochs`` passes over the examples the method iterates, or ``max_steps``)
ends a run that never reaches the target, and says so. Every check also tests that the
parameters and the forget loss are finite: a non-finite value rolls the run back to the last
finite evaluated step with a :class:`DivergenceWarning` and the stop reason ``"diverged"``.

Stop reasons (``STOP_REASONS``): ``"already-forgotten"`` (the target held at step 0, nothing was
done), ``"reached"``, ``"utility-guard"``, ``"cap"``, ``"diverged"``; fixed-length runs end with
``"fixed"``.

Examples:
  >>> import jax.numpy as jnp, numpy as np
  >>> class Linear:
  ...   def apply(self, params, state, x, *, train=False):
  ...     return x @ params["w"], state
  >>> forget = {"image": np.eye(2, dtype=np.float32), "label": np.array([0, 1])}
  >>> held = {"image": np.eye(2, dtype=np.float32), "label": np.array([1, 0])}
  >>> monitor = Monitor(Linear(), forget, held, StopRule(removal="class"), num_classes=2)
  >>> monitor.start({"w": jnp.eye(2)}, {}, total_steps=10)  # predicts every forget label
  False
  >>> monitor.after_step(1, {"w": jnp.eye(2)[::-1]}, {})  # now predicts none of them
  True
  >>> monitor.result()["stop_reason"], monitor.result()["stopped_at"]
  ('reached', 1)

References:
  Yeom, Giacomelli, Fredrikson, Jha. Privacy risk in machine learning: analyzing the connection
  to overfitting. CSF 2018. — Kurmanji, Triantafillou, Hayes, Triantafillou. Towards unbounded
  machine unlearning (SCRUB). NeurIPS 2023. — Hayes, Shumailov, Triantafillou, Khalifa,
  Papernot. Inexact unlearning needs more careful evaluations to avoid a false sense of privacy.
  SaTML 2025 (arXiv 2403.01218, 2024).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

REMOVALS = ("auto", "class", "sample")
STOP_REASONS = ("already-forgotten", "reached", "utility-guard", "cap", "diverged", "fixed")
UTILITY_LABEL = "utility_label"  # held-out key: the labels the utility guard measures with
_AUTO = "auto"


class DivergenceWarning(RuntimeWarning):
    """A loop produced a non-finite loss or parameter and was rolled back."""


@dataclasses.dataclass(frozen=True)
class StopRule:
    """How a monitored loop decides to stop (module docstring).

    Attributes:
      removal: ``"class"``, ``"sample"`` or ``"auto"`` (``"class"`` when no held-out example
        carries a forgotten label, else ``"sample"``; pass it explicitly when your held-out data
        contains the forgotten classes).
      class_threshold: class removal stops at forget accuracy ≤ this; ``None`` = ``1/num_classes``.
      auc_margin: sample removal stops at membership AUC ≤ 0.5 + this; ``None`` = the one-sided
        5 % Mann–Whitney critical value for the two set sizes.
      max_utility_drop: the utility guard stops once held-out accuracy is more than this below
        its step-0 value and hands back the last check within it; ``"auto"`` (default) = the
        one-sided 5 % noise level of that accuracy for sample removal and no guard for class
        removal; ``None`` = no guard.
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


def _subset(arrays: Mapping[str, np.ndarray], limit: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, utility_y)`` of a fixed random subset of at most ``limit`` examples."""
    from imu_jax.unlearn import input_and_labels

    x, y = input_and_labels(arrays)
    utility_y = np.asarray(arrays[UTILITY_LABEL]) if UTILITY_LABEL in arrays else y
    if len(utility_y) != len(y):
        raise ValueError(f"held_out[{UTILITY_LABEL!r}] has {len(utility_y)} labels for "
                         f"{len(y)} examples.")
    if len(y) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
        x, y, utility_y = x[keep], y[keep], utility_y[keep]
    return x, y, utility_y


@functools.lru_cache(maxsize=64)
def _jitted_eval(model):
    from imu_jax.unlearn import batch_loss

    def evaluate(params, state, x, y):
        logits, _ = model.apply(params, state, x, train=False)
        losses = batch_loss(logits, y)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf))
                                    for leaf in jax.tree.leaves(params)]))
        return losses, jnp.argmax(logits, -1), finite

    return jax.jit(evaluate)


@jax.jit
def _all_finite(params):
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]
                             or [jnp.array(True)]))


_ROLLED_BACK = ("diverged", "utility-guard")


def _utility(point: Mapping[str, float]) -> float:
    """The held-out accuracy the utility guard watches (true labels where they differ)."""
    return point.get("utility_acc", point["held_out_acc"])


class Monitor:
    """Runs the stopping rule inside a loop (module docstring) and records the per-check curve.

    ``Monitor(model, forget, held_out, rule)`` monitors; ``Monitor.fixed()`` only guards against
    divergence. A loop calls ``start(params, state, total_steps=...)`` before its first step and
    ``after_step(step, params, state)`` after each; either returns True when the loop must stop.
    Then ``params_to_return(params)`` (the last finite parameters after a divergence) and
    ``result()`` (JSON-ready: ``stop_reason``, ``stopped_at``, ``cap``, ``removal``,
    ``threshold``, ``utility_floor``, ``curve``).
    """

    def __init__(self, model, forget: Mapping[str, np.ndarray] | None,
                 held_out: Mapping[str, np.ndarray] | None, rule: StopRule | None = None, *,
                 num_classes: int | None = None, progress: bool = False, label: str = ""):
        self.rule = rule or StopRule()
        self.model = model
        self.monitoring = forget is not None
        self.curve: list[dict[str, float]] = []
        self.stop_reason: str | None = None
        self.stopped_at: int | None = None
        self.cap: int | None = None
        # the last check that was finite and within the utility guard: what a stop hands back
        self._last_good: tuple[PyTree, PyTree, int] | None = None
        self._bar, self._progress, self._label = None, progress, label
        self.removal = self.threshold = None
        self.utility_floor: float | None = None  # held-out accuracy the guard keeps above
        if not self.monitoring:
            return
        if held_out is None:
            raise ValueError("Monitor needs held_out data (a split the model never trained on); "
                             "got None. Use Monitor.fixed() for a fixed-length loop.")
        self.forget_x, self.forget_y, _ = _subset(forget, self.rule.max_eval_examples,
                                                  self.rule.seed)
        self.held_x, self.held_y, self.utility_y = _subset(held_out, self.rule.max_eval_examples,
                                                           self.rule.seed + 1)
        self.has_utility_labels = UTILITY_LABEL in held_out
        if len(self.forget_y) == 0 or len(self.held_y) == 0:
            raise ValueError(f"Monitor needs non-empty forget and held_out sets, got "
                             f"{len(self.forget_y)} and {len(self.held_y)} examples.")
        if self.forget_y.ndim != 1:
            raise ValueError("the stopping rule needs class labels [N]; sequence labels "
                             f"{self.forget_y.shape} are not supported (use a fixed length).")
        self.removal = (infer_removal(self.forget_y, self.held_y) if self.rule.removal == "auto"
                        else self.rule.removal)
        if self.removal == "class":  # the rule and the guard look at the remaining classes only
            other = ~np.isin(self.held_y, np.unique(self.forget_y))
            if other.any() and not other.all():
                self.held_x, self.held_y = self.held_x[other], self.held_y[other]
                self.utility_y = self.utility_y[other]
        if self.removal == "class":
            if self.rule.class_threshold is not None:
                self.threshold = float(self.rule.class_threshold)
            elif num_classes:
                self.threshold = 1.0 / num_classes  # else: from the logits' width, at start()
        else:
            self.threshold = 0.5 + (self.rule.auc_margin if self.rule.auc_margin is not None
                                    else default_auc_margin(len(self.forget_y), len(self.held_y)))

    @classmethod
    def fixed(cls, check_every: int = 1) -> "Monitor":
        """A monitor that never stops early and only guards against divergence.

        >>> import jax.numpy as jnp
        >>> m = Monitor.fixed()
        >>> m.start({"w": jnp.ones(2)}, {}, total_steps=3), m.after_step(2, {"w": jnp.ones(2)}, {})
        (False, False)
        >>> m.after_step(3, {"w": jnp.ones(2)}, {})  # the planned length
        True
        >>> m.result()["stop_reason"]
        'fixed'
        """
        return cls(None, None, None, StopRule(eval_every=check_every))

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, params: PyTree, state: PyTree) -> dict[str, float]:
        """Forget / held-out accuracy and mean loss, the statistic, and finiteness."""
        evaluate = _jitted_eval(self.model)
        f_loss, f_pred, finite = (np.asarray(a) for a in evaluate(
            params, state, self.forget_x, self.forget_y))
        h_loss, h_pred, _ = (np.asarray(a) for a in evaluate(
            params, state, self.held_x, self.held_y))
        finite = bool(finite) and bool(np.all(np.isfinite(f_loss)))
        point = {"forget_acc": float(np.mean(f_pred == self.forget_y)),
                 "held_out_acc": float(np.mean(h_pred == self.held_y)),
                 "forget_loss": float(np.mean(f_loss)), "held_out_loss": float(np.mean(h_loss))}
        if self.has_utility_labels:
            point["utility_acc"] = float(np.mean(h_pred == self.utility_y))
        if not finite:
            point["statistic"] = float("nan")
        elif self.removal == "class":
            point["statistic"] = point["forget_acc"]
        else:
            point["statistic"] = membership_auc(f_loss, h_loss)
        point["finite"] = finite
        return point

    def _check(self, step: int, params: PyTree, state: PyTree) -> bool:
        """Evaluates at ``step``; True when the loop must stop."""
        if self.monitoring:
            point = {"step": int(step), **self.evaluate(params, state)}
            finite = point.pop("finite")
            if finite:
                self.curve.append(point)
            self._show(point, finite)
        else:
            finite = bool(_all_finite(params))
        if not finite:
            self.stop_reason, self.stopped_at = "diverged", step
            back = self._last_good[2] if self._last_good else 0
            warnings.warn(f"unlearning diverged: a non-finite loss or parameter at step {step}; "
                          f"rolled back to step {back}, the last finite check. Recorded as "
                          "stop_reason='diverged'; lower the learning rate.",
                          DivergenceWarning, stacklevel=3)
            return True
        if self.monitoring and self.utility_floor is None:  # step 0 (or the resumed step)
            self.utility_floor = self._floor(point)
        if self.monitoring and _utility(point) < self.utility_floor:
            self.stop_reason, self.stopped_at = "utility-guard", step
            return True
        self._last_good = (params, state, int(step))
        if self.monitoring and point["statistic"] <= self.threshold:
            self.stop_reason = "already-forgotten" if step == 0 else "reached"
            self.stopped_at = step
            return True
        return False

    def _check_data(self, params: PyTree, state: PyTree) -> int:
        """Held-out inputs fit the model, every label is one of its classes, inputs are finite;
        returns the number of classes."""
        from imu_jax import _checks

        shape = _checks.model_output_shape(self.model, params, state, self.forget_x, "forget")
        _checks.model_output_shape(self.model, params, state, self.held_x, "held_out")
        classes = int(shape[-1])
        for name, labels in (("forget", self.forget_y), ("held_out", self.held_y),
                             (f"held_out[{UTILITY_LABEL!r}]", self.utility_y)):
            _checks.check_labels_in_range(labels, classes, f"{name} labels",
                                          what=f"the model has {classes} classes")
        _checks.check_finite(self.held_x, "held_out")
        return classes

    def _floor(self, point: Mapping[str, float]) -> float:
        """The held-out accuracy the guard keeps above, from the first check (-inf: no guard)."""
        drop = self.rule.max_utility_drop
        if drop == _AUTO:
            drop = (default_utility_drop(_utility(point), len(self.held_y))
                    if self.removal == "sample" else None)
        return -math.inf if drop is None else _utility(point) - float(drop)

    def _show(self, point: Mapping[str, float], finite: bool) -> None:
        if not self._progress:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.cap, desc=self._label or "unlearn", unit="step",
                             leave=False)
        self._bar.n = point["step"]
        shown = {"forget_acc": f"{point['forget_acc']:.3f}",
                 "held_out_acc": f"{point['held_out_acc']:.3f}",
                 "stat": f"{point['statistic']:.3f}" if finite else "nan"}
        if "utility_acc" in point:
            shown["utility_acc"] = f"{point['utility_acc']:.3f}"
        if self.utility_floor not in (None, -math.inf):
            shown["floor"] = f"{self.utility_floor:.3f}"
        self._bar.set_postfix(**shown)

    # -- the loop protocol ---------------------------------------------------------------------
    def start(self, params: PyTree, state: PyTree, *, total_steps: int, step: int = 0) -> bool:
        """Before the first step (``step`` > 0 when resuming): records it; True when the target
        already holds."""
        self.cap = int(total_steps)
        if self.monitoring:
            num_classes = self._check_data(params, state)
            if self.threshold is None:  # class removal at chance: 1 / #classes
                self.threshold = 1.0 / num_classes
        if not self.monitoring:
            self._last_good = (params, state, int(step))
            return False
        return self._check(int(step), params, state)

    def after_step(self, step: int, params: PyTree, state: PyTree) -> bool:
        """After optimizer step ``step`` (1-based): checks every ``eval_every`` and at the cap."""
        if step % self.rule.eval_every and step < self.cap:
            return False
        if self._check(step, params, state):
            return True
        if step >= self.cap:
            self.stop_reason, self.stopped_at = ("cap" if self.monitoring else "fixed"), step
            return True
        return False

    def params_to_return(self, params: PyTree, state: PyTree = None) -> tuple[PyTree, PyTree]:
        """``(params, state)`` to hand back: after a divergence or the utility guard, those of the
        last check that was finite and within the guard."""
        self.close()
        if self.stop_reason in _ROLLED_BACK and self._last_good is not None:
            return self._last_good[0], self._last_good[1]
        return params, state

    def finish(self, steps_run: int) -> None:
        """Marks a loop that ran out of planned steps without a decision."""
        if self.stop_reason is None:
            self.stop_reason = "cap" if self.monitoring else "fixed"
            self.stopped_at = int(steps_run)
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def steps(self) -> int:
        """Optimizer steps whose result is handed back (the rolled-back step after divergence or
        the utility guard)."""
        if self.stop_reason in _ROLLED_BACK:
            return self._last_good[2] if self._last_good else 0
        return int(self.stopped_at or 0)

    def result(self) -> dict[str, Any]:
        """JSON-ready summary: stop reason and step, cap, removal kind, threshold, the curve."""
        out = {"stop_reason": self.stop_reason, "stopped_at": self.stopped_at, "cap": self.cap,
               "steps_kept": self.steps, "diverged": self.stop_reason == "diverged"}
        if self.monitoring:
            out.update({"removal": self.removal, "threshold": self.threshold,
                        "utility_floor": (None if self.utility_floor in (None, -math.inf)
                                          else self.utility_floor),
                        "statistic": "forget_acc" if self.removal == "class" else "membership_auc",
                        "eval_every": self.rule.eval_every, "curve": list(self.curve)})
        return out


def plot_curve(curve: list[Mapping[str, float]], path: str, *, title: str = "",
               threshold: float | None = None, statistic: str = "statistic",
               utility_floor: float | None = None) -> None:
    """Writes the per-check curve (forget acc, held-out acc, the stopping statistic; the utility
    guard's floor when there is one) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [p["forget_acc"] for p in curve], "-o", ms=3, label="forget accuracy")
    ax.plot(steps, [p["held_out_acc"] for p in curve], "-o", ms=3, label="held-out accuracy")
    if curve and "utility_acc" in curve[0]:
        ax.plot(steps, [p["utility_acc"] for p in curve], "-o", ms=3,
                label="held-out accuracy, true labels")
    if statistic != "forget_acc":
        ax.plot(steps, [p["statistic"] for p in curve], "-o", ms=3, label=statistic)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"stop at {statistic} ≤ "
                   f"{threshold:.3f}")
    if utility_floor is not None:
        ax.axhline(utility_floor, color="tab:red", ls=":", lw=1,
                   label=f"utility guard: held-out accuracy ≥ {utility_floor:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
