"""The optax transforms: exact steps against the reference, composition, jit, errors (spec §3)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imu_jax as imu
import reference_imu as ref
from _problem import batch, head_loss_fn, make_problem, to_jax
from test_influence import assert_close


@pytest.fixture(scope="module")
def problem():
    params, xs, ys = make_problem(seed=1)
    return params, xs, ys, to_jax(params), batch(xs, ys)


def head_grads(jparams, head, jbatch, indices):
    sub = jax.tree.map(lambda a: a[jnp.asarray(indices)], jbatch)
    return imu.per_example_grads(head_loss_fn(jparams["body"]), head, sub)


def test_two_imu_sgd_steps_match_reference(problem):
    """Global influence → selection → weights → two SGD steps on two different mini-batches."""
    params, xs, ys, jparams, jbatch = problem
    scores = imu.classifier_influence(
        jnp.tanh(jbatch["x"] @ jparams["body"]["kernel"] + jparams["body"]["bias"]), jbatch["y"],
        jparams["head"])
    idx, w = imu.influence_weights(scores, top_fraction=0.5)
    ref_idx, ref_w = ref.weights(ref.influence(params, xs, ys, head_only=True), top_fraction=0.5)
    np.testing.assert_array_equal(idx, ref_idx)
    batches = [(idx[: len(idx) // 2 + 1], w[: len(idx) // 2 + 1]), (idx[len(idx) // 2:], w[len(idx) // 2:])]
    hp = dict(lr=0.05, alpha=0.2, momentum=0.9, weight_decay=5e-4)

    expected = ref.sgd_steps(params, xs, ys, [(i, np.asarray(wi, np.float64)) for i, wi in batches], **hp)

    opt = imu.imu_sgd(hp["lr"], alpha=hp["alpha"], momentum=hp["momentum"],
                      weight_decay=hp["weight_decay"])
    head = jparams["head"]
    state = opt.init(head)
    for indices, weights in batches:
        grads = head_grads(jparams, head, jbatch, indices)
        updates, state = opt.update(grads, state, head, weights=jnp.asarray(weights))
        head = optax.apply_updates(head, updates)
    assert_close(np.concatenate([np.ravel(head["kernel"]), head["bias"]]), ref.head_vector(expected))
    # The steps moved the head: the comparison is not between two unchanged parameter sets.
    assert not np.allclose(ref.head_vector(expected), ref.head_vector(params), rtol=1e-3)


def test_uniform_weights_equal_mean_gradient_ascent(problem):
    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    grads = imu.per_example_grads(loss, jparams["head"], jbatch)
    n = jbatch["y"].shape[0]
    aggregated, _ = imu.weighted_ascent().update(grads, optax.EmptyState(), weights=jnp.ones(n))
    mean_loss = lambda h: jnp.mean(jax.vmap(loss, in_axes=(None, 0))(h, jbatch))
    ascent = jax.tree.map(jnp.negative, jax.grad(mean_loss)(jparams["head"]))
    chex.assert_trees_all_close(aggregated, ascent, rtol=1e-5, atol=1e-7)
    # A constant scale of the weights changes nothing.
    scaled, _ = imu.weighted_ascent().update(grads, optax.EmptyState(), weights=3.0 * jnp.ones(n))
    chex.assert_trees_all_close(scaled, aggregated, rtol=1e-5, atol=1e-7)


def test_per_batch_variant_equals_global_pipeline_on_the_batch(problem):
    params, xs, ys, jparams, jbatch = problem
    sub = np.arange(12)
    grads = head_grads(jparams, jparams["head"], jbatch, sub)
    opt = imu.influence_weighted_ascent(top_fraction=0.5)
    updates, state = opt.update(grads, opt.init(jparams["head"]), jparams["head"])
    idx, w = ref.weights(ref.influence(params, xs[sub], ys[sub], head_only=True), top_fraction=0.5)
    expected = -sum(wi * ref.example_grad(params, xs[i], ys[i], head_only=True)
                    for i, wi in zip(idx, w)) / np.sum(w)
    assert_close(np.concatenate([np.ravel(updates["kernel"]), updates["bias"]]), expected)
    assert int(state.last_num_kept) == len(idx) and int(state.num_fallbacks) == 0


def test_per_batch_fallback_is_counted_not_crashed():
    grads = {"w": jnp.array([[1.0, 0.0], [-1.0, 0.0]])}  # ḡ = 0, so every score is 0
    opt = imu.influence_weighted_ascent()
    updates, state = jax.jit(opt.update)(grads, opt.init({"w": jnp.zeros(2)}))
    assert int(state.num_fallbacks) == 1 and int(state.last_num_kept) == 2
    np.testing.assert_allclose(updates["w"], [0.0, 0.0])


def test_l1_penalty_adds_alpha_sign(problem):
    head = problem[3]["head"]
    updates, _ = imu.l1_penalty(0.3).update(jax.tree.map(jnp.zeros_like, head), (), head)
    chex.assert_trees_all_close(updates, jax.tree.map(lambda p: 0.3 * jnp.sign(p), head))
    with pytest.raises(ValueError):
        imu.l1_penalty(0.3).update(head, ())


# --- composition ------------------------------------------------------------------------------


def test_jit_step_does_not_retrace(problem):
    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    opt = imu.imu_sgd(0.01, milestones=[1])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(head, state, examples, weights):
        grads = imu.per_example_grads(loss, head, examples)
        updates, state = opt.update(grads, state, head, weights=weights)
        return optax.apply_updates(head, updates), state

    head, state = jparams["head"], opt.init(jparams["head"])
    for start in (0, 8, 16):
        examples = jax.tree.map(lambda a: a[start:start + 8], jbatch)
        head, state = step(head, state, examples, jnp.linspace(1.0, 2.0, 8))
    chex.assert_tree_all_finite(head)


def test_inject_hyperparams_schedules_the_learning_rate(problem):
    _, _, _, jparams, jbatch = problem
    grads = head_grads(jparams, jparams["head"], jbatch, np.arange(6))
    opt = optax.inject_hyperparams(imu.imu_sgd)(learning_rate=0.1, alpha=0.0, weight_decay=0.0)
    state = opt.init(jparams["head"])
    updates, state = opt.update(grads, state, jparams["head"], weights=jnp.ones(6))
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    frozen, _ = opt.update(grads, state, jparams["head"], weights=jnp.ones(6))
    plain = imu.imu_sgd(0.1, alpha=0.0, weight_decay=0.0)
    expected, _ = plain.update(grads, plain.init(jparams["head"]), jparams["head"], weights=jnp.ones(6))
    chex.assert_trees_all_close(updates, expected, rtol=1e-6)
    chex.assert_trees_all_close(frozen, jax.tree.map(jnp.zeros_like, expected))


def test_multisteps_after_aggregation_accumulates(problem):
    _, _, _, jparams, jbatch = problem
    head = jparams["head"]
    g1 = head_grads(jparams, head, jbatch, np.arange(4))
    g2 = head_grads(jparams, head, jbatch, np.arange(4, 10))
    w1, w2 = jnp.ones(4), jnp.linspace(0.5, 1.5, 6)
    opt = optax.chain(imu.weighted_ascent(),
                      optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2).gradient_transformation())
    state = opt.init(head)
    first, state = opt.update(g1, state, head, weights=w1)
    chex.assert_trees_all_close(first, jax.tree.map(jnp.zeros_like, head))  # still accumulating
    second, state = opt.update(g2, state, head, weights=w2)
    a1, _ = imu.weighted_ascent().update(g1, optax.EmptyState(), weights=w1)
    a2, _ = imu.weighted_ascent().update(g2, optax.EmptyState(), weights=w2)
    chex.assert_trees_all_close(second, jax.tree.map(lambda x, y: -0.1 * (x + y) / 2, a1, a2),
                                rtol=1e-5, atol=1e-8)


def test_chain_with_masked_head_over_full_tree(problem):
    """The whole tree through one optimizer, the body frozen by the head selector's mask."""
    _, _, _, jparams, jbatch = problem
    grads = imu.per_example_grads(
        lambda p, ex: head_loss_fn(p["body"])(p["head"], ex), jparams, jbatch)
    opt = optax.chain(imu.weighted_ascent(), optax.sgd(0.1),
                      optax.masked(optax.set_to_zero(), imu.frozen_mask(jparams, "^head/")))
    updates, _ = opt.update(grads, opt.init(jparams), jparams, weights=jnp.ones(len(jbatch["y"])))
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates["body"]))
    assert all(float(jnp.abs(u).max()) > 0.0 for u in jax.tree.leaves(updates["head"]))


