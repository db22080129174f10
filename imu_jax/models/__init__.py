"""Flax NNX models: ``mlp``, ``cnn``, ``cnn1d``, ``fastcnn``, ``resnet18``, ``transformer``; each
has a ``head`` Linear.

Examples:
  >>> import jax.numpy as jnp
  >>> fm = functional(create("cnn", num_classes=10, input_shape=(8, 8, 1), channels=(4,), dense=8))
  >>> fm.name, fm.config["channels"], sorted(fm.params["head"])
  ('cnn', (4,), ['bias', 'kernel'])
  >>> fm.features(fm.params, fm.state, jnp.zeros((3, 8, 8, 1))).shape
  (3, 8)
"""

from __future__ import annotations

import inspect

from flax import nnx

from imu_jax.models.cnn import CNN
from imu_jax.models.cnn1d import CNN1D
from imu_jax.models.fastcnn import FastCNN
from imu_jax.models.functional import FunctionalModel, functional
from imu_jax.models.mlp import MLP
from imu_jax.models.resnet import ResNet
from imu_jax.models.transformer import Transformer

REGISTRY = {"mlp": MLP, "cnn": CNN, "resnet18": ResNet, "transformer": Transformer, "cnn1d": CNN1D,
            "fastcnn": FastCNN}


def _normalise(value):
    return tuple(_normalise(v) for v in value) if isinstance(value, (list, tuple)) else value


def model_config(name: str, *, num_classes: int, input_shape, seed: int = 0, **overrides) -> dict:
    """The full architecture config (defaults filled in) that :func:`create` would use.

    >>> model_config("mlp", num_classes=10, input_shape=(8, 8, 1))["hidden"]
    (256, 256)
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}; valid: {', '.join(REGISTRY)}.")
    params = inspect.signature(REGISTRY[name].__init__).parameters
    unknown = set(overrides) - set(params)
    if unknown:
        valid = [p for p in params if p not in ("self", "num_classes", "input_shape", "seed")]
        raise ValueError(f"Unknown option(s) {sorted(unknown)} for model {name!r}; valid: {valid}.")
    config = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    config.update(overrides, num_classes=int(num_classes), input_shape=tuple(input_shape),
                  seed=int(seed))
    return {"name": name, **{k: _normalise(v) for k, v in config.items()}}


def create(name: str, *, num_classes: int, input_shape, seed: int = 0, **overrides) -> nnx.Module:
    """Builds model ``name``; ``overrides`` set architecture options (e.g. ``width=8``)."""
    config = model_config(name, num_classes=num_classes, input_shape=input_shape, seed=seed,
                          **overrides)
    return from_config(config)


def from_config(config: dict) -> nnx.Module:
    """Re-creates a model from ``FunctionalModel.config`` (e.g. read from a checkpoint)."""
    kwargs = {k: _normalise(v) for k, v in config.items() if k != "name"}
    model = REGISTRY[config["name"]](**kwargs)
    model.imu_config = {"name": config["name"], **kwargs}
    return model


__all__ = [
    "CNN",
    "CNN1D",
    "FastCNN",
    "MLP",
    "REGISTRY",
    "FunctionalModel",
    "ResNet",
    "Transformer",
    "create",
    "from_config",
    "functional",
    "model_config",
]
