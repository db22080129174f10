"""Every optimizer state the core creates saves and restores with Orbax (StandardSave /
StandardRestore through a CheckpointManager), before and after steps, including the global mode
of ``accumulate`` (it used to hold a zero-size array, which Orbax refuses to save)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import imu_jax as imu

HEAD = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}

OPTIMIZERS = {
    "weighted_ascent": (lambda: imu.weighted_ascent(), True),
    "weighted_ascent_inner": (lambda: imu.weighted_ascent(inner=optax.sgd(0.1, momentum=0.9)),
                              True),
    "influence_weighted_ascent": (lambda: imu.influence_weighted_ascent(), False),
    "influence_weighted_ascent_inner": (
        lambda: imu.influence_weighted_ascent(inner=optax.adam(0.1)), False),
    "l1_penalty": (lambda: optax.chain(imu.weighted_ascent(), imu.l1_penalty(0.1)), True),
    "imu_sgd": (lambda: imu.imu_sgd(0.1, milestones=[3]), True),
    "imu_sgd_schedule": (lambda: imu.imu_sgd(optax.linear_schedule(0.1, 0.0, 10),
                                             milestones=[3]), True),
    "imu_sgd_per_batch": (lambda: imu.imu_sgd(0.1, per_batch=True), False),
    "injected_imu_sgd": (lambda: optax.inject_hyperparams(imu.imu_sgd)(learning_rate=0.1), True),
    "accumulate_global": (lambda: imu.accumulate(imu.imu_sgd(0.1), 2), True),
    "accumulate_per_batch": (
        lambda: imu.accumulate(imu.imu_sgd(0.1, per_batch=True), 2, micro_batch_size=4), False),
    "accumulate_buffered_weights": (
        lambda: imu.accumulate(imu.imu_sgd(0.1), 2, micro_batch_size=4), True),
}


def _round_trip(directory, state):
    with ocp.CheckpointManager(directory) as manager:
        manager.save(0, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        return manager.restore(0, args=ocp.args.StandardRestore(abstract))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_saves_and_restores_with_orbax(tmp_path, name):
    make, uses_weights = OPTIMIZERS[name]
    opt = make()
    state = opt.init(HEAD)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(4,) + p.shape), jnp.float32),
                         HEAD)
    extra = {"weights": jnp.array([1.0, 2.0, 0.5, 1.0])} if uses_weights else {}
    for step in range(3):  # past a window of accumulate, with non-zero counters and momentum
        _, state = jax.jit(opt.update)(grads, state, HEAD, **extra)
        restored = _round_trip(tmp_path / f"step{step}", state)
        assert jax.tree.structure(restored) == jax.tree.structure(state)
        chex.assert_trees_all_equal(restored, state)
    # the restored state steps on like the original
    a, _ = opt.update(grads, state, HEAD, **extra)
    b, _ = opt.update(grads, restored, HEAD, **extra)
    chex.assert_trees_all_close(a, b)
