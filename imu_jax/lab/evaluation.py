"""Scoring a model of an experiment: predictions on every split, UA/RA/TA/MIA (or the sequence
metrics), the Avg. Gap to Retrain, the held-out data a retain-free method may read, and the
per-example traces.

Held-out data has three disjoint roles (issue 26): the retain-free stopping rule
(:func:`held_out_for`) and the oracle tuning (scored on :func:`validation_view`) read the
VALIDATION split; TA and the membership attack's non-members of every reported run
(:func:`evaluate` on the splits themselves) use the TEST split, which neither saw."""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import numpy as np

from imu_jax import metrics as metrics_lib
from imu_jax.lab.models_cache import PyTree, TrainedModel
from imu_jax.unlearning.losses import input_and_labels


CLASS_KINDS = ("class", "classes", "superclass")


SAMPLE_KINDS = ("random", "indices", "subclass", "mislabeled")


@functools.lru_cache(maxsize=64)
def _jitted_logits(model):
    return jax.jit(lambda p, s, xb: model.apply(p, s, xb, train=False)[0])


def predict(model, params: PyTree, state: PyTree, x: np.ndarray, *,
            batch_size: int = 1024) -> np.ndarray:
    """Model logits for ``x`` in inference mode, batched, as float32 numpy (an empty ``x`` gives
    an empty array of the logits' shape, e.g. ``[0, classes]``, so metrics see no examples rather
    than a malformed array)."""
    apply = _jitted_logits(model)
    if not len(x):  # the shape of one example's logits (abstract: some models cannot take N=0)
        one = jax.eval_shape(apply, params, state, jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype))
        return np.zeros((0, *one.shape[1:]), np.float32)
    return np.concatenate([np.asarray(apply(params, state, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def _splits_dict(splits) -> dict[str, Mapping[str, np.ndarray]]:
    names = ("forget", "retain", "test", "forget_test", "control", "control_test")
    return {n: getattr(splits, n, None) for n in names if getattr(splits, n, None) is not None}


def model_outputs(trained: TrainedModel, params: PyTree, state: PyTree, splits
                  ) -> dict[str, np.ndarray]:
    """Logits of the model on every evaluation split."""
    return {name: predict(trained.model, params, state, input_and_labels(arrays)[0])
            for name, arrays in _splits_dict(splits).items()}


def _token_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    mask = labels >= 0
    return float(np.mean(np.argmax(logits, -1)[mask] == labels[mask]))


def evaluate(outputs: Mapping[str, np.ndarray], splits,
             reference: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Metrics of one model from its logits (``reference`` = Retrain's logits, for distances).

    Classification: UA, RA, TA, FA, the five MIA variants, forget-test accuracy ``fta``,
    ``w1_retrain``, and where the splits have a ``control_test`` (``subclass:K``: the other
    superclasses' test images) its accuracy ``cta``, which Avg. Gap leaves out. Sequences:
    next-token UA/RA/TA, per-token KL to Retrain and to the true transitions on retain-test
    (``test``), forget-test and forget2-test (``control_test``).
    """
    labels = {name: arrays["label"] for name, arrays in _splits_dict(splits).items()}
    if labels["forget"].ndim == 1:
        probs = {name: metrics_lib.softmax(logits) for name, logits in outputs.items()}
        result = metrics_lib.classification_metrics(
            {k: probs[k] for k in ("forget", "retain", "test")}, labels)
        if "forget_test" in probs and len(labels["forget_test"]):
            result["fta"] = metrics_lib.accuracy(probs["forget_test"], labels["forget_test"])
        if "control_test" in probs and len(labels["control_test"]):
            result["cta"] = metrics_lib.accuracy(probs["control_test"], labels["control_test"])
        if reference is not None:
            result["w1_retrain"] = metrics_lib.prediction_wasserstein(
                probs["test"], metrics_lib.softmax(reference["test"]))
        return result
    result = {"ua": 1 - _token_accuracy(outputs["forget"], labels["forget"]),
              "ra": _token_accuracy(outputs["retain"], labels["retain"]),
              "ta": _token_accuracy(outputs["test"], labels["test"])}
    result["fa"] = 1 - result["ua"]
    transitions = getattr(splits, "transitions", None) or {}
    inputs = {name: input_and_labels(arrays)[0] for name, arrays in _splits_dict(splits).items()}
    for split, chain in (("test", "retain"), ("forget_test", "forget"), ("control_test", "control")):
        if split not in outputs:
            continue
        if reference is not None:
            result[f"kl_retrain_{split}"] = metrics_lib.token_kl(reference[split], outputs[split],
                                                                 labels[split])
        if chain in transitions:
            result[f"kl_true_{split}"] = metrics_lib.transition_kl(
                transitions[chain], inputs[split], outputs[split], labels[split])
    return result


def collapsed(metrics: Mapping[str, float], splits) -> bool | None:
    """Whether a classification run is collapsed (``imu_jax.methods.base.is_collapsed``): TA
    under twice the test split's majority-class rate, or, where the splits have a control split
    (``subclass:K``: the other superclasses), its accuracy ``cta`` under twice that split's;
    ``None`` for sequences.

    >>> import types
    >>> s = types.SimpleNamespace(test={"label": np.arange(4)}, num_classes=4,
    ...                           control_test={"label": np.array([0, 0, 1, 1])})
    >>> collapsed({"ta": 0.9}, s), collapsed({"ta": 0.4}, s), collapsed({"ta": 0.9, "cta": 0.9}, s)
    (False, True, True)
    """
    from imu_jax.methods.base import is_collapsed

    labels = np.asarray(splits.test["label"])
    if labels.ndim != 1 or "ta" not in metrics:
        return None
    flag = is_collapsed(metrics["ta"], labels, getattr(splits, "num_classes", None))
    if "cta" in metrics:
        flag = flag or is_collapsed(metrics["cta"], np.asarray(splits.control_test["label"]))
    return bool(flag)


def gap_to_retrain(metrics: Mapping[str, float], retrain_metrics: Mapping[str, float]) -> float:
    """Avg. Gap. Classification: over UA, RA, TA, MIA-efficacy. Sequences: the mean per-token KL
    to Retrain on retain-test and forget-test (already a distance to Retrain).

    >>> gap_to_retrain({"kl_retrain_test": 0.1, "kl_retrain_forget_test": 0.3}, {})
    0.2
    """
    if "kl_retrain_test" in metrics:
        return float(np.mean([metrics["kl_retrain_test"], metrics["kl_retrain_forget_test"]]))
    return metrics_lib.avg_gap(metrics, retrain_metrics)


def validation_view(splits):
    """``splits`` as the tuning sees them: every held-out split replaced by its validation part
    (``test`` ← ``validation``, ``forget_test`` ← ``forget_validation``, ``control_test`` ←
    ``control_validation``), so that :func:`model_outputs` / :func:`evaluate` on the view score
    TA, the membership attack and the distances on validation data only. A shallow copy; the
    validation attributes of the view are ``None``.

    >>> import types, numpy as np
    >>> s = types.SimpleNamespace(test={"label": np.arange(2)}, validation={"label": np.arange(3)})
    >>> len(validation_view(s).test["label"]), validation_view(s).validation
    (3, None)
    """
    import copy

    from imu_jax.data.validation import HELD_OUT_SPLITS

    if getattr(splits, "validation", None) is None:
        raise ValueError("these splits have no validation split: carve one with "
                         "imu_jax.data.carve_validation (the test split is kept for TA and the "
                         "membership attack).")
    view = copy.copy(splits)
    for name, val_name in HELD_OUT_SPLITS.items():
        if getattr(splits, val_name, None) is not None:
            setattr(view, name, getattr(splits, val_name))
            setattr(view, val_name, None)
    return view


def with_validation(splits, seed: int = 0):
    """``splits`` if they have a validation split, else a copy with one carved from the test split
    (``imu_jax.data.carve_validation``: :data:`~imu_jax.data.VALIDATION_FRACTION`, stratified by
    label, ``seed``)."""
    if getattr(splits, "validation", None) is not None:
        return splits
    from imu_jax.data.validation import VALIDATION_FRACTION, carve_validation

    return carve_validation(splits, VALIDATION_FRACTION, seed)


def held_out_for(splits, forget: str | None, *, seed: int = 0
                 ) -> tuple[Mapping[str, np.ndarray], str] | None:
    """``(held_out, removal)`` for the retain-free stopping rule, from the forget spec; ``None``
    where the rule does not apply (sequences, no forget spec). The held-out data is always the
    VALIDATION split (``splits.validation``, see ``imu_jax.data.carve_validation``), never the
    test split on which TA and the membership attack are measured:

    * ``class:``, ``classes:``, ``superclass:`` → the validation split (which, as the test split,
      then holds only the remaining classes), class removal;
    * ``random:``, ``indices:`` → the validation split, sample removal;
    * ``subclass:`` → the validation split (the sibling fine classes of the forgotten one, under
      the same coarse label), subclass removal: the forget accuracy falls to chance while the
      guard keeps the siblings' accuracy (``imu_jax.unlearning.stopping``; the forgotten
      subclass's own validation images, ``forget_validation``, are no reference: Retrain
      misclassifies them too);
    * ``mislabeled:`` → the validation split relabelled the way the forget set was (a uniformly
      random other class, seeded): an unseen example carrying a wrong label is what the
      corrupted training examples look like to a model that never saw them; sample removal. The
      true labels ride along under ``stopping.UTILITY_LABEL`` for the utility guard.

    Raises ``ValueError`` for splits without a validation split.

    >>> import types, numpy as np
    >>> splits = types.SimpleNamespace(test={"image": np.zeros((4, 2)), "label": np.arange(4)},
    ...                                validation={"image": np.ones((3, 2)), "label": np.arange(3)},
    ...                                forget={"label": np.array([1])}, num_classes=4)
    >>> held, removal = held_out_for(splits, "random:0.1")
    >>> removal, len(held["label"]), held is splits.validation
    ('sample', 3, True)
    """
    from imu_jax.data import parse_forget_spec

    if forget is None or splits.forget["label"].ndim != 1:
        return None
    kind = parse_forget_spec(forget).kind
    if kind not in CLASS_KINDS + SAMPLE_KINDS:
        return None
    validation = validation_view(splits)  # raises without a validation split
    if kind in CLASS_KINDS:
        return validation.test, "class"
    if kind == "subclass":
        return validation.test, "subclass"
    if kind == "mislabeled":
        from imu_jax.methods.random_label import random_wrong_labels
        from imu_jax.unlearning.stopping import UTILITY_LABEL

        held = dict(validation.test)
        held[UTILITY_LABEL] = held["label"]  # the utility guard measures with the true labels
        held["label"] = random_wrong_labels(held["label"], splits.num_classes, seed=seed)
        return held, "sample"
    return validation.test, "sample"


# The per-step trace evaluates at most this many examples of each split (a seeded random subset,
# the same at every step): its cost stays bounded on large test splits (Markov: 5,000 sequences
# per step otherwise). The final metrics of every run use every example.
TRACE_EXAMPLES = 512


def trace_rows(num_examples: int, limit: int | None = None) -> np.ndarray:
    """The rows of a split that the per-step trace evaluates: all of them when there are at most
    ``limit`` (default :data:`TRACE_EXAMPLES`), else ``limit`` of them drawn without replacement
    (seed 0), in order.

    >>> trace_rows(3).tolist(), len(trace_rows(2000)), bool(np.all(np.diff(trace_rows(2000)) > 0))
    ([0, 1, 2], 512, True)
    """
    limit = TRACE_EXAMPLES if limit is None else int(limit)
    if num_examples <= limit:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(0).choice(num_examples, limit, replace=False))


def trace_metrics(outputs: Mapping[str, np.ndarray], splits,
                  reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The cheap per-step metrics of :func:`run_experiment`'s ``trace_every``: sequences, the
    per-token KL to Retrain on every test split; classes, UA and TA (no attack).

    >>> import types
    >>> s = types.SimpleNamespace(forget={"label": np.array([0])}, test={"label": np.array([1])})
    >>> trace_metrics({"forget": np.array([[0.0, 1.0]]), "test": np.array([[0.0, 1.0]])}, s, {})
    {'ua': 1.0, 'ta': 1.0}
    """
    labels = {name: arrays["label"] for name, arrays in _splits_dict(splits).items()}
    if labels["forget"].ndim == 1:
        return {"ua": 1 - _token_accuracy(outputs["forget"], labels["forget"]),
                "ta": _token_accuracy(outputs["test"], labels["test"])}
    return {f"kl_retrain_{split}": metrics_lib.token_kl(reference[split], outputs[split],
                                                        labels[split])
            for split in ("test", "forget_test", "control_test") if split in outputs}


def _input_normalization(splits):
    norm = getattr(splits, "info", {}).get("normalization")
    return None if norm is None else tuple(tuple(float(v) for v in part) for part in norm)
