"""The vmapped many-seed trainer (imu_jax.lab.ensemble) equals a Python loop over seeds of the
single-model trainer: same initialisation, same per-seed batch order, same optimizer schedule,
on the digits and MNIST-1D recipes (shrunk: small models, few steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax.data import batches, make_splits
from imu_jax.lab.ensemble import (batch_indices, ensemble_logits, make_single_step, statistics,
                                  train_ensemble, train_single, unstack)
from imu_jax.lab.forgetting_score import logit_scaled_confidence
from imu_jax.train import recipe, train_model

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_splits("digits", "random:0.1", data_dir=tmp_path_factory.mktemp("tfds"))


def _max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max((float(jnp.max(jnp.abs(x - y))) for x, y in pairs), default=0.0)


def _assert_equals_loop(cfg, splits, *, retrain, max_steps, atol=1e-5, mode="host", dtype=None,
                        seeds=SEEDS):
    ens = train_ensemble(cfg, splits, seeds, retrain=retrain, max_steps=max_steps, mode=mode,
                         dtype=dtype)
    assert ens.losses.shape == (len(seeds), max_steps)
    step = make_single_step(cfg, splits, retrain=retrain)  # one compilation for the loop
    for i, seed in enumerate(seeds):
        _, params, state, losses = train_single(cfg, splits, seed, retrain=retrain,
                                                max_steps=max_steps, step_fn=step, dtype=dtype)
        assert _max_diff(unstack(ens.params, i), params) <= atol
        assert _max_diff(unstack(ens.state, i), state) <= atol
        np.testing.assert_allclose(ens.losses[i], losses, atol=atol, rtol=0)
    # Different seeds really are different models.
    assert _max_diff(unstack(ens.params, 0), unstack(ens.params, 1)) > 1e-3
    return ens


def test_batch_indices_are_train_models_batches(digits):
    cfg = {"epochs": 2, "batch_size": 256}
    idx = batch_indices(cfg, digits, seed=7, retrain=True)
    expected = [b["label"] for e in range(2) for b in batches(
        digits.retain, 256, seed=7, epoch=e, drop_remainder=True)]
    assert idx.shape == (len(expected), 256)
    np.testing.assert_array_equal(digits.retain["label"][idx], np.stack(expected))
    assert batch_indices(cfg, digits, seed=7, retrain=True, max_steps=3).shape == (3, 256)


def test_train_single_is_train_model(digits):
    cfg = {"model": "mlp", "model_options": {"hidden": (16,)}, "epochs": 1, "batch_size": 128}
    _, p_single, _, _ = train_single(cfg, digits, 5, retrain=True)
    _, p_model, _, _ = train_model(cfg, digits, retrain=True, seed=5, progress=False)
    assert _max_diff(p_single, p_model) == 0.0


def test_vmapped_equals_loop_digits_recipe(digits):
    """The digits recipe (CNN, SGD + momentum + coupled weight decay, milestones), shrunk: batch 256
    so that 12 steps cross two epoch boundaries (5 steps per epoch) and a milestone."""
    cfg = {**recipe("digits"), "model_options": {"channels": (4,), "dense": 8},
           "batch_size": 256, "epochs": 3, "milestones": (1,)}
    _assert_equals_loop(cfg, digits, retrain=False, max_steps=12)


def test_vmapped_equals_loop_mnist1d_recipe_retrained(tmp_path_factory):
    """The MNIST-1D recipe (CNN1D, AdamW), retrained on the retain split, shrunk: 4 channels,
    batch 1000 (3 steps per epoch of 3,600 retained signals), 7 steps, as one ``lax.scan``."""
    splits = make_splits("mnist1d", "random:0.1", data_dir=tmp_path_factory.mktemp("tfds1d"))
    cfg = {**recipe("mnist1d"), "model_options": {"channels": 4}, "batch_size": 1000}
    ens = _assert_equals_loop(cfg, splits, retrain=True, max_steps=7, mode="scan", seeds=(0, 1))
    stats = statistics(ens, splits.forget)
    assert stats.shape == (2, len(splits.forget["label"]))
    logits, _ = ens.fm.apply(unstack(ens.params, 1), unstack(ens.state, 1),
                             jnp.asarray(splits.forget["image"]))
    np.testing.assert_allclose(
        stats[1], logit_scaled_confidence(np.asarray(logits), splits.forget["label"]), atol=1e-4)


def test_vmapped_equals_loop_exactly_in_float64(digits):
    """In float64 the two paths agree to 1e-12 (float32 rounding differences, not the program,
    are what separates them at float32)."""
    cfg = {**recipe("digits"), "model_options": {"channels": (4,), "dense": 8},
           "batch_size": 256, "epochs": 3, "milestones": (1,)}
    with jax.enable_x64(True):
        ens = _assert_equals_loop(cfg, digits, retrain=True, max_steps=12, atol=1e-12,
                                  dtype="float64", seeds=(0, 1))
        assert unstack(ens.params, 0)["head"]["kernel"].dtype == jnp.float64


def test_ensemble_logits_loop_mode_and_rejects_augment(digits):
    cfg = {"model": "mlp", "model_options": {"hidden": (8,)}, "epochs": 1}
    ens = train_ensemble(cfg, digits, (3, 4), max_steps=2)
    loop = train_ensemble(cfg, digits, (3, 4), max_steps=2, mode="loop")
    assert _max_diff(ens.params, loop.params) <= 1e-6 and loop.losses.shape == (2, 2)
    x = digits.test["image"][:25]
    full = ensemble_logits(ens.fm, ens.params, ens.state, x)
    np.testing.assert_allclose(ensemble_logits(ens.fm, ens.params, ens.state, x, batch_size=7),
                               full, atol=1e-6)
    assert full.shape == (2, 25, 10)
    with pytest.raises(NotImplementedError, match="augment"):
        train_ensemble({**cfg, "augment": True}, digits, (0,), max_steps=1)
    with pytest.raises(ValueError, match="mode"):
        train_ensemble(cfg, digits, (0,), max_steps=1, mode="pmap")
