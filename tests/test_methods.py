"""Tests for imu_jax.methods: the registry and that each baseline does what its docstring says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_models
from imu_jax import methods
from imu_jax.methods import base, boundary_shrink, npo, random_label, ssd


@pytest.fixture(scope="module")
def task():
    model, params, state, data = tiny_models.trained_classifier(0, 40)
    return methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               retain=data["retain"], train=data["train"], num_classes=4,
                               retrain_fn=lambda seed: model.init(seed))


def _forget_accuracy(task, output):
    return tiny_models.accuracy(task.model, output.params, output.state, task.forget)


def test_registry_lists_every_method_with_its_data_needs():
    names = methods.available()
    assert {"imu", "imu_batch", "imu_random", "ga_head", "ga", "random_label_forget_only",
            "random_label_with_retain", "boundary_shrink", "boundary_shrink_runner_up", "npo",
            "ssd", "finetune", "retrain"} <= set(names)
    allowed = {base.FORGET_ONLY, base.FORGET_AND_ORIGINAL, base.FULL_SET_STATISTICS,
               base.RETAIN_SET, base.FORGET_AND_RETAIN, base.FORGET_AND_AUXILIARY}
    for name in names:
        method = methods.get_method(name)
        assert method.needs in allowed and method.summary
        for key in method.grid:
            assert key in method.defaults, (name, key)
    assert {methods.get_method(n).reference
            for n in ("retrain", "finetune", "random_label_with_retain")} == {True}


def test_unknown_method_and_hparam_are_errors():
    with pytest.raises(ValueError, match="unknown method 'sgd'.*imu"):
        methods.get_method("sgd")
    with pytest.raises(ValueError, match="no hyperparameter"):
        methods.get_method("ga").hparams({"lr": 0.1})


@pytest.mark.parametrize("name, overrides", [
    ("imu", {"learning_rate": 0.1}),
    ("ga_head", {"learning_rate": 0.3}),
    ("ga", {"learning_rate": 0.3, "epochs": 10, "milestones": ()}),
    ("random_label_forget_only", {"learning_rate": 0.1, "epochs": 10}),
    ("boundary_shrink_runner_up", {"learning_rate": 0.1, "epochs": 10}),
    ("npo", {"learning_rate": 0.3, "epochs": 10}),
])
def test_forget_only_methods_reduce_forget_accuracy(task, name, overrides):
    method = methods.get_method(name)
    output = method.run(task, method.hparams(overrides), 0)
    assert output.seconds > 0
    assert _forget_accuracy(task, output) < 0.8


def test_imu_family_reports_influence_and_kept_counts(task):
    imu_out = methods.get_method("imu").run(task, methods.get_method("imu").hparams(), 0)
    rand_out = methods.get_method("imu_random").run(task, methods.get_method("imu").hparams(), 0)
    head_out = methods.get_method("ga_head").run(task, methods.get_method("ga_head").hparams(), 0)
    assert imu_out.info["num_kept"] == rand_out.info["num_kept"] < imu_out.info["num_forget"]
    assert head_out.info["num_kept"] == head_out.info["num_forget"]
    assert imu_out.info["weighting"] == "influence" and rand_out.info["weighting"] == "shuffled"


def test_random_labels_differ_from_true_labels():
    labels = np.arange(100) % 7
    new = random_label.random_wrong_labels(labels, 7, seed=1)
    assert np.all(new != labels) and len(set(new.tolist())) == 7


def test_boundary_shrink_targets_are_wrong_classes(task):
    x, y = task.forget["image"], task.forget["label"]
    targets = boundary_shrink.nearest_wrong_class(task.model, task.params, task.state, x, y,
                                                  epsilon=0.1)
    assert targets.shape == y.shape and np.all(targets != y)


def test_npo_loss_falls_as_the_model_moves_away_from_the_reference():
    ref = jnp.log(jnp.array([0.9, 0.8]))
    assert npo.npo_loss(ref - 1.0, ref, beta=0.1) < npo.npo_loss(ref, ref, beta=0.1)
    # β → 0 recovers 2 × (log-ratio + log 2)-like behaviour: the gradient w.r.t. log π is 1/E.
    grad = jax.grad(lambda lp: npo.npo_loss(lp, ref, beta=0.1))(ref)
    np.testing.assert_allclose(grad, [0.5, 0.5], rtol=1e-6)


def test_ssd_dampens_only_forget_specific_parameters(task):
    method = methods.get_method("ssd")
    output = method.run(task, method.hparams({"alpha": 1.0}), 0)
    assert output.info["dampened_parameters"] > 0
    assert output.info["parameters"] == sum(a.size for a in jax.tree.leaves(task.params))
    assert output.info["dampened_parameters"] < output.info["parameters"]
    changed = [bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(output.params),
                                                     jax.tree.leaves(task.params))]
    assert any(changed)
    for new, old in zip(jax.tree.leaves(output.params), jax.tree.leaves(task.params)):
        assert bool(jnp.all(jnp.abs(new) <= jnp.abs(old) + 1e-7))  # dampening never grows
    strict = method.run(task, method.hparams({"alpha": 1e9}), 0)
    assert strict.info["dampened_parameters"] == 0


def test_reference_methods_use_retain_data(task):
    finetune = methods.get_method("finetune")
    output = finetune.run(task, finetune.hparams({"epochs": 1}), 0)
    assert tiny_models.accuracy(task.model, output.params, output.state, task.retain) > 0.9
    retrained = methods.get_method("retrain").run(task, {}, 5)
    expected, _ = task.model.init(5)
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(retrained.params),
                                                           jax.tree.leaves(expected)))
    no_retain = methods.UnlearnTask(model=task.model, params=task.params, state=task.state,
                                    forget=task.forget, num_classes=4)
    with pytest.raises(ValueError, match="needs task.retain"):
        finetune.run(no_retain, finetune.hparams(), 0)
    with pytest.raises(ValueError, match="needs task.train"):
        methods.get_method("ssd").run(no_retain, methods.get_method("ssd").hparams(), 0)
