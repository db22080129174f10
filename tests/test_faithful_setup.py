"""Issue 10: baselines as their authors wrote them, one schedule, fair grids, per-step traces."""

import json
import tempfile
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import methods
from imu_jax.lab import evaluation, models_cache, runner, selection
from imu_jax.methods import base, boundary_shrink, grids, npo
from imu_jax.unlearning.config import UnlearnConfig

import tiny_models


class Linear:
    def apply(self, params, state, x, *, train=False):
        return x @ params, state


@pytest.fixture(scope="module")
def task():
    model, params, state, data = tiny_models.trained_classifier(0, 40)
    return methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               retain=data["retain"], train=data["train"], num_classes=4)


# --- Boundary Shrink --------------------------------------------------------------------------

def test_boundary_shrink_epsilon_is_in_pixel_units():
    # Inputs standardised with mean 0.5, std 0.25: ε = 0.1 pixels is 0.4 standardised units.
    # Class 1 wins once x0 − x1 drops below 0: margin 0.3 standardised, so only the pixel-unit
    # step (0.8 of margin change) crosses; a standardised-unit step (0.2) would not.
    w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    x = np.array([[0.15, -0.15]], np.float32)
    norm = ((0.5, 0.5), (0.25, 0.25))
    pixel = boundary_shrink.fgsm_targets(Linear(), w, {}, x, np.array([0]), epsilon=0.1,
                                         normalization=norm)
    standard = boundary_shrink.fgsm_targets(Linear(), w, {}, x, np.array([0]), epsilon=0.1,
                                            normalization=None)
    assert pixel.tolist() == [1] and standard.tolist() == [0]


def test_boundary_shrink_clamps_to_the_pixel_range():
    # logit0 = 0, logit1 = x0 − 2.1 (standardised x0). Pixel x0 = 0.95 (standardised 1.8): class 0.
    # The FGSM step raises x0 by 0.1 pixel: unclamped 1.05 (2.2 → class 1), clamped to 1.0
    # (2.0 → still class 0). The reference clamps.
    class Affine:
        def apply(self, params, state, x, *, train=False):
            return x @ params["w"] + params["b"], state

    params = {"w": jnp.array([[0.0, 1.0], [0.0, 0.0]]), "b": jnp.array([0.0, -2.1])}
    norm = ((0.5, 0.5), (0.25, 0.25))
    x = np.array([[1.8, 0.0]], np.float32)
    assert boundary_shrink.fgsm_targets(Affine(), params, {}, x, np.array([0]), epsilon=0.1,
                                        normalization=norm).tolist() == [0]
    unclamped = x + 0.4 * np.array([[1.0, 0.0]], np.float32)
    assert int(np.argmax(unclamped @ np.asarray(params["w"]) + np.asarray(params["b"]))) == 1


def test_boundary_shrink_target_is_the_plain_argmax_which_may_be_the_true_class():
    w = jnp.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    x, y = np.array([[1.0, 0.0]], np.float32), np.array([0])
    # Far from the boundary: the reference keeps the true class as the target ...
    assert boundary_shrink.fgsm_targets(Linear(), w, {}, x, y, epsilon=0.1,
                                        normalization=None).tolist() == [0]
    # ... the runner-up variant excludes it.
    assert boundary_shrink.nearest_wrong_class(Linear(), w, {}, x, y, epsilon=0.1).tolist() == [1]


def test_boundary_shrink_trains_in_train_mode_and_the_variant_keeps_bn_frozen(task):
    ref = methods.get_method("boundary_shrink")
    variant = methods.get_method("boundary_shrink_runner_up")
    out = ref.run(task, ref.hparams({"epochs": 1}), 0)
    frozen = variant.run(task, variant.hparams({"epochs": 1}), 0)
    assert out.info["bn_mode"] == "train" and frozen.info["bn_mode"] == "frozen"
    assert not np.allclose(out.state["mean"], task.state["mean"])  # running statistics moved
    np.testing.assert_array_equal(frozen.state["mean"], task.state["mean"])
    assert 0.0 <= out.info["crossed_fraction"] < 1.0 and frozen.info["crossed_fraction"] == 1.0


