"""The retain-free stopping rule and the divergence guard (imu_jax.unlearning.stopping) on constructed cases."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import methods
from imu_jax.lab import report
from imu_jax.methods.base import gradient_loop
from imu_jax.unlearning import losses
from imu_jax.unlearning import monitor as monitor_lib
from imu_jax.unlearning import stopping
from imu_jax.unlearning.config import UnlearnConfig
from imu_jax.unlearning.loop import unlearn

import tiny_models


@pytest.fixture(scope="module")
def trained():
    model, params, state, data = tiny_models.trained_classifier(0, 300)
    keep = data["test"]["label"] != 3
    held_out = {k: v[keep] for k, v in data["test"].items()}  # unseen data of the kept classes
    return model, params, state, data, held_out


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def _same(a, b):
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_membership_auc_is_the_pairwise_probability():
    rng = np.random.default_rng(0)
    f, h = rng.normal(size=37).round(1), rng.normal(0.3, 1, 53).round(1)  # with ties
    pairs = (f[:, None] < h[None]).mean() + 0.5 * (f[:, None] == h[None]).mean()
    assert stopping.membership_auc(f, h) == pytest.approx(pairs, abs=1e-12)
    assert stopping.membership_auc(h, f) == pytest.approx(1 - pairs, abs=1e-12)
    with pytest.raises(ValueError, match="non-empty"):
        stopping.membership_auc(np.zeros(0), h)


def test_default_auc_margin_is_the_null_critical_value():
    """Under the null the AUC of two same-distribution samples exceeds 0.5 + margin ~5 % of the
    time (one-sided 5 % level)."""
    rng = np.random.default_rng(1)
    margin = stopping.default_auc_margin(60, 90)
    aucs = [stopping.membership_auc(rng.normal(size=60), rng.normal(size=90)) for _ in range(2000)]
    assert 0.03 < np.mean(np.array(aucs) > 0.5 + margin) < 0.07


def test_removal_kind_is_inferred_from_the_held_out_labels(trained):
    _, _, _, data, held_out = trained
    assert stopping.infer_removal(data["forget"]["label"], held_out["label"]) == "class"
    assert stopping.infer_removal(data["train"]["label"], data["test"]["label"]) == "sample"
    # a whole class against a test split that still holds it: ambiguous, so the caller decides
    with pytest.raises(ValueError, match="removal='class'"):
        stopping.infer_removal(data["forget"]["label"], data["test"]["label"])


def test_class_removal_against_a_full_test_split_leaves_the_class_out(trained):
    """The README call ``unlearn(..., held_out=test)`` with the forgotten class still in
    ``test``: ``auto`` refuses to guess; ``removal="class"`` forgets the class and scores the
    remaining classes only."""
    model, params, state, data, held_out = trained
    with pytest.raises(ValueError, match="cannot tell the removal kind"):
        unlearn(model, params, data["forget"], state=state, held_out=data["test"])
    new, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=0.05),
                       state=state, held_out=data["test"],
                       stop_rule=stopping.StopRule(removal="class"))
    assert rep.stop_reason == "reached" and rep.stopping["removal"] == "class"
    assert tiny_models.accuracy(model, new, state, data["forget"]) <= 0.25
    assert rep.stopping["curve"][0]["held_out_acc"] == tiny_models.accuracy(
        model, params, state, held_out)  # the test split without class 3


def test_subclass_removal_targets_forget_accuracy_and_guards_the_siblings(trained):
    """A subclass shares its label with held-out siblings that stay: nothing is left out of the
    held-out data (class removal would drop every sibling), the target is chance forget
    accuracy, and the guard is on by default and reads the held-out rows."""
    model, params, state, data, others = trained
    # held-out rows that look like the forget set (label 3 in the test split): ascent lowers
    # both together and the default guard stops it; other rows under a looser tolerance: the
    # target is reached
    for held, drop, reason in ((data["test"], "auto", "utility-guard"),
                               (others, 0.3, "reached")):
        new, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=0.05),
                           state=state, held_out=held,
                           stop_rule=stopping.StopRule(removal="subclass", max_utility_drop=drop))
        result, curve = rep.stopping, rep.stopping["curve"]
        assert result["removal"] == "subclass" and result["statistic"] == "forget_acc"
        assert result["threshold"] == 0.25  # chance over the model's 4 classes
        start = tiny_models.accuracy(model, params, state, held)
        assert curve[0]["held_out_acc"] == start  # every held-out row, label 3 included
        if drop == "auto":  # on by default, at the noise level, as for sample removal
            drop = stopping.default_utility_drop(start, len(held["label"]))
        assert result["utility_floor"] == pytest.approx(start - drop)
        assert all(p["statistic"] == p["forget_acc"] for p in curve)
        assert rep.stop_reason == reason and rep.steps > 0
        kept = [p for p in curve if p["step"] == rep.steps][0]  # what was handed back
        assert tiny_models.accuracy(model, new, state, held) == kept["held_out_acc"]
        assert kept["held_out_acc"] >= result["utility_floor"]
        if reason == "reached":
            assert kept["forget_acc"] <= 0.25
        else:
            assert curve[-1]["held_out_acc"] < result["utility_floor"]
            assert kept["forget_acc"] > 0.25


def test_bad_held_out_data_is_named(trained):
    model, params, state, data, held_out = trained
    wide = {**held_out, "image": np.concatenate([held_out["image"]] * 2, axis=1)}
    with pytest.raises(ValueError, match="held_out: inputs"):
        unlearn(model, params, data["forget"], state=state, held_out=wide)
    for bad in (7, -1):
        labels = held_out["label"].copy()
        labels[0] = bad
        with pytest.raises(ValueError, match=r"held_out labels out of range: .*model has 4 classes"):
            unlearn(model, params, data["forget"], state=state,
                    held_out={**held_out, "label": labels}, stop_rule=stopping.StopRule(
                        removal="class"))
    nan = {**held_out, "image": held_out["image"].copy()}
    nan["image"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        unlearn(model, params, data["forget"], state=state, held_out=nan)


def test_a_model_that_already_forgot_stops_at_step_zero(trained):
    model, params, state, data, held_out = trained
    forgot = jax.tree.map(lambda x: x, params)
    forgot["head"] = {**params["head"], "bias": params["head"]["bias"].at[3].set(-100.0)}
    assert tiny_models.accuracy(model, forgot, state, data["forget"]) == 0.0
    new, rep = unlearn(model, forgot, data["forget"], UnlearnConfig(learning_rate=0.1),
                       state=state, held_out=held_out)
    assert rep.stop_reason == "already-forgotten" and rep.steps == 0
    assert _same(new, forgot)
    assert [p["step"] for p in rep.stopping["curve"]] == [0]
    # sample removal: a forget set indistinguishable from held-out data (the same examples)
    _, rep = unlearn(model, params, held_out, UnlearnConfig(learning_rate=0.1), state=state,
                     held_out=held_out, stop_rule=stopping.StopRule(removal="sample"))
    assert rep.stop_reason == "already-forgotten" and rep.steps == 0
    assert rep.stopping["curve"][0]["statistic"] == pytest.approx(0.5)


def test_a_model_that_never_forgets_hits_the_cap_and_says_so(trained):
    model, params, state, data, held_out = trained
    rule = stopping.StopRule(max_epochs=3, eval_every=2)
    new, rep = unlearn(model, params, data["forget"],
                       UnlearnConfig(learning_rate=0.0, batch_size=8), state=state,
                       held_out=held_out, stop_rule=rule)
    per_epoch = -(-rep.num_kept // 8)
    assert rep.stop_reason == "cap" and rep.steps == 3 * per_epoch == rep.stopping["cap"]
    steps = [p["step"] for p in rep.stopping["curve"]]
    assert steps == sorted(set(range(0, 3 * per_epoch, 2)) | {3 * per_epoch})
    assert rep.stopping["curve"][-1]["forget_acc"] == 1.0
    assert _same(new["body"], params["body"])


def test_class_rule_stops_at_the_first_check_below_chance(trained):
    model, params, state, data, held_out = trained
    new, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=0.05),
                       state=state, held_out=held_out)
    curve = rep.stopping["curve"]
    assert rep.stop_reason == "reached" and rep.stopping["threshold"] == 0.25  # 4 classes
    assert curve[-1]["forget_acc"] <= 0.25 < min(p["forget_acc"] for p in curve[:-1])
    assert rep.steps == curve[-1]["step"]
    assert tiny_models.accuracy(model, new, state, data["forget"]) == curve[-1]["forget_acc"]
    assert tiny_models.accuracy(model, new, state, held_out) == curve[-1]["held_out_acc"]


def test_fixed_length_mode_is_unchanged_without_held_out(trained):
    model, params, state, data, _ = trained
    _, rep = unlearn(model, params, data["forget"], UnlearnConfig(epochs=3, batch_size=8),
                     state=state)
    assert rep.stop_reason == "fixed" and rep.steps == 3 * -(-rep.num_kept // 8)
    with pytest.raises(ValueError, match="held_out"):
        unlearn(model, params, data["forget"], state=state, stop_rule=stopping.StopRule())


def test_divergence_rolls_back_with_a_warning_and_is_reported(trained):
    """Issue 9 §6: lr 1e6 used to return an all-NaN head scored as forgotten."""
    model, params, state, data, _ = trained
    with pytest.warns(stopping.DivergenceWarning, match="diverged"):
        new, rep = unlearn(model, params, data["forget"],
                           UnlearnConfig(learning_rate=1e6, epochs=20, batch_size=32),
                           state=state)
    assert rep.stop_reason == "diverged" and rep.stopping["diverged"]
    assert rep.stopping["stopped_at"] > rep.steps  # rolled back to an earlier, finite step
    assert _finite(new)


def test_gradient_loop_divergence_and_monitor(trained):
    model, params, state, data, held_out = trained

    def ascent(p, s, batch):
        logits, _ = model.apply(p, s, batch["x"])
        return -jnp.mean(losses.batch_loss(logits, batch["y"]))

    arrays = {"x": data["forget"]["image"], "y": data["forget"]["label"]}
    with pytest.warns(stopping.DivergenceWarning):
        new, steps = gradient_loop(model, params, state, arrays, ascent, learning_rate=1e6,
                                   epochs=20, batch_size=32, seed=0)
    assert _finite(new) and steps < 40
    monitor = monitor_lib.Monitor(model, data["forget"], held_out, stopping.StopRule(max_epochs=30))
    new, steps = gradient_loop(model, params, state, arrays, ascent, learning_rate=0.05,
                               epochs=1, batch_size=16, seed=0, monitor=monitor)
    result = monitor.result()
    assert result["stop_reason"] == "reached" and steps == result["stopped_at"] > 1
    assert tiny_models.accuracy(model, new, state, data["forget"]) <= 0.25


def test_methods_use_the_rule_when_the_task_carries_one(trained):
    model, params, state, data, held_out = trained
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               num_classes=4, held_out=held_out, stop_rule=stopping.StopRule())
    for name, lr in (("imu", 0.05), ("ga", 0.5), ("random_label_forget_only", 0.5)):
        method = methods.get_method(name)
        out = method.run(task, method.hparams({"learning_rate": lr}), 0)
        assert out.info["stop_reason"] == "reached", name
        assert out.info["curve"][-1]["forget_acc"] <= 0.25
        assert tiny_models.accuracy(model, out.params, state, data["forget"]) <= 0.25


def test_diverged_runs_are_shown_and_never_scored():
    def run(seed, ua, diverged=False):
        out = {"method": "ga", "seed": seed, "role": "retain_free", "hparams": {},
               "metrics": {"ua": ua, "ra": 1.0, "ta": 0.9, "mia_efficacy": ua},
               "avg_gap": 1 - ua, "seconds": 1.0, "needs": "forget set only",
               "info": {"stop_reason": "diverged" if diverged else "reached"}}
        return {**out, "diverged": True} if diverged else out

    results = {"config": {}, "runs": [run(0, 0.5), run(1, 1.0, diverged=True)]}
    assert report.summarize(results["runs"])["ga (retain-free)"]["ua"] == (0.5, 0.0, 1)
    text = report.results_markdown(results)
    assert "| ga (retain-free) |" in text and "reached×1, diverged×1" in text
    only_diverged = {"config": {}, "runs": [run(1, 1.0, diverged=True)]}
    row = [line for line in report.table(only_diverged, report.CLASSIFICATION_COLUMNS).splitlines()
           if line.startswith("| ga")][0]
    assert row.count("diverged") == 4  # UA, RA, TA, MIA cells


def test_stop_rule_rejects_bad_settings():
    with pytest.raises(ValueError, match="removal"):
        stopping.StopRule(removal="classes")
    with pytest.raises(ValueError, match="eval_every"):
        stopping.StopRule(eval_every=0)


# -- the utility guard -------------------------------------------------------------------------
def _relabelled_test(data):
    """The test split as ``mislabeled:`` hands it to the rule: wrong labels for the statistic,
    the true ones under UTILITY_LABEL for the guard. Forget losses stay far below these held-out
    losses until the model is broken, so only the guard can stop a fast ascent in time."""
    held = dict(data["test"])
    held[stopping.UTILITY_LABEL] = held["label"]
    held["label"] = (held["label"] + 1) % 4
    return held


def _sample_removal(trained, lr=0.5, **rule):
    model, params, state, data, _ = trained
    return unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=lr, batch_size=8),
                   state=state, held_out=_relabelled_test(data),
                   stop_rule=stopping.StopRule(removal="sample", max_epochs=20, **rule))


def test_utility_guard_hands_back_the_last_check_within_the_tolerance(trained):
    model, params, state, data, _ = trained
    new, rep = _sample_removal(trained)
    curve, result = rep.stopping["curve"], rep.stopping
    start = curve[0]["utility_acc"]
    assert start == tiny_models.accuracy(model, params, state, data["test"])  # true labels
    assert curve[0]["held_out_acc"] == tiny_models.accuracy(
        model, params, state, {"image": data["test"]["image"],
                               "label": _relabelled_test(data)["label"]})
    assert result["utility_floor"] == pytest.approx(
        start - stopping.default_utility_drop(start, len(data["test"]["label"])))
    assert rep.stop_reason == "utility-guard"
    assert curve[-1]["utility_acc"] < result["utility_floor"]  # the check that tripped it
    assert all(p["statistic"] > result["threshold"] for p in curve)  # the target never held
    assert 0 < rep.steps < result["stopped_at"] == curve[-1]["step"]
    kept = [p for p in curve if p["step"] == rep.steps][0]  # what was handed back
    assert kept["utility_acc"] >= result["utility_floor"]
    assert tiny_models.accuracy(model, new, state, data["test"]) == kept["utility_acc"]
    assert tiny_models.accuracy(model, new, state, data["forget"]) == kept["forget_acc"]


def test_utility_guard_wins_over_a_target_reached_by_breaking_the_model(trained):
    model, params, state, data, _ = trained
    new, rep = _sample_removal(trained, lr=2.0)
    last = rep.stopping["curve"][-1]
    assert last["statistic"] <= rep.stopping["threshold"]  # "forgotten" ...
    assert last["utility_acc"] < rep.stopping["utility_floor"]  # ... by a broken model
    assert rep.stop_reason == "utility-guard" and rep.steps == last["step"] - 1
    assert tiny_models.accuracy(model, new, state, data["test"]) >= rep.stopping["utility_floor"]


def test_utility_guard_can_be_turned_off_and_set(trained):
    _, rep = _sample_removal(trained, max_utility_drop=None)
    assert rep.stop_reason != "utility-guard" and rep.stopping["utility_floor"] is None
    floor_guarded = _sample_removal(trained)[1].stopping["utility_floor"]
    assert min(p["utility_acc"] for p in rep.stopping["curve"]) < floor_guarded
    # a zero tolerance that the first step already breaks: the model comes back unchanged
    model, params, state, data, _ = trained
    new, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=5.0),
                       state=state, held_out=data["test"],
                       stop_rule=stopping.StopRule(removal="sample", max_utility_drop=0.0))
    assert rep.stop_reason == "utility-guard" and rep.steps == 0 and _same(new, params)


def test_class_removal_has_no_guard_unless_asked(trained):
    model, params, state, data, held_out = trained
    _, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=0.05),
                     state=state, held_out=held_out)
    assert rep.stop_reason == "reached" and rep.stopping["utility_floor"] is None
    _, rep = unlearn(model, params, data["forget"], UnlearnConfig(learning_rate=0.05),
                     state=state, held_out=held_out,
                     stop_rule=stopping.StopRule(max_utility_drop=0.0))
    start = rep.stopping["curve"][0]["held_out_acc"]
    assert rep.stopping["utility_floor"] == start
    kept = [p for p in rep.stopping["curve"] if p["step"] == rep.steps][0]
    assert kept["held_out_acc"] >= start
    if rep.stop_reason == "utility-guard":
        assert rep.stopping["curve"][-1]["held_out_acc"] < start
    else:
        assert rep.stop_reason == "reached"
        assert all(p["held_out_acc"] >= start for p in rep.stopping["curve"])


def test_utility_labels_must_match_the_held_out_rows(trained):
    model, _, _, data, _ = trained
    held = _relabelled_test(data)
    bad = {**held, stopping.UTILITY_LABEL: held[stopping.UTILITY_LABEL][:3]}
    with pytest.raises(ValueError, match="utility_label"):
        monitor_lib.Monitor(model, data["forget"], bad, stopping.StopRule(removal="sample"))


def test_gradient_baselines_obey_the_guard(trained):
    model, params, state, data, _ = trained
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               num_classes=4, held_out=_relabelled_test(data),
                               stop_rule=stopping.StopRule(removal="sample", max_epochs=20))
    method = methods.get_method("ga")
    out = method.run(task, method.hparams({"learning_rate": 2.0}), 0)
    assert out.info["stop_reason"] == "utility-guard"
    kept = [p for p in out.info["curve"] if p["step"] == out.info["steps_kept"]][0]
    assert tiny_models.accuracy(model, out.params, out.state, data["test"]) == kept["utility_acc"]
    assert kept["utility_acc"] >= out.info["utility_floor"]


def test_default_utility_drop_is_the_resampling_noise_level():
    """An accuracy p measured on n fresh examples falls more than the tolerance below p ~5 % of
    the time."""
    rng = np.random.default_rng(2)
    p, n = 0.7, 400
    drop = stopping.default_utility_drop(p, n)
    below = np.mean(rng.binomial(n, p, 20000) / n < p - drop)
    assert 0.03 < below < 0.065
    with pytest.raises(ValueError, match="max_utility_drop"):
        stopping.StopRule(max_utility_drop=-0.1)
    with pytest.raises(ValueError, match="max_utility_drop"):
        stopping.StopRule(max_utility_drop="loose")
