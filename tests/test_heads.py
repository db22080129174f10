"""Head selection on plain dicts and Flax NNX state."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import imu_jax as imu

PARAMS = {
    "blocks": [{"attn": {"q": {"kernel": jnp.ones((2, 2))}}}, {"attn": {"q": {"kernel": jnp.ones((2, 2))}}}],
    "head": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
}


def test_paths_are_slash_joined():
    assert imu.param_paths(PARAMS) == [
        "blocks/0/attn/q/kernel", "blocks/1/attn/q/kernel", "head/bias", "head/kernel"]


def test_split_and_merge_round_trip():
    head, rest = imu.split_head(PARAMS, r"^head/")
    assert head["blocks"][0]["attn"]["q"]["kernel"] is None
    assert rest["head"]["kernel"] is None
    assert len(jax.tree.leaves(head)) == 2 and len(jax.tree.leaves(rest)) == 2
    merged = imu.merge_head(head, rest)
    assert jax.tree.structure(merged) == jax.tree.structure(PARAMS)
    assert all(a is b for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(PARAMS)))


def test_predicate_selector():
    head, _ = imu.split_head(PARAMS, lambda path, leaf: path.startswith("blocks/1/"))
    assert imu.param_paths(head) == ["blocks/1/attn/q/kernel"]


def test_selector_matching_nothing_lists_paths():
    with pytest.raises(ValueError, match=r"matches no parameter.*head/kernel"):
        imu.split_head(PARAMS, "classifier")


def test_split_head_works_on_nnx_state_and_trains_only_the_head():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(3, 4, rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

    _, state = nnx.split(Net(nnx.Rngs(0)), nnx.Param)
    assert "head/kernel" in imu.param_paths(state)
    head, rest = imu.split_head(state, "^head/")
    opt = optax.sgd(1.0)
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, head), opt.init(head), head)
    new_head = optax.apply_updates(head, updates)
    merged = imu.merge_head(new_head, rest)
    flat = dict(zip(imu.param_paths(merged), jax.tree.leaves(merged)))
    flat_before = dict(zip(imu.param_paths(state), jax.tree.leaves(state)))
    assert jnp.allclose(flat["head/bias"], flat_before["head/bias"] - 1.0)
    assert jnp.array_equal(flat["body/kernel"], flat_before["body/kernel"])


def test_partition_labels():
    labels = imu.head_labels(PARAMS, "^head/")
    opt = optax.partition({"head": optax.sgd(1.0), "frozen": optax.set_to_zero()}, labels)
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, PARAMS), opt.init(PARAMS))
    assert float(updates["head"]["kernel"][0, 0]) == -1.0
    assert float(updates["blocks"][0]["attn"]["q"]["kernel"][0, 0]) == 0.0


# --- the closed form's head found by structure; anchored and ambiguous selectors ---------------


def _linen_params():
    import flax.linen as nn

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8)(x))
            x = nn.relu(nn.Dense(6)(x))
            return nn.Dense(3)(x)  # Dense_2: the classifier, not named "head"

    return Classifier().init(jax.random.key(0), jnp.ones((1, 4)))


def test_dense_softmax_head_found_by_structure_in_linen_and_nnx():
    variables = _linen_params()
    head, _ = imu.split_head(variables, imu.path_prefix("params/Dense_2"))
    dense = imu.dense_softmax_head(head)
    assert dense == ("params/Dense_2/kernel", "params/Dense_2/bias")
    taken = dense.take(variables)
    assert taken["kernel"].shape == (6, 3) and taken["bias"].shape == (3,)
    assert jnp.array_equal(taken["kernel"], variables["params"]["Dense_2"]["kernel"])

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(4, 8, rngs=rngs)
            self.classifier = nnx.Linear(8, 3, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    head, _ = imu.split_head(state, "classifier")
    dense = imu.dense_softmax_head(head)
    assert dense == ("classifier/kernel", "classifier/bias")
    taken = dense.take(head)
    assert isinstance(taken["kernel"], jax.Array) and taken["kernel"].shape == (8, 3)


def test_dense_softmax_head_is_none_for_what_is_not_one_dense_layer():
    variables = _linen_params()
    assert imu.dense_softmax_head(variables) is None  # three layers
    two_kernels = {"a": {"kernel": jnp.ones((3, 2))}, "b": {"kernel": jnp.ones((3, 2))}}
    assert imu.dense_softmax_head(two_kernels) is None
    mismatched = {"out": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(3)}}  # bias is not [C]
    assert imu.dense_softmax_head(mismatched) is None
    split_layers = {"a": {"kernel": jnp.ones((3, 2))}, "b": {"bias": jnp.ones(2)}}
    assert imu.dense_softmax_head(split_layers) is None
    assert imu.dense_softmax_head(PARAMS) is None
    head, _ = imu.split_head(PARAMS, imu.path_prefix("head"))
    assert imu.dense_softmax_head(head) == ("head/kernel", "head/bias")


def test_path_prefix_is_anchored_and_ambiguous_plain_selectors_are_reported():
    params = {"pre_head": {"kernel": jnp.ones((2, 2))},
              "head": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
              "blocks": {"head": {"kernel": jnp.ones((2, 2))}}}
    # the default regex matches three layers; the anchored selector one
    assert imu.head_candidates(params, "head") == ["blocks/head", "head", "pre_head"]
    assert imu.head_candidates(params, imu.path_prefix("head")) == ["head"]
    assert imu.param_paths(imu.split_head(params, imu.path_prefix("head"))[0]) == [
        "head/bias", "head/kernel"]
    with pytest.raises(ValueError, match=r"(?s)'head' is ambiguous: it matches 3 layers, "
                                         r"blocks/head, head, pre_head.*path_prefix\('head'\)"):
        imu.check_head_selector(params, "head")
    imu.check_head_selector(params, imu.path_prefix("head"))  # exact: fine
    imu.check_head_selector(params, r"^head/")               # a regex says what it means
    with pytest.raises(ValueError, match="matches no parameter"):
        imu.check_head_selector(params, "classifier")
    with pytest.raises(ValueError, match="non-empty"):
        imu.path_prefix("/")
    # several layers that all carry the word as a whole component: a deliberate multi-layer head
    imu.check_head_selector(PARAMS, "attn")
    # the existing functions keep their regex semantics (no breaking change)
    assert len(imu.param_paths(imu.split_head(params, "head")[0])) == 4
