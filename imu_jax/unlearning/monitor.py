"""The retain-free stopping rule at work: a :class:`Monitor` checks a running loop every ``eval_every``
steps on the forget set and the held-out data, stops it, and rolls a diverged run back.

The rule itself (its statistics, thresholds and stop reasons) is :mod:`imu_jax.unlearning.stopping`.

Examples:
  >>> import jax.numpy as jnp, numpy as np
  >>> from imu_jax.unlearning.stopping import StopRule
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
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax.unlearning.stopping import (_AUTO, BY_FORGET_ACCURACY, UTILITY_LABEL,
                                         DivergenceWarning, PyTree, StopRule, default_auc_margin,
                                         default_utility_drop, infer_removal, membership_auc)


def _subset(arrays: Mapping[str, np.ndarray], limit: int, seed: int
            ) -> tuple[PyTree, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, utility_y, rows)`` of a fixed random subset of at most ``limit`` examples (``x``:
    one array or a dict of the inputs; ``rows``: their indices in ``arrays``)."""
    from imu_jax.unlearning.losses import input_and_labels

    x, y = input_and_labels(arrays)
    utility_y = np.asarray(arrays[UTILITY_LABEL]) if UTILITY_LABEL in arrays else y
    if len(utility_y) != len(y):
        raise ValueError(f"held_out[{UTILITY_LABEL!r}] has {len(utility_y)} labels for "
                         f"{len(y)} examples.")
    keep = np.arange(len(y))
    if len(y) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
        x, y, utility_y = jax.tree.map(lambda a: a[keep], x), y[keep], utility_y[keep]
    return x, y, utility_y, keep


@functools.lru_cache(maxsize=64)
def _jitted_eval(model):
    """One jitted check: per-example losses and predictions on the forget and the held-out
    data, and whether every parameter is finite (one dispatch and one transfer a check)."""
    from imu_jax.unlearning.losses import batch_loss

    def evaluate(params, state, forget_x, forget_y, held_x, held_y):
        outputs = []
        for x, y in ((forget_x, forget_y), (held_x, held_y)):
            logits, _ = model.apply(params, state, x, train=False)
            outputs.append((batch_loss(logits, y), jnp.argmax(logits, -1)))
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf))
                                    for leaf in jax.tree.leaves(params)]))
        return outputs, finite

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
        self._resumed = False  # resume(): the checks before the checkpoint are in self.curve
        if not self.monitoring:
            return
        if held_out is None:
            raise ValueError("Monitor needs held_out data (a split the model never trained on); "
                             "got None. Use Monitor.fixed() for a fixed-length loop.")
        self.forget_x, self.forget_y, _, self.forget_rows = _subset(
            forget, self.rule.max_eval_examples, self.rule.seed)
        self.held_x, self.held_y, self.utility_y, _ = _subset(
            held_out, self.rule.max_eval_examples, self.rule.seed + 1)
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
                self.held_x = jax.tree.map(lambda a: a[other], self.held_x)
                self.held_y = self.held_y[other]
                self.utility_y = self.utility_y[other]
        if self.removal in BY_FORGET_ACCURACY:
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

    def use_features(self, head_model, forget_features: PyTree, feature_fn, params: PyTree,
                     state: PyTree) -> None:
        """Evaluates from now on with ``head_model`` (the head alone, over the body's cached
        features): the forget set's checks read ``forget_features`` (features of every forget
        example, in order), the held-out checks the features ``feature_fn(held_x)`` computed
        here, once. The data is first checked against the full model (shapes, labels, finite
        inputs), so errors name the user's data as before; the checks' numbers are the full
        model's to float rounding."""
        if not self.monitoring:
            return
        self._check_data(params, state)
        self.forget_x = jax.tree.map(lambda a: a[self.forget_rows], forget_features)
        self.held_x = feature_fn(self.held_x)
        self.model = head_model

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, params: PyTree, state: PyTree) -> dict[str, float]:
        """Forget / held-out accuracy and mean loss, the statistic, and finiteness."""
        ((f_loss, f_pred), (h_loss, h_pred)), finite = jax.device_get(_jitted_eval(self.model)(
            params, state, self.forget_x, self.forget_y, self.held_x, self.held_y))
        finite = bool(finite) and bool(np.all(np.isfinite(f_loss)))
        point = {"forget_acc": float(np.mean(f_pred == self.forget_y)),
                 "held_out_acc": float(np.mean(h_pred == self.held_y)),
                 "forget_loss": float(np.mean(f_loss)), "held_out_loss": float(np.mean(h_loss))}
        if self.has_utility_labels:
            point["utility_acc"] = float(np.mean(h_pred == self.utility_y))
        if not finite:
            point["statistic"] = float("nan")
        elif self.removal in BY_FORGET_ACCURACY:
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
        from imu_jax.unlearning.losses import output_shape

        shape = output_shape(self.model, params, state, self.forget_x, "forget")
        output_shape(self.model, params, state, self.held_x, "held_out")
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
                    if self.removal in ("sample", "subclass") else None)
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

    # -- checkpoints ---------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """What a checkpointed loop saves besides its arrays, so that a resumed run's curve and
        utility floor are the uninterrupted run's (JSON; :meth:`resume` reads it back)."""
        floor = self.utility_floor
        return {"curve": [dict(p) for p in self.curve],
                "utility_floor": None if floor is None or math.isinf(floor) else floor,
                "floor_set": floor is not None}

    def resume(self, progress: Mapping[str, Any] | None) -> None:
        """Continues from :meth:`progress` saved with the checkpoint a loop resumes from: the
        checks before it and the utility floor of step 0. Call before :meth:`start` (with the
        resumed step). ``None`` (an older checkpoint, or none) changes nothing.

        >>> m = Monitor.fixed(); m.resume({"curve": [{"step": 0}], "utility_floor": None,
        ...                                "floor_set": True})
        >>> m.curve, m.utility_floor
        ([{'step': 0}], -inf)
        """
        if not progress:
            return
        self.curve = [dict(p) for p in progress.get("curve", [])]
        if progress.get("floor_set"):
            floor = progress.get("utility_floor")
            self.utility_floor = -math.inf if floor is None else float(floor)
        self._resumed = True

    # -- the loop protocol ---------------------------------------------------------------------
    def start(self, params: PyTree, state: PyTree, *, total_steps: int, step: int = 0) -> bool:
        """Before the first step (``step`` > 0 when resuming): records it; True when the target
        already holds. A run resumed with :meth:`resume` checks ``step`` only when the
        uninterrupted run did (every ``eval_every`` steps), so its curve is that run's."""
        self.cap = int(total_steps)
        if self.monitoring:
            num_classes = self._check_data(params, state)
            if self.threshold is None:  # class removal at chance: 1 / #classes
                self.threshold = 1.0 / num_classes
        resumed_off_check = (self._resumed and step > 0
                             and step % self.rule.eval_every and step < self.cap)
        if not self.monitoring or resumed_off_check:
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
                        "statistic": ("forget_acc" if self.removal in BY_FORGET_ACCURACY
                                      else "membership_auc"),
                        "eval_every": self.rule.eval_every, "curve": list(self.curve)})
        return out
