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
