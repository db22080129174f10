"""Pure-function view of an NNX model: ``params``/``state`` dicts plus ``apply``/``features``.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from imu_jax.models import create
  >>> fm = functional(create("mlp", num_classes=3, input_shape=(4,), hidden=(5,)))
  >>> jax.tree.map(jnp.shape, fm.params["head"])
  {'bias': (3,), 'kernel': (5, 3)}
  >>> logits, state = jax.jit(fm.apply)(fm.params, fm.state, jnp.ones((2, 4)))
  >>> logits.shape, state
  ((2, 3), {})
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

PyTree = Any


def _pure(state: nnx.State) -> dict:
    return nnx.to_pure_dict(state) if len(state) else {}


def reseed(module: nnx.Module, rng: jax.Array) -> None:
    """Reseeds every RNG stream of ``module`` (Dropout's) from the key ``rng``, one key per
    stream (``jax.random.fold_in``), so train-mode randomness is a function of ``rng`` alone."""
    tags = sorted({v.tag for v in jax.tree.leaves(nnx.state(module, nnx.RngKey),
                                                   is_leaf=lambda v: isinstance(v, nnx.Variable))})
    if tags:
        nnx.reseed(module, policy="match_shape",
                   **{tag: jax.random.fold_in(rng, i) for i, tag in enumerate(tags)})


@dataclasses.dataclass(frozen=True, eq=False)
class FunctionalModel:
    """A model as pure functions. ``params``/``state`` hold the initial values.

    Attributes:
      name: architecture name ("mlp", "cnn", "resnet18", "transformer").
      config: everything :func:`imu_jax.models.from_config` needs to re-create it.
      graphdef: the NNX graph definition (static structure).
      params: pure dict of the ``nnx.Param`` values.
      state: pure dict of the other variables (BatchNorm statistics); ``{}`` when none.
    """

    name: str
    config: dict
    graphdef: Any
    params: dict
    state: dict

    def module(self, params: PyTree, state: PyTree) -> nnx.Module:
        """Re-assembles an ``nnx.Module`` holding ``params`` and ``state``."""
        return nnx.merge(self.graphdef, params, state)

    def apply(self, params: PyTree, state: PyTree, x: jax.Array, *, train: bool = False,
              rng: jax.Array | None = None):
        """Returns ``(logits, new_state)``; ``train=True`` updates BatchNorm statistics (and
        draws from ``rng``, a ``jax.random`` key, where the model has RNG streams)."""
        model = self.module(params, state)
        if rng is not None:
            reseed(model, rng)
        logits = model(x, train=train)
        new_state = _pure(nnx.state(model, nnx.Not(nnx.Param))) if state else {}
        return logits, new_state

    def features(self, params: PyTree, state: PyTree, x: jax.Array) -> jax.Array:
        """The input of ``head`` (inference mode): ``[N, D]``, or ``[N, T, D]`` for sequences."""
        return self.module(params, state).features(x, train=False)

    def num_params(self) -> int:
        """Number of trainable scalars."""
        return sum(int(p.size) for p in jax.tree.leaves(self.params))


def functional(model: nnx.Module) -> FunctionalModel:
    """Splits ``model`` (made by :func:`imu_jax.models.create`) into a :class:`FunctionalModel`."""
    config = getattr(model, "imu_config", None)
    if config is None:
        raise ValueError("functional() needs a model made by imu_jax.models.create().")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return FunctionalModel(name=config["name"], config=dict(config), graphdef=graphdef,
                           params=_pure(params), state=_pure(rest))