# --- bad input ---------------------------------------------------------------------------------


def test_missing_weights_is_an_error(problem):
    head = problem[3]["head"]
    opt = imu.weighted_ascent()
    with pytest.raises(TypeError, match="weights"):
        opt.update(jax.tree.map(lambda p: p[None], head), opt.init(head), head)


def test_weights_of_wrong_length(problem):
    head = problem[3]["head"]
    grads = jax.tree.map(lambda p: jnp.stack([p] * 3), head)
    with pytest.raises(ValueError, match="weights has 2 entries but per_example_grads has 3"):
        imu.weighted_ascent().update(grads, optax.EmptyState(), head, weights=jnp.ones(2))


def test_missing_example_axis(problem):
    head = problem[3]["head"]
    with pytest.raises(ValueError, match="leading example axis"):
        imu.weighted_ascent().update(head, optax.EmptyState(), head, weights=jnp.ones(8))
    with pytest.raises(ValueError, match="leading example axis"):
        imu.influence_weighted_ascent().update(head, (), head)


def test_bad_weights_values(problem):
    """Eagerly, negative or non-finite weights raise; all-zero weights are a no-op step."""
    head = problem[3]["head"]
    grads = jax.tree.map(lambda p: jnp.stack([p] * 2), head)
    for weights in (jnp.array([1.0, jnp.nan]), jnp.array([-1.0, 2.0]), jnp.array([1.0, jnp.inf])):
        with pytest.raises(ValueError, match="weights"):
            imu.weighted_ascent().update(grads, optax.EmptyState(), head, weights=weights)
    zero, state = imu.weighted_ascent().update(grads, optax.EmptyState(), head,
                                               weights=jnp.zeros(2))
    chex.assert_trees_all_equal(zero, jax.tree.map(jnp.zeros_like, head))
    assert int(state.zero_weights) == 1 and int(state.invalid_weights) == 0


