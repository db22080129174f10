"""The jitted, sharded IMU unlearning step and a resumable, checkpointed loop around it.

One step (spec §3): per-example gradients of the head on a mini-batch of kept forget examples →
``optimizer.update(grads, state, params, weights=w)`` (e.g. :func:`imu_jax.imu_sgd`) → new head.
:func:`make_unlearn_step` jits it with output shardings and donated buffers, so on a mesh the
mini-batch is sharded over ``data``, the head and optimizer state stay where they were placed
(replicated or over ``model``), and nothing is gathered.

:func:`run_unlearning` drives it: a deterministic batch plan (one permutation of the kept
examples per epoch, from a saved RNG key; the last batch of an epoch is padded with zero-weight
rows, which leaves ``Σ w ℓ / Σ w`` unchanged and keeps shapes fixed), checkpoints every
``save_every`` steps through :class:`imu_jax.unlearning.run_checkpoint.RunCheckpointer`, and ``resume`` to
continue bit-identically from the newest readable checkpoint.

Examples use eight devices; on a CPU, fake them before JAX starts (a fresh session):

  >>> import os
  >>> os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from imu_jax import _layout, sharding
from imu_jax.unlearning.loop_checkpoint import LoopCheckpoint


__all__ = ["make_unlearn_step", "init_opt_state", "run_unlearning", "batch_plan"]

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


def make_unlearn_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformationExtraArgs,
    *,
    params_sharding: PyTree | None = None,
    opt_state_sharding: PyTree | None = None,
    donate: bool = True,
) -> Callable:
    """``step(params, opt_state, batch, weights) -> (params, opt_state, loss)``, jitted.

    ``loss_fn(params, example) -> scalar`` is the loss of ONE example (close over the frozen rest
    of the model); ``weights`` is ``[B]`` (zeros allowed for padding rows); ``loss`` is the
    ascended objective's data term ``Σ w ℓ / Σ w``. With shardings given, the outputs are pinned
    to them (``out_shardings``) and ``params``/``opt_state`` are donated.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> from imu_jax.unlearning.steps import make_unlearn_step, init_opt_state
      >>> loss = lambda w, ex: 0.5 * jnp.sum((ex["x"] @ w - ex["y"]) ** 2)
      >>> opt = imu.imu_sgd(0.1, alpha=0.0, weight_decay=0.0)
      >>> w = jnp.zeros(2); state, _ = init_opt_state(opt, w)
      >>> step = make_unlearn_step(loss, opt, donate=False)
      >>> batch = {"x": jnp.eye(2), "y": jnp.ones(2)}
      >>> w, state, l = step(w, state, batch, jnp.ones(2))
      >>> w.tolist(), float(l)          # ascent: moves away from the targets
      ([-0.05000000074505806, -0.05000000074505806], 0.5)
    """

    def step(params, opt_state, batch, weights):
        losses, grads = jax.vmap(jax.value_and_grad(loss_fn), in_axes=(None, 0))(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params, weights=weights)
        params = optax.apply_updates(params, updates)
        weights = weights.astype(losses.dtype)
        return params, opt_state, jnp.sum(weights * losses) / jnp.sum(weights)

    out_shardings = None
    if params_sharding is not None:
        mesh = jax.tree.leaves(params_sharding)[0].mesh
        out_shardings = (params_sharding, opt_state_sharding, NamedSharding(mesh, P()))
    return jax.jit(step, out_shardings=out_shardings, donate_argnums=(0, 1) if donate else ())


def init_opt_state(optimizer: optax.GradientTransformation, params: PyTree,
                   params_sharding: PyTree | None = None) -> tuple[PyTree, PyTree | None]:
    """``(opt_state, opt_state_sharding)``: the state created already sharded like ``params``.

    Parameter-shaped leaves (momentum, …) follow ``params_sharding``; counters are replicated.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> from imu_jax import sharding
      >>> from imu_jax.unlearning.steps import init_opt_state
      >>> mesh = sharding.make_mesh("data=4,model=2")
      >>> head = sharding.shard_params({"kernel": jnp.ones((3, 4))}, mesh)
      >>> state, _ = init_opt_state(imu.imu_sgd(0.1), head, {"kernel": head["kernel"].sharding})
      >>> state[3][0].trace["kernel"].sharding.spec     # the momentum, sharded like the head
      P(None, 'model')
    """
    if params_sharding is None:
        return jax.jit(optimizer.init)(params), None
    mesh = jax.tree.leaves(params_sharding)[0].mesh
    shapes = jax.eval_shape(optimizer.init, params)
    state_sharding = optax.tree_map_params(
        optimizer, lambda _, s: s, shapes, params_sharding,
        transform_non_params=lambda _: NamedSharding(mesh, P()))
    return jax.jit(optimizer.init, out_shardings=state_sharding)(params), state_sharding


def batch_plan(step: int, num_kept: int, batch_size: int, rng: np.ndarray) -> np.ndarray:
    """Rows (into the kept examples) of mini-batch ``step``; ``-1`` marks padding.

    Epoch ``e`` uses the permutation ``jax.random.permutation(fold_in(key, e), num_kept)``; it
    depends only on ``(step, rng)``, so a resumed run replays exactly the same batches.

    Examples:
      >>> import jax
      >>> from imu_jax.unlearning.steps import batch_plan
      >>> key = jax.random.key_data(jax.random.key(0))
      >>> rows = [batch_plan(s, 5, 2, key) for s in range(3)]
      >>> sorted(int(r) for b in rows for r in b if r >= 0), int(rows[2][1])
      ([0, 1, 2, 3, 4], -1)
    """
    per_epoch = math.ceil(num_kept / batch_size)
    epoch, position = divmod(int(step), per_epoch)
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32)), epoch)
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        order = np.asarray(jax.random.permutation(key, num_kept))
    rows = order[position * batch_size:(position + 1) * batch_size]
    return np.concatenate([rows, -np.ones(batch_size - len(rows), rows.dtype)])


def _global(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value that every process holds in full."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def run_unlearning(
    loss_fn: LossFn,
    params: PyTree,
    forget: PyTree,
    indices: np.ndarray,
    weights: np.ndarray,
    *,
    optimizer: optax.GradientTransformationExtraArgs,
    num_steps: int,
    batch_size: int = 256,
    seed: int = 0,
    mesh: Mesh | None = None,
    data_axis: str = sharding.DATA_AXIS,
    model_axis: str | None = sharding.MODEL_AXIS,
    checkpointer=None,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[PyTree, dict]:
    """Runs ``num_steps`` IMU steps on the selected forget examples, checkpointed and resumable.

    Args:
      loss_fn: ``loss_fn(params, example) -> scalar`` (one example; the head as ``params``).
      params: the head parameters to unlearn (host or device arrays).
      forget: the forget set, a pytree of arrays with a leading axis ``N``: host arrays, or
        global arrays already sharded over ``data`` (e.g. from
        :func:`imu_jax.sharding.shard_batch` with each process's slice).
      indices, weights: the selection (:func:`imu_jax.influence_weights`), same on all processes.
      optimizer: e.g. ``imu_jax.imu_sgd(...)``; called with ``weights=`` per batch.
      num_steps: total optimizer steps (a resumed run continues up to it).
      batch_size: mini-batch size (at most the number kept; rounded up to fill the data axis).
      seed: seeds the RNG key that orders the batches (saved in the checkpoints).
      mesh: device mesh; ``None`` = one device. The batch is sharded over ``data_axis``, the
        params over ``model_axis`` (FSDP-style, if the mesh has it) else replicated.
      checkpointer: a :class:`imu_jax.unlearning.run_checkpoint.RunCheckpointer` or ``None``.
      resume: continue from ``checkpointer``'s newest readable checkpoint, if any. ``indices``
        must be the saved ones and ``weights`` equal them to 1e-3 relative (influence recomputed
        on another mesh rounds differently); the run continues with the saved weights.
        ``config`` must equal the saved one.
      config: JSON-able run description stored with each checkpoint.
      on_step: ``on_step(step, loss)`` after each step (e.g. logging); ``step`` counts from 1.

    Returns:
      ``(params, info)``; ``info`` has ``steps``, ``start_step`` (> 0 when resumed), ``losses``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, imu_jax as imu
      >>> from imu_jax import sharding
      >>> from imu_jax.unlearning import run_checkpoint
      >>> from imu_jax.unlearning.steps import run_unlearning
      >>> loss = lambda w, ex: 0.5 * jnp.sum((ex["x"] @ w - ex["y"]) ** 2)
      >>> forget = {"x": np.eye(8, 2, dtype=np.float32), "y": np.ones(8, np.float32)}
      >>> w, info = run_unlearning(loss, jnp.zeros(2), forget, np.arange(8), np.ones(8),
      ...                          optimizer=imu.imu_sgd(0.1), num_steps=3, batch_size=4,
      ...                          mesh=sharding.make_mesh(data=4, devices=jax.devices()[:4]))
      >>> info["steps"], w.sharding.spec, bool(jnp.all(w < 0))     # ascent moved w away
      (3, P(), True)
    """
    loop = LoopCheckpoint(checkpointer, total_steps=num_steps, resume=resume, config=config,
                          selection={"indices": indices, "weights": weights})
    saved = loop.saved_selection()  # resuming: continue with the weights the run saved
    if saved is not None:
        _check_same_selection(saved, indices, weights, checkpointer)
        indices, weights = saved["indices"], saved["weights"]
    indices = np.asarray(indices, np.int32)
    weights = np.asarray(weights, np.float32)
    loop.selection = {"indices": indices, "weights": weights}
    if indices.ndim != 1 or indices.shape != weights.shape or not len(indices):
        raise ValueError(f"indices and weights must be equal-length non-empty vectors, got "
                         f"{indices.shape} and {weights.shape}.")
    if mesh is None:
        mesh = sharding.make_mesh(data=1, devices=jax.local_devices()[:1], axis_types="auto")
    shards = mesh.shape.get(data_axis, 1)
    batch_size = min(int(batch_size), len(indices))
    batch_size = -(-batch_size // shards) * shards
    data = sharding.batch_sharding(mesh, data_axis)
    replicated = sharding.replicated(mesh)

    params_sharding = sharding.param_shardings(
        params, mesh, model_axis=model_axis if model_axis in mesh.shape else None)
    if jax.process_count() == 1:
        # a fresh copy: the step donates its inputs, the caller keeps theirs
        params = jax.tree.map(jnp.copy, jax.device_put(params, params_sharding))
    elif all(isinstance(x, jax.Array) for x in jax.tree.leaves(params)):  # global arrays
        params = jax.jit(lambda p: p, out_shardings=params_sharding)(params)
    else:
        params = jax.tree.map(lambda x, s: _global(np.asarray(x), s), params, params_sharding)
    opt_state, state_sharding = init_opt_state(optimizer, params, params_sharding)
    if not all(isinstance(x, jax.Array) for x in jax.tree.leaves(forget)):
        forget = jax.tree.map(lambda x: _global(x, data), forget)
    state = {"params": params, "opt_state": opt_state,
             "step": _global(np.zeros((), np.int32), replicated),
             "rng": _global(np.asarray(jax.random.key_data(jax.random.key(seed))), replicated)}
    start, state = loop.start(state)

    step_fn = make_unlearn_step(loss_fn, optimizer, params_sharding=params_sharding,
                                opt_state_sharding=state_sharding)
    gather = jax.jit(_gather, static_argnames=("sharding",))
    rng = np.asarray(jax.device_get(state["rng"]))
    padded_weights = np.concatenate([weights, np.zeros(1, np.float32)])
    params, opt_state = state["params"], state["opt_state"]
    losses = []
    for step in range(start, int(num_steps)):
        rows = batch_plan(step, len(indices), batch_size, rng)
        examples = _global(indices[np.where(rows < 0, 0, rows)], data)
        batch = gather(forget, examples, sharding=data)
        batch_weights = _global(padded_weights[rows], data)
        params, opt_state, loss = step_fn(params, opt_state, batch, batch_weights)
        if checkpointer is not None:
            state = {"params": params, "opt_state": opt_state,
                     "step": _global(np.asarray(step + 1, np.int32), replicated),
                     "rng": state["rng"]}
            loop.done(step + 1, state)
        if on_step is not None:
            loss = float(loss)
            on_step(step + 1, loss)
        losses.append(loss)
    loop.finish()
    return params, {"steps": int(num_steps), "start_step": start,
                    "losses": [float(x) for x in losses], "batch_size": batch_size}


def _check_same_selection(saved, indices, weights, checkpointer) -> None:
    """The caller's selection must be the saved one: the same examples, and weights equal up to
    the rounding of influence recomputed on another mesh (1e-3 relative; ~1e-5 is typical)."""
    indices, weights = np.asarray(indices), np.asarray(weights, np.float32)
    if not (saved["indices"].shape == indices.shape
            and np.array_equal(saved["indices"], indices)
            and np.allclose(saved["weights"], weights, rtol=1e-3, atol=0)):
        raise ValueError(
            f"the checkpoint in {checkpointer.directory} was saved for another selection of "
            f"forget examples ({len(saved['indices'])} kept) than this run's ({len(indices)} "
            "kept, or other weights); resume with the same data and settings, or use another "
            "checkpoint directory.")


def _gather(forget, index, *, sharding):
    """``forget[index]`` with the result sharded like ``sharding`` (both axis types)."""

    def take(x):
        if _layout.explicit_spec(x) is not None:
            return x.at[index].get(out_sharding=sharding)
        return jax.lax.with_sharding_constraint(jnp.take(x, index, axis=0), sharding)

    return jax.tree.map(take, forget)
