"""A frozen body computed once: IMU's ascent steps and stopping checks over cached head inputs.

IMU updates only the head. When the head is one dense layer whose input the model gives (the
closed form's condition and probe, :func:`imu_jax.unlearning.closed_form.head_features`) and the
body is frozen and deterministic (inference mode, no ``update_batch_stats``), the logits are
``features @ kernel + bias`` with ``features`` fixed for the whole run: :func:`imu_jax.unlearn`
computes them once for the forget set and the held-out data and runs on :class:`HeadModel`,
a protocol model over those features. ``UnlearnConfig(cache_features="never")`` forces the full
forward pass at every step and check.

Examples:
  >>> import jax.numpy as jnp
  >>> from imu_jax.heads import DenseHead
  >>> model = HeadModel(DenseHead("head/kernel", "head/bias"))
  >>> params = {"body": {"kernel": jnp.ones((3, 2))},
  ...           "head": {"kernel": jnp.eye(2), "bias": jnp.array([0.0, 1.0])}}
  >>> model.apply(params, {}, jnp.array([[1.0, 2.0]]))[0].tolist()
  [[1.0, 3.0]]
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from imu_jax import heads
from imu_jax.heads import DenseHead
from imu_jax.unlearning.closed_form import head_features
from imu_jax.unlearning.config import PyTree


@dataclasses.dataclass(frozen=True)
class HeadModel:
    """The head alone as a model: ``apply(params, state, features)`` is ``features @ kernel +
    bias``, the kernel and bias read from the full ``params`` at the ``dense`` paths (so the
    loop, the monitor and ``on_step`` keep the full parameters). Compares by its paths: equal
    heads share compiled steps and checks."""

    dense: DenseHead

    @property
    def config(self) -> dict:
        return {"name": "head-only", "kernel": self.dense.kernel_path}

    def apply(self, params: PyTree, state: PyTree, x: jax.Array, *, train: bool = False,
              rng: jax.Array | None = None):
        del train, rng  # a dense layer: no mode, no randomness
        layer = self.dense.take(params)
        return x @ layer["kernel"] + layer["bias"], state


def plan_cache(model, params: PyTree, state: PyTree, x: PyTree, y: np.ndarray, head: PyTree,
               config, place, influence):
    """``(HeadModel, features of the forget set, reason)`` when the frozen body can be computed
    once (module docstring), else ``(None, None, why not)``. ``influence`` is
    :func:`~imu_jax.unlearning.selection.forget_influence`'s result (its closed form's features
    are reused) or None."""
    if config.cache_features == "never":
        return None, None, "not cached: cache_features='never'"
    if config.update_batch_stats:
        return None, None, ("not cached: update_batch_stats (the body's BatchNorm statistics "
                            "change at every step)")
    if place:
        return None, None, "not cached: a device mesh (the full model runs sharded)"
    features = getattr(influence, "features", None)
    if features is not None:  # the closed form computed them, with the same probe
        dense = heads.dense_softmax_head(head)
    else:
        dense, features, why = head_features(model, params, state, x, y, head)
        if dense is None:
            return None, None, f"not cached: {why}"
    layer = dense.kernel_path.rsplit("/", 1)[0]
    return HeadModel(dense), features, (
        f"cached: the head {layer!r} is one dense layer over features "
        f"{list(np.shape(features)[1:])} per example; the frozen body ran once")