def test_imu_sgd_per_batch_uses_its_selection_arguments(problem):
    _, _, _, jparams, jbatch = problem
    grads = head_grads(jparams, jparams["head"], jbatch, np.arange(20))
    kept = {}
    for fraction in (0.2, 1.0):
        opt = imu.imu_sgd(0.01, per_batch=True, top_fraction=fraction)
        _, state = opt.update(grads, opt.init(jparams["head"]), jparams["head"])
        kept[fraction] = int(state[0].last_num_kept)
    assert kept[0.2] < kept[1.0]


# --- order cannot be wrong ---------------------------------------------------------------------

UPSTREAM = {
    "clip_by_global_norm": lambda: optax.clip_by_global_norm(0.1),
    "scale": lambda: optax.scale(2.0),
    "adam": lambda: optax.adam(0.1),
    "add_decayed_weights": lambda: optax.add_decayed_weights(1e-3),
}
PER_EXAMPLE = {
    "weighted_ascent": lambda: imu.weighted_ascent(),
    "influence_weighted_ascent": lambda: imu.influence_weighted_ascent(),
    "imu_sgd": lambda: imu.imu_sgd(0.1),
    "accumulate": lambda: imu.accumulate(optax.chain(imu.weighted_ascent(), optax.sgd(1.0)), 2),
}


@pytest.mark.parametrize("per_example", sorted(PER_EXAMPLE))
@pytest.mark.parametrize("upstream", sorted(UPSTREAM))
def test_a_transform_before_a_per_example_transform_is_refused_at_init(upstream, per_example):
    """The issue's chains: clip / scale / adam / decay first would transform the [N, ...] stack."""
    head = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}
    opt = optax.chain(UPSTREAM[upstream](), PER_EXAMPLE[per_example](), optax.sgd(1.0))
    with pytest.raises(ValueError, match=r"transformation 2 of an optax chain.*must come first"):
        opt.init(head)
    nested = optax.chain(UPSTREAM[upstream](), optax.chain(PER_EXAMPLE[per_example](),
                                                           optax.sgd(1.0)))
    with pytest.raises(ValueError, match="transformation 2 of an optax chain"):
        jax.jit(nested.init)(head)
    named = optax.named_chain(("first", UPSTREAM[upstream]()), ("imu", PER_EXAMPLE[per_example]()))
    with pytest.raises(ValueError, match="transformation 2"):
        named.init(head)
    # first in the chain (also nested, also wrapped) is fine
    optax.chain(PER_EXAMPLE[per_example](), UPSTREAM[upstream]()).init(head)
    optax.chain(optax.chain(PER_EXAMPLE[per_example]()), UPSTREAM[upstream]()).init(head)
    optax.inject_hyperparams(imu.imu_sgd)(learning_rate=0.1).init(head)


