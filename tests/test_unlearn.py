"""Tests for imu_jax.unlearn on tiny self-contained models (no data or models branch needed)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imu_jax as imu
from imu_jax.influence import NoNegativeInfluenceWarning
from imu_jax.unlearning import loop as unlearn_loop
from imu_jax.unlearning import losses
from imu_jax.unlearning import selection as unlearn_selection
from imu_jax.unlearning.config import UnlearnConfig
from imu_jax.unlearning.loop import unlearn

import tiny_models


@pytest.fixture(scope="module")
def trained():
    return tiny_models.trained_classifier(0, 40)


def _same(a, b):
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_only_the_head_changes_and_forget_accuracy_drops(trained):
    model, params, state, data = trained
    # a decaying schedule (an option; the default lr is constant) keeps this tiny head stable
    config = UnlearnConfig(learning_rate=0.1, milestones=(0.5, 0.75))
    new, report = unlearn(model, params, data["forget"], config, state=state)
    assert _same(new["body"], params["body"])
    assert not _same(new["head"], params["head"])
    assert report.head_paths == ["head/bias", "head/kernel"]
    assert tiny_models.accuracy(model, new, state, data["forget"]) < 0.9
    assert tiny_models.accuracy(model, new, state, data["retain"]) > 0.9


def test_closed_form_and_generic_influence_agree(trained):
    model, params, state, data = trained
    x, y = data["forget"]["image"], data["forget"]["label"]
    closed, used_closed = unlearn_selection.forget_influence(model, params, state, x, y, UnlearnConfig())
    generic, used_generic = unlearn_selection.forget_influence(
        model, params, state, x, y, UnlearnConfig(closed_form="never", influence_chunk_size=7))
    assert used_closed and not used_generic
    np.testing.assert_allclose(closed, generic, rtol=2e-3, atol=1e-7)


def test_report_counts_selection_and_steps(trained):
    model, params, state, data = trained
    n = len(data["forget"]["label"])
    config = UnlearnConfig(top_fraction=0.5, epochs=3, batch_size=8)
    _, report = unlearn(model, params, data["forget"], config, state=state)
    assert report.num_forget == n
    assert report.num_kept == max(1, report.num_negative // 2)
    assert report.steps == 3 * -(-report.num_kept // 8)
    assert report.influence["min"] < 0 and report.fallback is False
    assert report.weights["max"] >= report.weights["min"] > 0
    assert "state" not in report.to_dict() and report.to_dict()["steps"] == report.steps


def test_max_steps_caps_the_loop(trained):
    model, params, state, data = trained
    _, report = unlearn(model, params, data["forget"],
                        UnlearnConfig(epochs=10, batch_size=4, max_steps=3), state=state)
    assert report.steps == 3


def test_uniform_and_shuffled_weightings(trained):
    model, params, state, data = trained
    n = len(data["forget"]["label"])
    _, imu_report = unlearn(model, params, data["forget"], UnlearnConfig(), state=state)
    _, uniform = unlearn(model, params, data["forget"], UnlearnConfig(weighting="uniform"),
                         state=state)
    _, shuffled = unlearn(model, params, data["forget"], UnlearnConfig(weighting="shuffled"),
                          state=state)
    assert uniform.num_kept == n and uniform.influence is None
    assert shuffled.num_kept == imu_report.num_kept
    assert shuffled.weights == pytest.approx(imu_report.weights)  # same weights, other examples


def test_seeded_runs_are_deterministic(trained):
    model, params, state, data = trained
    config = UnlearnConfig(epochs=2, batch_size=4, learning_rate=0.05)
    a, _ = unlearn(model, params, data["forget"], config, state=state, seed=3)
    b, _ = unlearn(model, params, data["forget"], config, state=state, seed=3)
    assert _same(a, b)


def test_fallback_fires_when_no_example_has_negative_influence(trained):
    model, params, state, data = trained
    # Saturated softmax: every error e_i is exactly 0, so every influence is 0 (none negative).
    saturated = {**params, "head": {"kernel": params["head"]["kernel"] * 1e6,
                                    "bias": params["head"]["bias"]}}
    with pytest.warns(NoNegativeInfluenceWarning, match="falling back"):
        _, report = unlearn(model, saturated, data["forget"], UnlearnConfig(epochs=1),
                            state=state)
    assert report.fallback is True
    assert report.num_kept == report.num_forget and report.num_negative == 0


def test_batch_stats_update_only_when_asked(trained):
    model, params, state, data = trained
    _, off = unlearn(model, params, data["forget"], UnlearnConfig(epochs=1), state=state)
    _, on = unlearn(model, params, data["forget"], UnlearnConfig(epochs=1,
                                                                 update_batch_stats=True),
                    state=state)
    assert _same(off.state, state)
    assert not _same(on.state, state)


def test_per_batch_mode_runs_and_counts_fallbacks(trained):
    model, params, state, data = trained
    new, report = unlearn(model, params, data["forget"],
                          UnlearnConfig(influence_mode="per_batch", batch_size=10, epochs=2,
                                        learning_rate=0.1), state=state)
    assert report.steps == 2 * 4 and report.num_fallback_batches == 0
    assert report.influence is None
    assert not _same(new["head"], params["head"])


def test_sequence_model_uses_generic_influence_and_ignores_padding():
    model = tiny_models.TinySequenceModel()
    params, state = model.init(0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (12, 6)).astype(np.int32)
    labels = np.concatenate([tokens[:, 1:], np.full((12, 1), -1)], 1).astype(np.int32)
    new, report = unlearn(model, params, {"tokens": tokens, "label": labels},
                          UnlearnConfig(batch_size=4, epochs=1, top_fraction=1.0), state=state)
    assert report.closed_form is False
    assert report.num_negative >= 1
    assert _same(new["embed"], params["embed"])


def test_errors_are_clear(trained):
    model, params, state, data = trained
    empty = {k: v[:0] for k, v in data["forget"].items()}
    with pytest.raises(ValueError, match="forget set is empty"):
        unlearn(model, params, empty, state=state)
    with pytest.raises(ValueError, match="weighting"):
        UnlearnConfig(weighting="random")
    with pytest.raises(ValueError, match="matches no parameter"):
        unlearn(model, params, data["forget"], UnlearnConfig(head="^classifier"), state=state)
    with pytest.raises(ValueError, match="'image' or 'tokens'|one of"):
        unlearn(model, params, {"x": data["forget"]["image"], "label": data["forget"]["label"]})


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_step_with_one_backward_pass_equals_per_example_weighted_ascent(trained, optimizer):
    """The global-mode step feeds ∇Σwℓ/Σw as one example; the update is the per-example one."""
    model, params, state, data = trained
    config = UnlearnConfig(optimizer=optimizer, learning_rate=0.1)
    head, rest = imu.heads.split_head(params, config.head)
    x, y = losses.input_and_labels(data["forget"])
    x, y = jnp.asarray(x[:12]), jnp.asarray(y[:12])
    weights = jnp.linspace(0.2, 2.0, 12)
    opt = unlearn_loop.make_optimizer(config, 10)
    step = unlearn_loop.make_step(model, config, opt)
    opt_state = opt.init(head)
    new_head, new_state, _ = step(head, opt_state, rest, state, x, y, weights)
    new_head, new_state, _ = step(new_head, new_state, rest, state, x, y, weights[::-1])

    loss = losses.make_example_loss(model, rest, state)
    expected, expected_state = head, opt_state
    for w in (weights, weights[::-1]):
        grads = imu.per_example_grads(loss, expected, {"x": x, "y": y})
        updates, expected_state = opt.update(grads, expected_state, expected, weights=w)
        expected = optax.apply_updates(expected, updates)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(expected), jax.tree.leaves(head)))
    assert moved > 1e-3
    for a, b in zip(jax.tree.leaves(new_head), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _SequenceModelWithFeatures(tiny_models.TinySequenceModel):
    def features(self, params, state, tokens):
        return params["embed"][tokens]


def test_sequence_model_with_features_uses_the_closed_form_with_the_same_scores():
    model = _SequenceModelWithFeatures()
    params, state = model.init(0)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 5, (12, 6)).astype(np.int32)
    labels = np.concatenate([tokens[:, 1:], np.full((12, 1), -1)], 1).astype(np.int32)
    closed, used = unlearn_selection.forget_influence(model, params, state, tokens, labels,
                                                UnlearnConfig())
    generic, used_generic = unlearn_selection.forget_influence(
        model, params, state, tokens, labels, UnlearnConfig(closed_form="never"))
    assert used and not used_generic
    np.testing.assert_allclose(closed, generic, rtol=1e-5, atol=1e-6 * np.max(np.abs(generic)))
