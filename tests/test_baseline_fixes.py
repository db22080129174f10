"""Issue 26, item 4: baselines that work or say why.

Each test here fails on the code before its fix: fixed-length loops that went non-finite were
not recorded as diverged; SCAR went non-finite at step 1 when the feature dimension exceeds the
auxiliary examples of a class; SSD's full-set importance read a class-ordered training set in
order; Boundary Shrink, SCRUB and GradDiff lacked their references' settings; no collapse test.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_models
from imu_jax import methods, stopping
from imu_jax.methods import base

GRADIENT_METHODS = [n for n in methods.available()
                    if "milestones" in methods.get_method(n).defaults]
SMALL = {"scar": {"num_auxiliary": 200, "batch_size": 64}}


def _run(name, task, **overrides):
    method = methods.get_method(name)
    return method.run(task, method.hparams(overrides), 0)


@pytest.fixture(scope="module")
def trained():
    return tiny_models.trained_classifier(0, 300)


# --- fixed-length runs record divergence -------------------------------------------------

@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_fixed_length_run_that_goes_non_finite_is_recorded_as_diverged(name, trained):
    """An infinite learning rate makes step 1 non-finite: every method's fixed-length loop must
    hand back the original parameters AND say so (stop_reason "diverged" at step 1, 0 steps
    kept), as a monitored run does; before, the info held only ``steps: 0``."""
    model, params, state, data = trained
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               retain=data["retain"], train=data["train"], num_classes=4)
    with pytest.warns(stopping.DivergenceWarning, match="step 1"):
        out = _run(name, task, learning_rate=float("inf"), epochs=1, max_steps=3,
                   **SMALL.get(name, {}))
    assert out.info["stop_reason"] == "diverged" and out.info["diverged"] is True, name
    assert out.info["stopped_at"] == 1 and out.info["steps"] == 0, name
    for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_fixed_length_run_that_stays_finite_is_recorded_as_fixed(trained):
    model, params, state, data = trained
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               retain=data["retain"], num_classes=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", stopping.DivergenceWarning)
        out = _run("ga", task, epochs=3, max_steps=2)
    assert out.info["stop_reason"] == "fixed" and out.info["diverged"] is False
    assert out.info["steps"] == out.info["stopped_at"] == 2
