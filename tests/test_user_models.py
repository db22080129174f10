"""The core from a user's side: their own Flax NNX and Linen models, whose classifier is not
named ``head``, and every public array function of the core under ``jax.jit`` — with the arrays
traced (arguments of the jitted function) and closed over (constants of it) — equal to eager."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import imu_jax as imu

N, D_IN, HIDDEN, CLASSES = 12, 5, 7, 3
TOL = dict(rtol=2e-5, atol=1e-6)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.body = nnx.Linear(D_IN, HIDDEN, rngs=rngs)
        self.classifier = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def features(self, x):
        return jnp.tanh(self.body(x))

    def __call__(self, x):
        return self.classifier(self.features(x))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, features_only=False):
        h = jnp.tanh(nn.Dense(HIDDEN)(x))
        return h if features_only else nn.Dense(CLASSES)(h)  # Dense_1: the classifier


def _ce(logits, label):
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)


def nnx_setup():
    model = NnxNet(nnx.Rngs(0))
    graphdef, head, rest = nnx.split(model, nnx.All(nnx.Param, nnx.PathContains("classifier")),
                                     ...)

    def make_loss(rest):
        def loss(head, example):
            return _ce(nnx.merge(graphdef, head, rest)(example["x"]), example["y"])
        return loss

    def features(x):
        return model.features(x)

    return head, rest, make_loss, features, imu.dense_softmax_head(head).take(head)


def linen_setup():
    net = LinenNet()
    variables = net.init(jax.random.key(1), jnp.ones((1, D_IN)))
    head, rest = imu.split_head(variables, imu.path_prefix("params/Dense_1"))

    def make_loss(rest):
        def loss(head, example):
            return _ce(net.apply(imu.merge_head(head, rest), example["x"]), example["y"])
        return loss

    def features(x):
        return net.apply(variables, x, features_only=True)

    return head, rest, make_loss, features, imu.dense_softmax_head(head).take(variables)


SETUPS = {"nnx": nnx_setup, "linen": linen_setup}


@pytest.fixture(scope="module", params=sorted(SETUPS))
def user(request):
    head, rest, make_loss, features, dense = SETUPS[request.param]()
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(N, D_IN)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, CLASSES, N), jnp.int32)}
    return dict(head=head, rest=rest, make_loss=make_loss, loss=make_loss(rest),
                features=features, dense=dense, batch=batch,
                weights=jnp.linspace(0.5, 2.0, N, dtype=jnp.float32))


def same_under_jit(fn, *args):
    """``fn(*args)`` eagerly, jitted with the arrays as arguments, jitted with them closed over:
    the three agree."""
    eager = fn(*args)
    traced = jax.jit(fn)(*args)
    closed = jax.jit(lambda: fn(*args))()
    chex.assert_trees_all_close(traced, eager, **TOL)
    chex.assert_trees_all_close(closed, eager, **TOL)
    return eager


def test_influence_scores_with_a_closed_over_body_traced_or_constant(user):
    loss, make_loss = user["loss"], user["make_loss"]
    for chunk_size in (None, 5):
        scores = same_under_jit(
            lambda head, batch: imu.influence_scores(loss, head, batch, chunk_size=chunk_size),
            user["head"], user["batch"])
        # the body itself traced: the loss closes over tracers of the caller's jit
        traced_body = jax.jit(
            lambda head, rest, batch: imu.influence_scores(make_loss(rest), head, batch,
                                                           chunk_size=chunk_size))
        chex.assert_trees_all_close(traced_body(user["head"], user["rest"], user["batch"]),
                                    scores, **TOL)
    # the closed form on the head found by structure gives the same numbers
    closed_form = same_under_jit(
        lambda features, labels, dense: imu.classifier_influence(features, labels, dense),
        user["features"](user["batch"]["x"]), user["batch"]["y"], user["dense"])
    chex.assert_trees_all_close(closed_form, scores, rtol=1e-4, atol=1e-5)


def test_per_example_grads_and_influence_from_grads(user):
    grads = same_under_jit(lambda head, batch: imu.per_example_grads(user["loss"], head, batch),
                           user["head"], user["batch"])
    leaves = jax.tree.leaves(grads)
    assert all(g.shape[0] == N for g in leaves)
    scores = same_under_jit(imu.influence_from_grads, grads)
    chex.assert_trees_all_close(
        scores, imu.influence_scores(user["loss"], user["head"], user["batch"]), **TOL)


def test_selection_functions(user):
    scores = imu.influence_scores(user["loss"], user["head"], user["batch"])
    order, num_kept, weights, fell_back = same_under_jit(
        lambda s: imu.select_and_weight(s, top_fraction=0.5), scores)
    idx, w = imu.influence_weights(scores, top_fraction=0.5)
    np.testing.assert_array_equal(np.asarray(order)[:int(num_kept)], idx)
    np.testing.assert_allclose(np.asarray(weights)[idx], w, rtol=1e-6)
    assert not bool(fell_back)
    # influence_weights is host-side: closed-over scores work under jit, traced ones are refused
    closed = jax.jit(lambda: imu.influence_weights(scores, top_fraction=0.5))()
    np.testing.assert_array_equal(closed[0], idx)
    with pytest.raises(TypeError, match="select_and_weight"):
        jax.jit(lambda s: imu.influence_weights(s))(scores)
    counts = same_under_jit(lambda n, f: imu.keep_count(n, f), jnp.int32(90), jnp.float32(0.7))
    assert int(counts) == 63


OPTIMIZERS = {
    "weighted_ascent": (lambda: optax.chain(imu.weighted_ascent(), optax.sgd(0.1)), True),
    "weighted_ascent_inner": (lambda: imu.weighted_ascent(inner=optax.adam(0.01)), True),
    "influence_weighted_ascent": (
        lambda: imu.influence_weighted_ascent(top_fraction=1.0, inner=optax.sgd(0.1)), False),
    "l1_penalty": (lambda: optax.chain(imu.weighted_ascent(), imu.l1_penalty(0.2),
                                       optax.sgd(0.1)), True),
    "imu_sgd": (lambda: imu.imu_sgd(0.1, milestones=[1]), True),
    "imu_sgd_per_batch": (lambda: imu.imu_sgd(0.1, per_batch=True), False),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates(user, name):
    make, uses_weights = OPTIMIZERS[name]
    opt = make()
    head = user["head"]
    grads = imu.per_example_grads(user["loss"], head, user["batch"])
    state = opt.init(head)

    def two_steps(grads, state, head, weights):
        extra = {"weights": weights} if uses_weights else {}
        for _ in range(2):
            updates, state = opt.update(grads, state, head, **extra)
            head = optax.apply_updates(head, updates)
        return head, state

    new_head, _ = same_under_jit(two_steps, grads, state, head, user["weights"])
    moved = [float(jnp.max(jnp.abs(a - b)))
             for a, b in zip(jax.tree.leaves(new_head), jax.tree.leaves(head))]
    assert max(moved) > 1e-4


@pytest.mark.parametrize("micro_batch_size", [None, N // 2])
def test_accumulate(user, micro_batch_size):
    head = user["head"]
    acc = imu.accumulate(imu.imu_sgd(0.1), 2, micro_batch_size=micro_batch_size)
    grads = imu.per_example_grads(user["loss"], head, user["batch"])

    def window(grads, state, head, weights):
        for j in range(2):
            micro = jax.tree.map(lambda g: g[j * N // 2:(j + 1) * N // 2], grads)
            updates, state = acc.update(micro, state, head,
                                        weights=weights[j * N // 2:(j + 1) * N // 2])
            head = optax.apply_updates(head, updates)
        return head, state

    new_head, _ = same_under_jit(window, grads, acc.init(head), head, user["weights"])
    whole = imu.imu_sgd(0.1)
    updates, _ = whole.update(grads, whole.init(head), head, weights=user["weights"])
    chex.assert_trees_all_close(new_head, optax.apply_updates(head, updates), **TOL)


def test_sequence_influence_on_a_user_language_model_head():
    class TinyLm(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(11, 6, rngs=rngs)
            self.lm_out = nnx.Linear(6, 11, rngs=rngs)  # the output projection

        def features(self, tokens):
            return jnp.tanh(self.embed(tokens))

    model = TinyLm(nnx.Rngs(2))
    head_state, _ = imu.split_head(nnx.state(model, nnx.Param), "lm_out")
    dense = imu.dense_softmax_head(head_state).take(head_state)
    rng = np.random.default_rng(3)
    tokens = jnp.asarray(rng.integers(0, 11, (4, 6)), jnp.int32)
    labels = jnp.asarray(np.where(rng.random((4, 6)) < 0.2, -1, rng.integers(0, 11, (4, 6))),
                         jnp.int32)
    features = model.features(tokens)
    scores = same_under_jit(
        lambda f, y, h: imu.sequence_influence(f, y, h, vocab_chunk=4), features, labels, dense)

    def loss(head, example):  # mean token cross-entropy over non-padding tokens
        logits = example["f"] @ head["kernel"] + head["bias"]
        mask = example["y"] >= 0
        ce = _ce(logits, jnp.where(mask, example["y"], 0))
        return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)

    generic = imu.influence_scores(loss, dense, {"f": features, "y": labels})
    chex.assert_trees_all_close(scores, generic, rtol=1e-4, atol=1e-6)
