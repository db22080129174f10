"""Training options added for the real-data recipes: one-cycle schedule, label smoothing,
Nesterov momentum; the recipe table."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from imu_jax.models import create, functional
from imu_jax.train import TrainConfig, learning_rate_schedule, loss_fn, make_optimizer, recipe


def test_onecycle_rises_linearly_then_falls_to_zero():
    cfg = TrainConfig(schedule="onecycle", epochs=4, learning_rate=0.4, warmup_fraction=0.25)
    s = learning_rate_schedule(cfg, 25)  # 100 steps, peak at step 25
    got = np.array([float(s(t)) for t in (0, 10, 25, 50, 75, 100)])
    np.testing.assert_allclose(got, [0.0, 0.16, 0.4, 0.4 * 50 / 75, 0.4 * 25 / 75, 0.0],
                               atol=1e-6)
    multi = learning_rate_schedule(TrainConfig(learning_rate=1.0, milestones=(2,), gamma=0.1), 5)
    assert (float(multi(9)), float(multi(10))) == (1.0, pytest.approx(0.1))
    with pytest.raises(ValueError, match="schedule 'cosine'"):
        learning_rate_schedule(TrainConfig(schedule="cosine"), 5)


def test_label_smoothing_loss_matches_its_definition():
    fm = functional(create("mlp", num_classes=4, input_shape=(3,), hidden=(5,)))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(6, 3)).astype(np.float32),
             "label": rng.integers(0, 4, 6).astype(np.int32)}
    logits, _ = fm.apply(fm.params, fm.state, batch["image"])
    logp = jax.nn.log_softmax(logits)
    target = np.full((6, 4), 0.2 / 4)
    target[np.arange(6), batch["label"]] += 0.8
    want = -np.mean(np.sum(target * np.asarray(logp), axis=1))
    got, _ = loss_fn(fm, fm.params, fm.state, batch, train=True, label_smoothing=0.2)
    plain, _ = loss_fn(fm, fm.params, fm.state, batch, train=True)
    assert float(got) == pytest.approx(want, rel=1e-5) and float(got) != pytest.approx(
        float(plain))


def test_nesterov_changes_the_update():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}

    def two_steps(nesterov):
        tx = make_optimizer(TrainConfig(learning_rate=0.1, weight_decay=0.0,
                                        nesterov=nesterov), 10)
        state = tx.init(params)
        p = params
        for _ in range(2):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return np.asarray(p["w"])

    # Momentum 0.9, trace v = g + 0.9 v. Plain steps by v: g then 1.9 g (2.9 g in all);
    # Nesterov by g + 0.9 v: 1.9 g then 2.71 g (4.61 g in all).
    np.testing.assert_allclose(params["w"] - two_steps(False), 0.1 * 2.9 * grads["w"], rtol=1e-5)
    np.testing.assert_allclose(params["w"] - two_steps(True), 0.1 * 4.61 * grads["w"], rtol=1e-5)


def test_recipe_table():
    cpu = recipe("imagefolder:/data/cifar10")
    assert (cpu["model"], cpu["schedule"], cpu["label_smoothing"], cpu["augment"]) == (
        "fastcnn", "onecycle", 0.2, True)
    assert recipe("imagefolder:/data/cifar10", "resnet18") == {
        **recipe("cifar10"), "dataset": "imagefolder:/data/cifar10"}
    assert recipe("cifar10", "fastcnn")["schedule"] == "onecycle"
    assert recipe("mnist1d", "cnn")["model"] == "cnn"  # other models keep the dataset's recipe
    with pytest.raises(ValueError, match="No recipe for dataset 'svhn'"):
        recipe("svhn")


@pytest.mark.parametrize("dataset", ["digits", "mnist1d", "cifar10", "cifar100", "mnist",
                                     "fashion_mnist", "imagefolder:/data/x", "markov"])
def test_every_model_on_every_dataset_gets_options_it_accepts(dataset):
    """``--model M`` on any dataset: the recipe's ``model_options`` are ones M accepts (a recipe
    written for another model must not lend it its options)."""
    from imu_jax.models import REGISTRY, model_config

    for name in REGISTRY:
        cfg = recipe(dataset, name)
        assert cfg["model"] == name
        model_config(name, num_classes=10, input_shape=(8, 8, 3), **cfg.get("model_options", {}))
    own = recipe(dataset)
    assert recipe(dataset, own["model"]) == own  # the recipe's own model keeps its options