def test_boundary_shrink_gets_the_datasets_normalisation_from_the_runner():
    norm = evaluation._input_normalization(types.SimpleNamespace(
        info={"normalization": [[0.305], [0.375]]}))
    assert norm == ((0.305,), (0.375,))
    from imu_jax.data.splits import NORMALIZATION
    assert NORMALIZATION["digits"] == ((0.3050,), (0.3750,))


# --- NPO on sequences --------------------------------------------------------------------------

def test_npo_sequence_log_prob_is_the_sum_of_token_log_probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    labels = np.array([[0, 2, 1, -1], [1, 1, -1, -1]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    hand = np.array([sum(logp[i, t, labels[i, t]] for t in range(4) if labels[i, t] >= 0)
                     for i in range(2)])
    got = jax.vmap(npo.sequence_log_prob)(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(got, hand, rtol=1e-5)
    ref = hand - 0.7
    beta = 0.1
    expected = 2 / beta * np.mean(np.log1p(np.exp(beta * (hand - ref))))
    np.testing.assert_allclose(npo.npo_loss(got, jnp.asarray(ref), beta=beta), expected,
                               rtol=1e-5)
    # not the mean: a 3-token sequence's log π is 3× its mean token log-probability
    assert abs(float(got[0]) - float(np.mean([logp[0, t, labels[0, t]] for t in range(3)]))) > 0.1


def test_npo_runs_on_sequences():
    model = tiny_models.TinySequenceModel()
    params, state = model.init(0)
    tokens = np.random.default_rng(0).integers(0, 5, size=(16, 6)).astype(np.int32)
    forget = {"tokens": tokens, "label": np.concatenate(
        [tokens[:, 1:], -np.ones((16, 1), np.int32)], axis=1)}
    t = methods.UnlearnTask(model=model, params=params, state=state, forget=forget,
                            num_classes=5)
    method = methods.get_method("npo")
    out = method.run(t, method.hparams({"epochs": 2, "batch_size": 4, "learning_rate": 0.1}), 0)
    assert out.info["steps"] == 8


# --- one schedule, tunable everywhere ---------------------------------------------------------

GRADIENT_METHODS = [n for n in methods.available() if n not in ("ssd", "retrain")]


def test_one_constant_schedule_by_default_for_every_gradient_method():
    assert UnlearnConfig().milestones == ()
    for name in GRADIENT_METHODS:
        assert methods.get_method(name).defaults["milestones"] == (), name


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_milestones_are_a_tunable_of_every_gradient_method(task, name):
    method = methods.get_method(name)
    hp = {"epochs": 2, "learning_rate": 0.05}
    constant = method.run(task, method.hparams(hp), 0)
    decayed = method.run(task, method.hparams({**hp, "milestones": (0.01,)}), 0)
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(constant.params),
                                                          jax.tree.leaves(decayed.params))]
    assert max(moved) > 1e-6, name  # the schedule reached the optimizer


def test_step_schedule_decays_at_the_milestone():
    schedule = base.step_schedule(1.0, 10, (0.5,))
    assert float(schedule(4)) == 1.0 and float(schedule(5)) == pytest.approx(0.1)
    assert float(base.step_schedule(1.0, 10)(9)) == 1.0


# --- BatchNorm mode -------------------------------------------------------------------------

@pytest.mark.parametrize("name, mode", [("ga", "train"), ("npo", "train"),
                                        ("random_label_forget_only", "train"),
                                        ("random_label_with_retain", "train"),
                                        ("finetune", "train"), ("imu", "frozen"),
                                        ("boundary_shrink_runner_up", "frozen")])
def test_bn_mode_follows_each_methods_reference(task, name, mode):
    method = methods.get_method(name)
    out = method.run(task, method.hparams({"epochs": 1}), 0)
    assert out.info["bn_mode"] == mode
    moved = not np.allclose(out.state["mean"], task.state["mean"])
    assert moved == (mode == "train")


def test_bn_mode_is_validated(task):
    method = methods.get_method("ga")
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        method.run(task, method.hparams({"bn_mode": "eval"}), 0)


def test_random_label_with_retain_uses_all_classes_and_the_retain_set(task):
    method = methods.get_method("random_label_with_retain")
    assert method.needs == base.RETAIN_SET and method.reference
    no_retain = methods.UnlearnTask(model=task.model, params=task.params, state=task.state,
                                    forget=task.forget, num_classes=4)
    with pytest.raises(ValueError, match="needs task.retain"):
        method.run(no_retain, method.hparams(), 0)


# --- fair grids -------------------------------------------------------------------------------

def test_every_tuned_method_gets_the_same_grid():
    # issue 26 replaced "the same budget over its own knobs" by one grid for all: every gradient
    # method is tuned over the same lr × optimizer-step grid, second knobs at their defaults
    for name in methods.available():
        method = methods.get_method(name)
        if not method.grid:
            continue
        expected = grids.SSD_GRID if name == "ssd" else grids.STEP_GRID
        assert method.grid is expected, name
        assert set(method.grid) <= set(method.defaults), name
    second = {"imu": "top_fraction", "imu_batch": "top_fraction", "imu_random": "top_fraction",
              "boundary_shrink": "epsilon", "npo": "beta"}
    for name, knob in second.items():
        assert knob not in methods.get_method(name).grid, name


# --- per-step trace and the Retrain floor ------------------------------------------------------

def test_experiment_traces_every_step_and_reports_the_retrain_floor(monkeypatch):
    class LinearModel:
        def apply(self, params, state, x, *, train=False):
            return x @ params["head"]["kernel"] + params["head"]["bias"], state

        def features(self, params, state, x):
            return x

    rng = np.random.default_rng(0)

    def split(n, classes):
        y = rng.choice(classes, n)
        return {"image": (3 * np.eye(3)[y] + rng.normal(size=(n, 3))).astype(np.float32),
                "label": y}

    splits = types.SimpleNamespace(forget=split(20, [2]), retain=split(60, [0, 1]),
                                   test=split(30, [0, 1]), train=None, num_classes=3, info={})

    def trainer(retrain, seed):
        noise = 0.01 * np.random.default_rng(seed).normal(size=(3, 3))
        head = {"kernel": jnp.asarray(np.eye(3) * (1 - np.eye(3)[2] * retrain) + noise,
                                      jnp.float32), "bias": jnp.zeros(3)}
        return models_cache.TrainedModel(LinearModel(), {"head": head}, {}, seconds=0.0)

    out = tempfile.mkdtemp()
    results = runner.run_experiment(
        splits=splits, trainer=trainer, methods=["retrain", "retrain_floor", "ga"], seeds=[0],
        out=out, hparams={"ga": {"epochs": 3, "batch_size": 10}}, trace_every=1, progress=False,
        retain_free=False)  # the fixed-length run: 3 epochs
    ga = next(r for r in results["runs"] if r["method"] == "ga")
    assert [p["step"] for p in ga["trace"]] == list(range(7))  # step 0 + 3 epochs × 2 batches
    assert ga["trace"][0]["ua"] == pytest.approx(0.0) and set(ga["trace"][0]) == {"step", "ua",
                                                                                 "ta"}
    floor = next(r for r in results["runs"] if r["method"] == "retrain_floor")
    assert floor["info"]["retrain_seed"] == 1000 and floor["avg_gap"] >= 0.0
    import pathlib
    assert (pathlib.Path(out) / "steps.png").exists()
    assert json.loads((pathlib.Path(out) / "results.json").read_text())["config"]["trace_every"] == 1

    # The trace evaluates a fixed subset of at most TRACE_EXAMPLES rows per split: with 8, every
    # traced accuracy is a multiple of 1/8 (forget has 20 rows, test 30).
    monkeypatch.setattr(evaluation, "TRACE_EXAMPLES", 8)
    results = runner.run_experiment(
        splits=splits, trainer=trainer, methods=["retrain", "ga"], seeds=[0],
        out=tempfile.mkdtemp(), hparams={"ga": {"epochs": 3, "batch_size": 10}}, trace_every=1,
        progress=False, retain_free=False)
    ga = next(r for r in results["runs"] if r["method"] == "ga")
    values = np.array([[p["ua"], p["ta"]] for p in ga["trace"]]) * 8
    assert np.allclose(values, np.round(values), atol=1e-6) and len(ga["trace"]) == 7
