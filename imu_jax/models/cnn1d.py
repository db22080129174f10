"""MNIST-1D's convolutional baseline: three strided 1-D convolutions with ReLU, then the ``head``.

The layout of ``ConvBase`` in the ``mnist1d`` package (Greydanus & Kobak, 2024): conv(k5, s2, p1),
conv(k3, s2, p1), conv(k3, s2, p1), 25 channels each, the flattened maps (25 x 5 = 125 values for
length 40) feed the linear classifier. Input ``[N, L, C]``.

Examples:
  >>> import jax.numpy as jnp
  >>> m = CNN1D(num_classes=10, input_shape=(40, 1))
  >>> m(jnp.zeros((2, 40, 1))).shape, m.features(jnp.zeros((2, 40, 1))).shape
  ((2, 10), (2, 125))
"""

from __future__ import annotations

import jax
from flax import nnx


def _out_len(length: int, kernel: int, stride: int, pad: int) -> int:
    return (length + 2 * pad - kernel) // stride + 1


class CNN1D(nnx.Module):
    """Strided 1-D convolutions ``conv0``, ``conv1``, … (``kernels``), ReLU, flatten, ``head``."""

    def __init__(self, *, num_classes: int, input_shape, channels: int = 25,
                 kernels=(5, 3, 3), seed: int = 0):
        rngs = nnx.Rngs(seed)
        length, c = input_shape
        self.num_convs = len(kernels)
        for i, k in enumerate(kernels):
            setattr(self, f"conv{i}", nnx.Conv(c, channels, (k,), strides=(2,),
                                               padding=((1, 1),), rngs=rngs))
            c, length = channels, _out_len(length, k, 2, 1)
        self.head = nnx.Linear(c * length, num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        for i in range(self.num_convs):
            x = jax.nn.relu(getattr(self, f"conv{i}")(x))
        return x.reshape(x.shape[0], -1)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train))


__all__ = ["CNN1D"]
