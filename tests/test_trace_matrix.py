"""Every public function of ``imu_jax.__all__`` that takes arrays, three ways (issue 9 §1).

Called eagerly, inside ``jax.jit`` with traced arguments, and inside ``jax.jit`` with the arrays
closed over (concrete constants under a trace): the same numbers (1e-6), and no retracing across
calls of the same shape. Functions that are host-side by design (numpy/sklearn metrics, the
high-level loop) are listed in ``HOST_ONLY`` with the reason; a new public function that takes
arrays must be added to one of the tables or this test fails.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imu_jax as imu

N, D, C = 12, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
    labels = jnp.asarray(np.arange(N) % C, jnp.int32)
    head = {"kernel": jnp.asarray(rng.normal(0, 0.5, (D, C)), jnp.float32),
            "bias": jnp.asarray(rng.normal(0, 0.1, C), jnp.float32)}
    return features, labels, head


def loss_fn(head, example):  # one module-level object: a static argument of influence_scores
    logits = example["x"] @ head["kernel"] + head["bias"]
    return -jax.nn.log_softmax(logits)[example["y"]]


def _grads(features, labels, head):
    return imu.per_example_grads(loss_fn, head, {"x": features, "y": labels})


def _weights(features):
    return jnp.linspace(0.5, 2.0, features.shape[0])


def _run_optimizer(opt, grads, head, **extra):
    state = opt.init(head)
    updates, state = opt.update(grads, state, head, **extra)
    return updates, state


def _whole_tree(features, labels, head):
    return {"body": {"kernel": features[:D, :D]}, "head": head}


# name -> fn(features, labels, head) returning a pytree of arrays; every array argument flows in.
CASES = {
    "classifier_influence": lambda f, y, h: imu.classifier_influence(f, y, h),
    "influence_scores": lambda f, y, h: imu.influence_scores(
        loss_fn, h, {"x": f, "y": y}, chunk_size=5),
    "per_example_grads": _grads,
    "sequence_influence": lambda f, y, h: imu.sequence_influence(
        jnp.stack([f, 0.5 * f], axis=1), jnp.stack([y, (y + 1) % C], axis=1), h, vocab_chunk=2),
    "influence_from_grads": lambda f, y, h: imu.influence_from_grads(_grads(f, y, h)),
    "select_and_weight": lambda f, y, h: imu.select_and_weight(
        imu.classifier_influence(f, y, h), top_fraction=0.7),
    "keep_count": lambda f, y, h: imu.keep_count(jnp.sum(f[:, 0] > -10), 0.7),
    "weighted_ascent": lambda f, y, h: _run_optimizer(
        imu.weighted_ascent(), _grads(f, y, h), h, weights=_weights(f)),
    "influence_weighted_ascent": lambda f, y, h: _run_optimizer(
        imu.influence_weighted_ascent(top_fraction=0.7), _grads(f, y, h), h),
    "l1_penalty": lambda f, y, h: _run_optimizer(imu.l1_penalty(0.3), h, h),
    "imu_sgd": lambda f, y, h: _run_optimizer(
        imu.imu_sgd(0.1, milestones=[1]), _grads(f, y, h), h, weights=_weights(f)),
    "accumulate": lambda f, y, h: _run_optimizer(
        imu.accumulate(imu.imu_sgd(0.1), 1), _grads(f, y, h), h, weights=_weights(f)),
    "split_head": lambda f, y, h: imu.split_head(_whole_tree(f, y, h), "head")[0]["head"],
    "merge_head": lambda f, y, h: imu.merge_head(*imu.split_head(_whole_tree(f, y, h), "head")),
    # structure-only: they read paths, never values, so tracers are fine
    "head_mask": lambda f, y, h: jax.tree.map(
        lambda m, x: x * m, imu.head_mask(_whole_tree(f, y, h), "head"), _whole_tree(f, y, h)),
    "frozen_mask": lambda f, y, h: jax.tree.map(
        lambda m, x: x * m, imu.frozen_mask(_whole_tree(f, y, h), "head"), _whole_tree(f, y, h)),
    "head_labels": lambda f, y, h: optax.partition(
        {"head": optax.sgd(0.1), "frozen": optax.set_to_zero()},
        imu.head_labels(_whole_tree(f, y, h), "head")).update(
            _whole_tree(f, y, h), optax.partition(
                {"head": optax.sgd(0.1), "frozen": optax.set_to_zero()},
                imu.head_labels(_whole_tree(f, y, h), "head")).init(_whole_tree(f, y, h)))[0],
    "param_paths": lambda f, y, h: {p: x for p, x in zip(
        imu.param_paths(_whole_tree(f, y, h)), jax.tree.leaves(_whole_tree(f, y, h)))},
}

HOST_ONLY = {  # host-side by design: numpy results of data-dependent size, sklearn, the loop
    "influence_weights": "returns numpy indices of data-dependent length; select_and_weight is "
                         "its fixed-shape, jit-able form (in CASES)",
    "auto_chunk_size": "returns a Python int from shapes and dtypes only (static, no values)",
    "membership_auc": "numpy statistic of the stopping rule (host, between steps)",
    "unlearn": "the high-level host loop (it jits its own steps)",
    "accuracy": "numpy metric", "avg_gap": "numpy metric",
    "classification_metrics": "numpy / sklearn metrics", "mia_efficacy": "sklearn SVC",
    "mia_features": "numpy metric", "prediction_wasserstein": "scipy metric",
    "token_kl": "numpy metric", "transition_kl": "numpy metric",
    "from_nnx": "adapts a user's NNX module (host-side, returns functions and pytrees)",
    "from_linen": "adapts a user's Linen module and variables (host-side)",
    "path_prefix": "builds a head selector (a static predicate on parameter paths)",
    "dense_softmax_head": "reads the head tree's structure and shapes (static), no values",
    "head_candidates": "lists parameter paths (static structure)",
    "check_head_selector": "checks a selector against parameter paths (static structure)",
}

NO_ARRAYS = {"available_methods", "get_method"}


def test_every_public_function_is_in_the_matrix():
    functions = {name for name in imu.__all__ if inspect.isfunction(getattr(imu, name))}
    listed = set(CASES) | set(HOST_ONLY) | NO_ARRAYS
    assert functions - listed == set(), (
        f"add {sorted(functions - listed)} to CASES (jit-able) or HOST_ONLY in this file")
    assert listed - functions == set(), f"stale entries: {sorted(listed - functions)}"


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_eager_traced_and_closed_over_agree_without_retracing(name):
    fn = CASES[name]
    args = _data(0)
    eager = fn(*args)
    traces = []

    def counted(*a):
        traces.append(1)
        return fn(*a)

    jitted = jax.jit(counted)
    _assert_same(eager, jitted(*args))
    _assert_same(eager, jax.jit(lambda: fn(*args))())  # concrete constants under a trace
    other = _data(1)  # same shapes, other values: no retrace, and still the eager numbers
    _assert_same(fn(*other), jitted(*other))
    assert len(traces) == 1


def test_issue_example_closed_over_classifier_influence():
    """The issue's exact example: closed-over constants used to raise ConcretizationTypeError."""
    X = jax.random.normal(jax.random.key(0), (64, 8))
    Y = jnp.arange(64) % 3
    head = {"kernel": jnp.ones((8, 3)) * 0.1, "bias": jnp.zeros(3)}
    closed = jax.jit(lambda: imu.classifier_influence(X, Y, head))()
    np.testing.assert_allclose(closed, imu.classifier_influence(X, Y, head), atol=1e-6)
    assert closed.shape == (64,) and bool(jnp.all(jnp.isfinite(closed)))


def test_value_checks_still_run_on_host_values_and_closed_over_constants():
    X, Y, head = _data(0)
    bad = X.at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="features contains NaN"):
        imu.classifier_influence(bad, Y, head)
    with pytest.raises(ValueError, match="features contains NaN"):  # a constant under jit
        jax.jit(lambda: imu.classifier_influence(bad, Y, head))()
    out_of_range, negative, grads = Y + C, -_weights(X), _grads(X, Y, head)
    with pytest.raises(ValueError, match="labels out of range"):
        jax.jit(lambda: imu.classifier_influence(X, out_of_range, head))()
    with pytest.raises(ValueError, match="weights must be >= 0"):
        jax.jit(lambda: _run_optimizer(imu.weighted_ascent(), grads, head, weights=negative))()
    # traced values cannot be checked: shapes still are
    with pytest.raises(ValueError, match=r"weights has 3 entries"):
        jax.jit(lambda g, w: imu.weighted_ascent().update(g, optax.EmptyState(), head,
                                                          weights=w))(_grads(X, Y, head),
                                                                      jnp.ones(3))
