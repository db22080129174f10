"""A small CNN: conv blocks (conv-ReLU-conv-ReLU-avgpool), a dense layer, the ``head``.

Examples:
  >>> import jax.numpy as jnp
  >>> m = CNN(num_classes=10, input_shape=(8, 8, 1), channels=(8,), dense=16)
  >>> m(jnp.zeros((2, 8, 8, 1))).shape
  (2, 10)
"""

from __future__ import annotations



import jax
from flax import nnx


class CNN(nnx.Module):
    """Each block halves the resolution; ``channels`` sets the number and width of blocks."""

    def __init__(self, *, num_classes: int, input_shape, channels=(32, 64), dense: int = 128,
                 seed: int = 0):
        rngs = nnx.Rngs(seed)
        h, w, c = input_shape
        self.num_blocks = len(channels)
        for i, ch in enumerate(channels):
            setattr(self, f"conv{i}a", nnx.Conv(c, ch, (3, 3), rngs=rngs))
            setattr(self, f"conv{i}b", nnx.Conv(ch, ch, (3, 3), rngs=rngs))
            c, h, w = ch, h // 2, w // 2
        self.dense = nnx.Linear(c * h * w, dense, rngs=rngs)
        self.head = nnx.Linear(dense, num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        for i in range(self.num_blocks):
            x = jax.nn.relu(getattr(self, f"conv{i}a")(x))
            x = jax.nn.relu(getattr(self, f"conv{i}b")(x))
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train))


__all__ = ["CNN"]
