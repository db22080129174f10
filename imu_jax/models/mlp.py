"""Multi-layer perceptron on flattened images.

Examples:
  >>> import jax.numpy as jnp
  >>> m = MLP(num_classes=10, input_shape=(8, 8, 1), hidden=(32,), seed=0)
  >>> m(jnp.zeros((2, 8, 8, 1))).shape
  (2, 10)
"""

from __future__ import annotations

import math

import jax

from flax import nnx


class MLP(nnx.Module):
    """ReLU MLP; hidden layers are ``dense0``, ``dense1``, …; the classifier is ``head``."""

    def __init__(self, *, num_classes: int, input_shape, hidden=(256, 256), seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.num_hidden = len(hidden)
        sizes = (math.prod(input_shape), *hidden)
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"dense{i}", nnx.Linear(d_in, d_out, rngs=rngs))
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        h = x.reshape(x.shape[0], -1)
        for i in range(self.num_hidden):
            h = jax.nn.relu(getattr(self, f"dense{i}")(h))
        return h

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train))