def test_inner_owns_the_rest_of_the_chain_so_clipping_sees_the_aggregate():
    """The issue's numbers: clip_by_global_norm(0.1) of the aggregated gradient gives an update
    of norm 0.100 (clipping the [N, ...] stack gave 0.011)."""
    rng = np.random.default_rng(0)
    g = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, 16), jnp.float32)
    opt = imu.weighted_ascent(inner=optax.chain(optax.clip_by_global_norm(0.1), optax.sgd(1.0)))
    updates, state = jax.jit(opt.update)(g, opt.init(jnp.zeros(5)), jnp.zeros(5), weights=w)
    np.testing.assert_allclose(float(jnp.linalg.norm(updates)), 0.1, rtol=1e-5)
    ascent = -(w @ g) / w.sum()  # weighted_ascent's output; sgd(1.0) then negates it
    np.testing.assert_allclose(updates, -0.1 * ascent / jnp.linalg.norm(ascent), rtol=1e-5)
    assert int(state[0].count) == 1
    per_batch = imu.influence_weighted_ascent(top_fraction=1.0, inner=optax.sgd(1.0))
    updates, state = per_batch.update(g, per_batch.init(jnp.zeros(5)), jnp.zeros(5))
    assert int(state[0].count) == 1 and updates.shape == (5,)


def test_multisteps_around_a_per_example_transform_says_what_to_do():
    head = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}
    wrapped = optax.MultiSteps(optax.chain(imu.weighted_ascent(), optax.sgd(1.0)), 2)
    with pytest.raises(ValueError, match=r"MultiSteps.*imu_jax.accumulate\(optimizer, k\).*"
                                         r"gradient_transformation\(\)"):
        wrapped.init(head)
    # What MultiSteps hands the inner optimizer: parameter-shaped gradients. The message names
    # the cause and the two fixes instead of blaming the shapes.
    with pytest.raises(ValueError, match=r"shaped like the parameters.*MultiSteps.*"
                                         r"imu_jax.accumulate"):
        imu.weighted_ascent().update(head, optax.EmptyState(), head, weights=jnp.ones(3))
    # The fix optax documents for its DP aggregate works: MultiSteps around the rest only.
    ok = optax.chain(imu.weighted_ascent(),
                     optax.MultiSteps(optax.sgd(1.0), 2).gradient_transformation())
    ok.init(head)


# --- weights checked under jit, without wrapping ---------------------------------------------


@pytest.mark.parametrize("bad", ["zeros", "negative", "nan", "inf"])
def test_no_op_weights_under_jit_give_zero_updates_and_a_flag(problem, bad):
    _, _, _, jparams, jbatch = problem
    head = jparams["head"]
    grads = head_grads(jparams, head, jbatch, np.arange(4))
    weights = {"zeros": jnp.zeros(4), "negative": jnp.array([1.0, -1.0, 2.0, 1.0]),
               "nan": jnp.array([1.0, jnp.nan, 2.0, 1.0]),
               "inf": jnp.array([1.0, jnp.inf, 2.0, 1.0])}[bad]
    good = jnp.linspace(1.0, 2.0, 4)
    counter = "zero_weights" if bad == "zeros" else "invalid_weights"

    bare = imu.weighted_ascent()
    updates, state = jax.jit(bare.update)(grads, bare.init(head), head, weights=weights)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, head))
    assert int(getattr(state, counter)) == 1 and int(state.count) == 1

    # imu_sgd (and weighted_ascent(inner=...)) skip the whole chain: momentum, decay and the L1
    # term do not move the head, the inner state is untouched; the next good batch proceeds.
    opt = imu.imu_sgd(0.1, alpha=0.2, momentum=0.9, milestones=[2])

    @jax.jit
    def step(head, state, w):
        updates, state = opt.update(grads, state, head, weights=w)
        return optax.apply_updates(head, updates), state

    state = opt.init(head)
    moved, state = step(head, state, good)
    kept, after = step(moved, state, weights)
    chex.assert_trees_all_equal(kept, moved)
    chex.assert_trees_all_equal(after[1:], state[1:])
    assert int(getattr(after[0], counter)) == 1 and int(after[0].count) == 2
    chex.assert_tree_all_finite(kept)
    if bad != "zeros":
        with pytest.raises(ValueError, match="weights"):  # eagerly it raises, as before
            opt.update(grads, state, head, weights=weights)
    else:
        eager, _ = opt.update(grads, state, moved, weights=weights)
        chex.assert_trees_all_equal(eager, jax.tree.map(jnp.zeros_like, head))


