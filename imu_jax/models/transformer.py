"""A causal (GPT-style, pre-LayerNorm) transformer over token sequences.

Defaults follow spec §4 (4 layers, width 128); ``num_layers=12, width=768, num_heads=12`` is
GPT-2 small.

Examples:
  >>> import jax.numpy as jnp
  >>> m = Transformer(num_classes=10, input_shape=(6,), num_layers=1, width=16, num_heads=2)
  >>> m(jnp.zeros((2, 6), jnp.int32)).shape
  (2, 6, 10)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Block(nnx.Module):
    """Pre-LN block: causal self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: int, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads, width, decode=False, deterministic=True,
                                           keep_rngs=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(width, rngs=rngs)
        self.fc = nnx.Linear(width, mlp_ratio * width, rngs=rngs)
        self.proj = nnx.Linear(mlp_ratio * width, width, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.proj(jax.nn.gelu(self.fc(self.ln2(x))))


class Transformer(nnx.Module):
    """Token + learned position embeddings, ``num_layers`` blocks ``block{i}``, final LN, ``head``.

    ``num_classes`` is the vocabulary size; ``input_shape == (max_len,)``.
    """

    def __init__(self, *, num_classes: int, input_shape, num_layers: int = 4, width: int = 128,
                 num_heads: int = 4, mlp_ratio: int = 4, seed: int = 0):
        rngs = nnx.Rngs(seed)
        (max_len,) = input_shape
        self.num_layers = num_layers
        self.embed = nnx.Embed(num_classes, width, rngs=rngs)
        self.pos_embed = nnx.Embed(max_len, width, rngs=rngs)
        for i in range(num_layers):
            setattr(self, f"block{i}", Block(width, num_heads, mlp_ratio, rngs))
        self.ln_f = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def features(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        t = tokens.shape[-1]
        x = self.embed(tokens) + self.pos_embed(jnp.arange(t))[None]
        mask = nnx.make_causal_mask(jnp.ones(tokens.shape, jnp.int32))
        for i in range(self.num_layers):
            x = getattr(self, f"block{i}")(x, mask)
        return self.ln_f(x)

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        return self.head(self.features(tokens, train=train))
