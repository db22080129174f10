"""Compositions a JAX user writes (issue 9 §2–4, §5's mechanism, §6 labels and metrics): each
works exactly or fails with a ValueError naming the right pattern."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imu_jax as imu
from imu_jax import metrics
from imu_jax.unlearning import loop as unlearn_loop
from imu_jax.unlearning import losses, run_checkpoint
from imu_jax.unlearning import selection as unlearn_selection


def _tree_close(a, b, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=atol)


# --- §2: per-example transforms and optax.masked / optax.partition ---------------------------

def _whole_tree_problem(n=6):
    rng = np.random.default_rng(0)
    params = {"body": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
              "head": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(n,) + p.shape), jnp.float32),
                         params)
    return params, grads, jnp.asarray(rng.uniform(0.1, 2.0, n), jnp.float32)


def test_issue_example_masked_imu_sgd_is_refused_with_the_right_pattern():
    params, grads, weights = _whole_tree_problem()
    opt = optax.masked(imu.imu_sgd(0.1), imu.head_mask(params, "head"))
    with pytest.raises(ValueError, match=r"optax.masked or optax.partition.*split_head"):
        opt.update(grads, opt.init(params), params, weights=weights)


@pytest.mark.parametrize("per_batch", [False, True])
def test_partition_with_a_per_example_transform_is_refused(per_batch):
    params, grads, weights = _whole_tree_problem()
    opt = optax.partition({"head": imu.imu_sgd(0.1, per_batch=per_batch),
                           "frozen": optax.set_to_zero()}, imu.head_labels(params, "head"))
    extra = {} if per_batch else {"weights": weights}
    with pytest.raises(ValueError, match="optax.masked or optax.partition"):
        opt.update(grads, opt.init(params), params, **extra)


def test_split_head_and_aggregate_then_mask_are_exact_and_agree():
    """The two supported patterns: head-only gradients, and (global mode) whole-tree
    aggregation with the frozen leaves zeroed after the optimizer."""
    params, grads, weights = _whole_tree_problem()
    # 1. split_head: the optimizer sees only the head
    head, rest = imu.split_head(params, "head")
    head_opt = imu.imu_sgd(0.1, alpha=0.1)
    head_grads = imu.split_head(grads, "head")[0]
    state = head_opt.init(head)
    # 2. whole tree: aggregate first, mask after
    whole_opt = optax.chain(imu.imu_sgd(0.1, alpha=0.1),
                            optax.masked(optax.set_to_zero(), imu.frozen_mask(params, "head")))
    whole, whole_state = params, whole_opt.init(params)
    for _ in range(3):
        updates, state = head_opt.update(head_grads, state, head, weights=weights)
        head = optax.apply_updates(head, updates)
        updates, whole_state = whole_opt.update(grads, whole_state, whole, weights=weights)
        whole = optax.apply_updates(whole, updates)
    split = imu.merge_head(head, rest)
    _tree_close(split, whole)
    np.testing.assert_array_equal(whole["body"], params["body"])  # frozen, shape kept
    expected = -0.1 * (-(weights @ grads["head"].reshape(6, -1)) / weights.sum())
    assert not np.allclose(whole["head"], params["head"])
    assert expected.shape == (24,)


# --- §3: accumulation equals one step over the union -----------------------------------------

ISSUE_WEIGHTS = jnp.array([4, 3, 2, 1, .1, .1, .1, .1], jnp.float32)


def _issue_grads():
    return jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)


def test_issue_numbers_union_vs_multisteps_vs_accumulate():
    g, w, zero = _issue_grads(), ISSUE_WEIGHTS, jnp.zeros(3)
    union = optax.chain(imu.weighted_ascent(), optax.sgd(1.0))
    full, _ = union.update(g, union.init(zero), zero, weights=w)
    np.testing.assert_allclose(full, [0.195, -0.087, 0.206], atol=1e-3)
    # the pattern transforms.py used to recommend: the mean of two micro-batch weighted means
    old = optax.chain(imu.weighted_ascent(),
                      optax.MultiSteps(optax.sgd(1.0), 2).gradient_transformation())
    state = old.init(zero)
    _, state = old.update(g[:4], state, zero, weights=w[:4])
    multi, _ = old.update(g[4:], state, zero, weights=w[4:])
    np.testing.assert_allclose(multi, [-0.052, -0.091, -0.053], atol=1e-3)
    # imu.accumulate: exactly the union
    opt = imu.accumulate(optax.chain(imu.weighted_ascent(), optax.sgd(1.0)), 2)
    state = opt.init(zero)
    first, state = opt.update(g[:4], state, zero, weights=w[:4])
    second, state = opt.update(g[4:], state, zero, weights=w[4:])
    np.testing.assert_array_equal(first, np.zeros(3))
    np.testing.assert_allclose(second, full, atol=1e-6)
    np.testing.assert_allclose(second, [0.195, -0.087, 0.206], atol=1e-3)


def _micro_batches(k=2, b=4, windows=3, seed=1):
    rng = np.random.default_rng(seed)
    params = {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
              "bias": jnp.zeros(2, jnp.float32)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(k * b,) + p.shape) + 0.5,
                                                jnp.float32), params) for _ in range(windows)]
    weights = [jnp.asarray(rng.uniform(0.05, 4.0, k * b), jnp.float32) for _ in range(windows)]
    return params, grads, weights


@pytest.mark.parametrize("mode", ["global", "per_batch", "global_buffered"])
def test_accumulate_equals_steps_over_unions(mode):
    k, b = 2, 4
    params, grads, weights = _micro_batches(k, b)
    per_batch = mode == "per_batch"
    make = lambda: imu.imu_sgd(0.1, alpha=0.05, momentum=0.9, milestones=[2],
                               per_batch=per_batch, top_fraction=0.5)
    acc = imu.accumulate(make(), k, micro_batch_size=None if mode == "global" else b)
    full = make()
    p_full, s_full = params, full.init(params)
    p_acc, s_acc = params, acc.init(params)
    step = jax.jit(acc.update)
    for g, w in zip(grads, weights):
        extra = {} if per_batch else {"weights": w}
        updates, s_full = full.update(g, s_full, p_full, **extra)
        p_full = optax.apply_updates(p_full, updates)
        for j in range(k):
            micro = jax.tree.map(lambda x: x[j * b:(j + 1) * b], g)
            extra = {} if per_batch else {"weights": w[j * b:(j + 1) * b]}
            updates, s_acc = step(micro, s_acc, p_acc, **extra)
            if j < k - 1:
                _tree_close(updates, jax.tree.map(jnp.zeros_like, params), atol=0)
            p_acc = optax.apply_updates(p_acc, updates)
        _tree_close(p_acc, p_full, atol=1e-6)
    assert not np.allclose(p_full["kernel"], params["kernel"])
    if per_batch:  # the influence counters see unions: 3 steps, kept = floor(n_neg/2) of 8
        inner = s_acc.inner_state[0]
        assert int(inner.count) == 3 == int(s_full[0].count)
        assert int(inner.last_num_kept) == int(s_full[0].last_num_kept)


def test_accumulate_per_batch_needs_micro_batch_size_and_fixed_sizes():
    params, grads, _ = _micro_batches()
    with pytest.raises(ValueError, match="micro_batch_size"):
        imu.accumulate(imu.imu_sgd(0.1, per_batch=True), 2).init(params)
    acc = imu.accumulate(imu.imu_sgd(0.1, per_batch=True), 2, micro_batch_size=4)
    with pytest.raises(ValueError, match="exactly 4"):
        acc.update(jax.tree.map(lambda x: x[:3], grads[0]), acc.init(params), params)
    with pytest.raises(ValueError, match="needs weights="):
        glob = imu.accumulate(imu.imu_sgd(0.1), 2)
        glob.update(grads[0], glob.init(params), params)


# --- §4: injected hyperparameters equal static ones ------------------------------------------

def test_keep_count_is_the_exact_decimal_floor_static_and_traced():
    n = np.arange(0, 400, dtype=np.int32)[:, None]
    percent = np.arange(1, 101)[None, :]
    exact = np.maximum(1, (n * percent) // 100)
    static = np.stack([imu.keep_count(n[:, 0], p / 100) for p in range(1, 101)], axis=1)
    traced = jax.jit(jax.vmap(jax.vmap(imu.keep_count, (None, 0)), (0, None)))(
        jnp.asarray(n[:, 0]), jnp.asarray(percent[0] / 100, jnp.float32))
    np.testing.assert_array_equal(static, exact)
    np.testing.assert_array_equal(np.asarray(traced), exact)


def _ninety_negative_grads(dtype):
    rng = np.random.default_rng(0)
    aligned = 1.0 + rng.uniform(0, 1, (90, 2))
    opposed = -0.1 * rng.uniform(0.5, 1, (30, 2))
    return jnp.asarray(np.concatenate([aligned, opposed]), dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_issue_example_inject_hyperparams_keeps_63_like_static(dtype):
    grads, params = _ninety_negative_grads(dtype), jnp.zeros(2, dtype)
    assert int(jnp.sum(imu.influence_from_grads(grads) < 0)) == 90
    static = imu.influence_weighted_ascent(top_fraction=0.7)
    state = static.init(params)
    static_updates, state = jax.jit(static.update)(grads, state, params)
    assert int(state.last_num_kept) == 63  # 90 · 0.7 = 63 (the public int(90 * 0.7) gives 62)
    injected = optax.inject_hyperparams(imu.influence_weighted_ascent,
                                        hyperparam_dtype=jnp.float32)(top_fraction=0.7)
    istate = injected.init(params)
    updates, istate = jax.jit(injected.update)(grads, istate, params)
    assert int(istate.inner_state.last_num_kept) == 63
    np.testing.assert_array_equal(np.asarray(updates, np.float32),
                                  np.asarray(static_updates, np.float32))
    scores = -jnp.arange(1.0, 91.0)
    assert len(imu.influence_weights(scores, top_fraction=0.7)[0]) == 63
    assert int(jax.jit(lambda t: imu.select_and_weight(scores, top_fraction=t)[1])(
        jnp.float32(0.7))) == 63


def test_bf16_selection_hyperparameters_are_refused_naming_hyperparam_dtype():
    params = jnp.zeros(2, jnp.bfloat16)
    injected = optax.inject_hyperparams(imu.influence_weighted_ascent)(top_fraction=0.7)
    with pytest.raises(ValueError, match="top_fraction arrived as bfloat16.*hyperparam_dtype="
                                         "jnp.float32"):
        injected.init(params)
    with pytest.raises(ValueError, match="clip_quantile arrived as bfloat16"):
        imu.select_and_weight(-jnp.arange(1.0, 5.0), clip_quantile=jnp.bfloat16(0.93))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_injected_damping_equals_static_in_the_gradients_dtype(dtype):
    grads, params = _ninety_negative_grads(dtype), jnp.zeros(2, dtype)
    grads = grads * jnp.linspace(0.5, 1.5, 120, dtype=dtype)[:, None]
    static = imu.influence_weighted_ascent(damping=0.03, top_fraction=0.7)
    injected = optax.inject_hyperparams(imu.influence_weighted_ascent,
                                        hyperparam_dtype=jnp.float32)(damping=0.03,
                                                                      top_fraction=0.7)
    a, _ = jax.jit(static.update)(grads, static.init(params), params)
    b, _ = jax.jit(injected.update)(grads, injected.init(params), params)
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_injected_imu_sgd_per_batch_equals_static():
    grads, params = _ninety_negative_grads(jnp.float32), jnp.zeros(2)
    static = imu.imu_sgd(0.1, per_batch=True, top_fraction=0.7, damping=0.02)
    injected = optax.inject_hyperparams(imu.imu_sgd, static_args=("per_batch",))(
        learning_rate=0.1, per_batch=True, top_fraction=0.7, damping=0.02)
    a, _ = static.update(grads, static.init(params), params)
    b, _ = jax.jit(injected.update)(grads, injected.init(params), params)
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --- §5 mechanism: resume reuses the saved selection -----------------------------------------

class Linear:
    def apply(self, params, state, x, *, train=False):
        return x @ params["head"]["kernel"] + params["head"]["bias"], state

    def features(self, params, state, x):
        return x


def _linear_problem():
    rng = np.random.default_rng(0)
    params = {"head": {"kernel": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
                       "bias": jnp.zeros(3)}}
    forget = {"image": rng.normal(size=(40, 5)).astype(np.float32),
              "label": rng.integers(0, 3, 40)}
    return params, forget


def test_resume_continues_from_the_saved_selection_when_recomputed_influence_differs(
        tmp_path, monkeypatch):
    """As on another mesh: the resumed run's influence rounds differently (here: perturbed by
    1e-3 relative, which changes weights and the kept set); it continues with what it saved."""
    import shutil

    from imu_jax.unlearning import run_checkpoint

    params, forget = _linear_problem()
    config = imu.UnlearnConfig(epochs=3, batch_size=8, top_fraction=0.5)
    straight, report = imu.unlearn(Linear(), params, forget, config, seed=3)
    with run_checkpoint.RunCheckpointer(tmp_path, save_every=2, keep=10) as ckpt:
        imu.unlearn(Linear(), params, forget, config, seed=3, checkpointer=ckpt)
    steps = sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit())
    for step in steps[1:]:
        shutil.rmtree(tmp_path / str(step))
    original = unlearn_selection.forget_influence

    def perturbed(*args, **kwargs):
        scores, closed = original(*args, **kwargs)
        noise = np.random.default_rng(9).uniform(-1e-3, 1e-3, scores.shape)
        return (scores * (1 + noise) + 1e-3 * np.abs(scores).max() * (np.arange(len(scores)) == 0)
                ).astype(np.float32), closed

    monkeypatch.setattr(unlearn_loop, "forget_influence", perturbed)
    with run_checkpoint.RunCheckpointer(tmp_path) as ckpt:
        resumed, resumed_report = imu.unlearn(Linear(), params, forget, config, seed=3,
                                              checkpointer=ckpt, resume=True)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed_report.num_kept == report.num_kept and resumed_report.steps == report.steps


def test_resume_with_another_forget_set_or_config_is_refused(tmp_path):

    params, forget = _linear_problem()
    config = imu.UnlearnConfig(epochs=1, batch_size=8)
    with run_checkpoint.RunCheckpointer(tmp_path, save_every=1) as ckpt:
        imu.unlearn(Linear(), params, forget, config, checkpointer=ckpt)
    other = {"image": forget["image"] + 1.0, "label": forget["label"]}
    for data, cfg, key in ((other, config, "forget_set"),
                           (forget, imu.UnlearnConfig(epochs=1, batch_size=4), "batch_size")):
        with run_checkpoint.RunCheckpointer(tmp_path) as ckpt:
            with pytest.raises(ValueError, match=f"saved for another run: .*{key}"):
                imu.unlearn(Linear(), params, data, cfg, checkpointer=ckpt, resume=True)


# --- §6: labels decided from the logits; degenerate metrics ----------------------------------

def test_one_hot_labels_are_converted_and_equal_integer_labels():
    params, forget = _linear_problem()
    config = imu.UnlearnConfig(epochs=2, batch_size=8)
    a, report_a = imu.unlearn(Linear(), params, forget, config)
    one_hot = {"image": forget["image"], "label": np.eye(3, dtype=np.float32)[forget["label"]]}
    b, report_b = imu.unlearn(Linear(), params, one_hot, config)
    _tree_close(a, b, atol=0)
    assert report_a.num_kept == report_b.num_kept


@pytest.mark.parametrize("labels, match", [
    (np.zeros((40, 4), np.float32), r"integer classes \[N\] = \[40\] or one-hot \[N, C\] = "
                                    r"\[40, 3\]; got labels of shape \(40, 4\)"),
    (np.full((40, 3), 1 / 3, np.float32), r"one-hot \[N, C\]"),
    (np.zeros(40, np.float32), r"dtype float32"),
])
def test_bad_labels_name_the_expected_shapes(labels, match):
    params, forget = _linear_problem()
    with pytest.raises(ValueError, match=match):
        imu.unlearn(Linear(), params, {"image": forget["image"], "label": labels},
                    imu.UnlearnConfig(epochs=1))


def test_sequence_labels_must_match_the_sequence_logits():
    with pytest.raises(ValueError, match=r"next tokens \[N, T\] = \[2, 5\]"):
        losses.labels_for_logits((2, 5, 7), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match=r"\[N, C\] \(classes\) or \[N, T, V\]"):
        losses.labels_for_logits((2,), np.zeros(2, np.int32))


def test_degenerate_metric_inputs_are_documented_values_or_clear_errors():
    probs = np.tile([[0.7, 0.3]], (6, 1))
    labels = np.zeros(6, np.int64)
    empty_p, empty_y = np.zeros((0, 2)), np.zeros(0, np.int64)
    assert np.isnan(imu.accuracy(empty_p, empty_y))
    assert np.isnan(imu.mia_efficacy(probs, labels, probs, labels, empty_p, empty_y))
    with pytest.raises(ValueError, match="no members"):  # empty retain: one-class shadow set
        imu.mia_efficacy(empty_p, empty_y, probs, labels, probs, labels)
    with pytest.raises(ValueError, match="no non-members"):  # empty test split
        imu.mia_efficacy(probs, labels, empty_p, empty_y, probs, labels)
    with pytest.raises(ValueError, match=r"probs \[N, C\] and integer labels \[N\]"):
        imu.mia_features(np.zeros(3), labels[:3])
    with pytest.raises(ValueError, match="no non-members"):
        metrics.classification_metrics({"forget": probs, "retain": probs, "test": empty_p},
                                       {"forget": labels, "retain": labels, "test": empty_y},
                                       mia_kinds=("confidence",))


@pytest.mark.parametrize("buffered", [False, True])
def test_accumulate_under_jit_skips_invalid_micro_batches_and_empty_windows(buffered):
    """An invalid micro-batch (negative / NaN weights, under jit) contributes nothing and is
    counted; a window whose weights sum to zero is a no-op step (state untouched); never NaN."""
    k, b = 2, 4
    params, grads, weights = _micro_batches(k, b)
    make = lambda: imu.imu_sgd(0.1, alpha=0.05, momentum=0.9)
    acc = imu.accumulate(make(), k, micro_batch_size=b if buffered else None)
    step = jax.jit(acc.update)
    g = grads[0]
    first = jax.tree.map(lambda x: x[:b], g)
    second = jax.tree.map(lambda x: x[b:], g)
    w_good = weights[0][b:]
    bad = jnp.array([1.0, -1.0, jnp.nan, 2.0])

    state = acc.init(params)
    _, state = step(first, state, params, weights=bad)          # invalid: contributes nothing
    updates, state = step(second, state, params, weights=w_good)
    assert int(state.invalid_weights) == 1
    # = one step on the second micro-batch alone (the first had weight zero)
    alone = make()
    expected, _ = alone.update(second, alone.init(params), params, weights=w_good)
    if buffered:  # the union with zero weights on the first half
        expected, _ = alone.update(g, alone.init(params), params,
                                   weights=jnp.concatenate([jnp.zeros(b), w_good]))
    _tree_close(updates, expected, atol=1e-6)

    # a window of zero weights: zero update, the optimizer's state untouched
    before = state.inner_state
    for micro in (first, second):
        updates, state = step(micro, state, params, weights=jnp.zeros(b))
        _tree_close(updates, jax.tree.map(jnp.zeros_like, params), atol=0)
    chex.assert_trees_all_equal(state.inner_state, before)
    chex.assert_tree_all_finite(state)
    with pytest.raises(ValueError, match="weights"):  # eagerly, as before
        acc.update(first, state, params, weights=bad)