def test_select_and_weight_zeros_for_dropped_examples_feed_weighted_ascent(problem):
    """``select_and_weight``'s [N] weights (zeros for dropped examples) go straight in, and a
    batch of dropped examples only is a no-op, not NaN."""
    _, _, _, jparams, jbatch = problem
    head = jparams["head"]
    scores = imu.influence_scores(head_loss_fn(jparams["body"]), head, jbatch)
    _, _, weights, _ = jax.jit(imu.select_and_weight)(scores)
    dropped = np.flatnonzero(np.asarray(weights) == 0)[:4]
    grads = head_grads(jparams, head, jbatch, dropped)
    opt = imu.imu_sgd(0.1)
    updates, state = jax.jit(opt.update)(grads, opt.init(head), head,
                                         weights=weights[jnp.asarray(dropped)])
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, head))
    assert int(state[0].zero_weights) == 1


# --- schedules and milestones ------------------------------------------------------------------


def test_milestones_multiply_a_schedule_and_are_steps():
    params = jnp.zeros(2)
    g = jnp.ones((1, 2))  # ascent on a loss of gradient 1: the update is +lr (no momentum)
    warm = optax.linear_schedule(0.0, 1.0, transition_steps=4)
    opt = imu.imu_sgd(warm, milestones=[2], gamma=0.1, alpha=0.0, weight_decay=0.0, momentum=0.0)
    state, lrs = opt.init(params), []
    for _ in range(4):
        updates, state = opt.update(g, state, params, weights=jnp.ones(1))
        lrs.append(float(updates[0]))
    np.testing.assert_allclose(lrs, [0.0, 0.25, 0.05, 0.075], rtol=1e-6)
    assert imu.imu_sgd(0.1, milestones=[5.0]) is not None  # an integral float is a step
    for bad in ([0.5], [0], [1.5], [True]):
        with pytest.raises(ValueError, match=r"milestones are optimizer steps.*round\(f \* "
                                             r"total_steps\)"):
            imu.imu_sgd(0.1, milestones=bad)


# --- the per-batch variant on an Explicit mesh ---------------------------------------------------


@pytest.mark.eight_devices
def test_per_batch_variant_on_an_explicit_mesh_matches_one_device(problem):
    """The batch on P("data") of an 8-device Explicit mesh: the sort of the scores needs them
    whole (they are gathered); the step equals the one-device step."""
    from jax.sharding import PartitionSpec as P

    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    examples = jax.tree.map(lambda a: a[:32], jbatch)
    opt = imu.imu_sgd(0.1, per_batch=True, top_fraction=0.5)

    def step(head, state, batch):
        grads = imu.per_example_grads(loss, head, batch)
        updates, state = opt.update(grads, state, head)
        return optax.apply_updates(head, updates), state

    expected, expected_state = jax.jit(step)(jparams["head"], opt.init(jparams["head"]), examples)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        batch = jax.device_put(examples, P("data"))
        head = jax.device_put(jparams["head"], P())
        new_head, state = jax.jit(step)(head, opt.init(head), batch)
    chex.assert_trees_all_close(new_head, expected, rtol=1e-5, atol=1e-7)
    assert int(state[0].last_num_kept) == int(expected_state[0].last_num_kept) > 0
