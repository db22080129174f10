"""A small, fast CIFAR network in the layout of airbench (Jordan, 2024), for CPU training.

A 3x3 conv-BN-GELU stem, then per width a group conv3x3 -> 2x2 max-pool -> BN -> GELU -> conv3x3
-> BN -> GELU, a global max-pool and the linear ``head``. Only the layout is airbench's: no
whitening initialisation, no lookahead, no test-time flips (see docs/DEVIATIONS.md).

Examples:
  >>> import jax.numpy as jnp
  >>> m = FastCNN(num_classes=10, input_shape=(32, 32, 3), widths=(8, 16))
  >>> m(jnp.zeros((2, 32, 32, 3))).shape, m.features(jnp.zeros((2, 32, 32, 3))).shape
  ((2, 10), (2, 16))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBN(nnx.Module):
    """3x3 conv (no bias), optional 2x2 max-pool, BatchNorm, GELU."""

    def __init__(self, c_in: int, c_out: int, pool: bool, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.pool = pool

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.conv(x)
        if self.pool:
            x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return jax.nn.gelu(self.bn(x, use_running_average=not train))


class FastCNN(nnx.Module):
    """``stem`` then ``group{i}a`` (pooling) / ``group{i}b`` per entry of ``widths``."""

    def __init__(self, *, num_classes: int, input_shape, stem: int = 24,
                 widths=(32, 64, 128), seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.stem = ConvBN(input_shape[-1], stem, False, rngs)
        self.num_groups = len(widths)
        c = stem
        for i, w in enumerate(widths):
            setattr(self, f"group{i}a", ConvBN(c, w, True, rngs))
            setattr(self, f"group{i}b", ConvBN(w, w, False, rngs))
            c = w
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.stem(x, train)
        for i in range(self.num_groups):
            x = getattr(self, f"group{i}b")(getattr(self, f"group{i}a")(x, train), train)
        return jnp.max(x, axis=(1, 2))

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train))


__all__ = ["FastCNN"]
