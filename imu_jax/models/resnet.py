"""ResNet-18, CIFAR variant (3x3 stem, no max-pool), with BatchNorm.

Examples:
  >>> import jax.numpy as jnp
  >>> m = ResNet(num_classes=10, input_shape=(32, 32, 3), width=4, stage_sizes=(1, 1))
  >>> m(jnp.zeros((2, 32, 32, 3))).shape
  (2, 10)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BasicBlock(nnx.Module):
    """Two 3x3 conv-BN layers with a (projected when shapes change) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.project = stride != 1 or c_in != c_out
        if self.project:
            self.short_conv = nnx.Conv(c_in, c_out, (1, 1), strides=stride, use_bias=False,
                                       rngs=rngs)
            self.short_bn = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = self.bn2(self.conv2(y), use_running_average=ura)
        if self.project:
            x = self.short_bn(self.short_conv(x), use_running_average=ura)
        return jax.nn.relu(x + y)


class ResNet(nnx.Module):
    """ResNet with ``stage_sizes`` blocks per stage, widths ``width * 2**stage``.

    ``stage_sizes=(2, 2, 2, 2)``, ``width=64`` is ResNet-18 (11.2M parameters for 10 classes).
    Blocks are attributes ``stage{s}_block{b}``.
    """

    def __init__(self, *, num_classes: int, input_shape, width: int = 64,
                 stage_sizes=(2, 2, 2, 2), seed: int = 0):
        rngs = nnx.Rngs(seed)
        c_in = input_shape[-1]
        self.stem_conv = nnx.Conv(c_in, width, (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.block_names = []
        c = width
        for s, n in enumerate(stage_sizes):
            c_out = width * 2**s
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                name = f"stage{s}_block{b}"
                setattr(self, name, BasicBlock(c, c_out, stride, rngs))
                self.block_names.append(name)
                c = c_out
        self.block_names = tuple(self.block_names)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = jax.nn.relu(self.stem_bn(self.stem_conv(x), use_running_average=not train))
        for name in self.block_names:
            x = getattr(self, name)(x, train)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train))
