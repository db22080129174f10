"""Closed-form per-sequence influence for a dense softmax output layer (language-model heads).

Spec §1 for sequences: the loss of sequence ``i`` is the mean token cross-entropy over its
``n_i`` non-padding tokens, so with features ``H_i`` ``[T, D]`` and masked, scaled errors
``Ẽ_i = (softmax(H_i W + b) − onehot(y_i)) · mask_i / n_i`` ``[T, V]`` its head gradient is

    g_i = (H_iᵀ Ẽ_i,  Σ_t Ẽ_it)                                  ([D, V], [V])

and, with ``t = ḡ / F`` (spec §1), the influence is a sum over the vocabulary:

    I_i = −Σ_v [ (H_iᵀ Ẽ_i)_{:,v} · t_W[:, v] + (Σ_t Ẽ_it)_v t_b[v] ]

Every quantity but the softmax normalizer is separable over vocabulary columns: ``F``, ``ḡ`` and
``t`` of column ``v`` need only column ``v`` of every ``g_i``. So the computation streams over
vocabulary chunks of ``C`` columns: one pass for the per-token log-sum-exp (``[N, T]``; blocks of
sequences against the streamed vocabulary), then per chunk the scaled errors ``[N, T, C]``, the
per-sequence gradients block by block of ``S`` sequences (``[S, D, C]``, only their sum and sum of
squares are kept), ``t`` for the chunk, and the chunk's share of every ``I_i`` as
``Σ_{t,v} Ẽ_itv (H_i t_W + t_b)_tv``. The ``N × D × V`` per-sequence gradients, the ``N × T × V``
logits and the ``D × V`` Fisher never exist; beyond the inputs, memory is about
``3 · N · T · C`` floats plus a 32 MiB gradient block, whatever ``V``.
Cost: four forward passes' matrix products (log-sum-exp, logits again, ``Hᵀ Ẽ``, ``H t_W``).

Imports only jax and numpy (core module).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import _checks
from imu_jax.influence import DEFAULT_DAMPING

__all__ = ["sequence_influence", "SEQUENCE_CHUNK_BYTES"]

# Bytes of per-chunk temporaries (errors, logits and directions of one vocabulary chunk) that the
# automatic vocabulary chunk may use.
SEQUENCE_CHUNK_BYTES = 2**29


def _vocab_chunk(n: int, t: int, d: int, v: int, itemsize: int, budget: int) -> int:
    """Largest power of two ``C`` with ``3 · N · T · C · itemsize ≤ budget``, in [1, V]."""
    del d  # the [S, D, C] gradient blocks take a fixed 32 MiB (_sequence_block)
    fit = max(1, budget // (3 * n * t * itemsize))
    return min(1 << (fit.bit_length() - 1), v)


def sequence_influence(
    features: jax.Array,
    labels: jax.Array,
    head: dict[str, jax.Array],
    *,
    damping: float = DEFAULT_DAMPING,
    vocab_chunk: int | None = None,
    compute_dtype=None,
) -> jax.Array:
    """Per-sequence influence ``I_i`` (spec §1) for a dense softmax head over tokens.

    Equal to :func:`imu_jax.influence_scores` with the loss "mean token cross-entropy over the
    non-padding tokens" on the head ``{"kernel", "bias"}`` (the loss of ``imu_jax.unlearn`` for
    labels ``[N, T]``), computed in closed form and streamed over vocabulary chunks (module doc).

    Memory beyond the inputs: about ``3 · N · T · vocab_chunk`` floats of temporaries plus a
    32 MiB block of per-sequence gradients, independent of the vocabulary size ``V``. The default
    chunk is the largest power of two with ``3 · N · T · C · 4`` bytes within
    ``SEQUENCE_CHUNK_BYTES`` (512 MiB).

    Args:
      features: ``[N, T, D]`` inputs of the output layer (inference mode), float32 or bfloat16.
      labels: ``[N, T]`` integer next-token labels in ``[0, V)``, ``-1`` for padding.
      head: ``{"kernel": [D, V], "bias": [V]}``.
      damping: ``λ`` > 0.
      vocab_chunk: vocabulary columns per chunk, or ``None`` to choose it from the budget.
      compute_dtype: dtype of the two large matrix products' operands (``jnp.bfloat16`` halves
        their memory traffic; products accumulate in float32, and the softmax, Fisher and scores
        stay float32). Default: the features' dtype.

    Returns:
      ``f32[N]`` influence scores.

    Examples:
      >>> import jax, jax.numpy as jnp, imu_jax as imu
      >>> h = jax.random.normal(jax.random.key(0), (3, 5, 4))
      >>> labels = jnp.array([[0, 1, 2, 3, -1], [4, 4, 0, -1, -1], [1, 2, 3, 4, 0]])
      >>> head = {"kernel": 0.1 * jnp.ones((4, 6)), "bias": jnp.zeros(6)}
      >>> imu.sequence_influence(h, labels, head, vocab_chunk=4).shape
      (3,)
    """
    features, labels = jnp.asarray(features), jnp.asarray(labels)
    if not isinstance(head, dict) or set(head) != {"kernel", "bias"}:
        raise ValueError(
            "head must be a dict with exactly the keys 'kernel' [D, V] and 'bias' [V], got "
            f"{sorted(head) if isinstance(head, dict) else type(head).__name__}.")
    if features.ndim != 3 or 0 in features.shape:
        raise ValueError(f"features must be a non-empty [N, T, D] array, got shape "
                         f"{features.shape}.")
    if labels.shape != features.shape[:2]:
        raise ValueError(f"labels must be [N, T] = {list(features.shape[:2])}, got shape "
                         f"{labels.shape}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers (-1 for padding), got dtype {labels.dtype}.")
    kernel_shape, bias_shape = np.shape(head["kernel"]), np.shape(head["bias"])
    if (len(kernel_shape) != 2 or kernel_shape[0] != features.shape[2]
            or bias_shape != kernel_shape[1:]):
        raise ValueError(f"head shapes kernel {kernel_shape}, bias {bias_shape} do not fit "
                         f"features with D = {features.shape[2]} (need kernel [D, V], bias [V]).")
    _checks.check_labels_in_range(labels, kernel_shape[1], "labels", padding=True,
                                  what=f"the head has V = {kernel_shape[1]} outputs")
    _checks.check_positive(damping, "damping")
    n, t, d = features.shape
    v = kernel_shape[1]
    if vocab_chunk is None:
        vocab_chunk = _vocab_chunk(n, t, d, v, 4, SEQUENCE_CHUNK_BYTES)
    elif int(vocab_chunk) < 1:
        raise ValueError(f"vocab_chunk must be a positive integer or None, got {vocab_chunk}.")
    compute_dtype = jnp.dtype(features.dtype if compute_dtype is None else compute_dtype)
    return _sequence_influence(features, labels, jnp.asarray(head["kernel"]),
                               jnp.asarray(head["bias"]), damping, min(int(vocab_chunk), v),
                               compute_dtype)


@functools.partial(jax.jit, static_argnames=("vocab_chunk", "compute_dtype"))
def _sequence_influence(features, labels, kernel, bias, damping, vocab_chunk, compute_dtype):
    n, t, d = features.shape
    v = kernel.shape[1]
    c = vocab_chunk
    s = _sequence_block(n, d, c)
    num_chunks, num_blocks = math.ceil(v / c), math.ceil(n / s)
    pad_v, pad_n = num_chunks * c - v, num_blocks * s - n
    h = features.astype(compute_dtype)
    w = kernel.astype(compute_dtype)
    b = bias.astype(jnp.float32)
    if pad_v:  # padded columns: zero weights and a bias far below any logit, so softmax = 0 there
        w = jnp.pad(w, ((0, 0), (0, pad_v)))
        b = jnp.pad(b, (0, pad_v), constant_values=jnp.finfo(jnp.float32).min / 2)
    if pad_n:  # padded sequences have no tokens: zero errors, zero gradient, score 0 (dropped)
        h = jnp.pad(h, ((0, pad_n), (0, 0), (0, 0)))
        labels = jnp.pad(labels, ((0, pad_n), (0, 0)), constant_values=-1)
    mask = labels >= 0
    scale = mask / jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)  # [N, T]: mask / n_i
    blocks = lambda x: x.reshape((num_blocks, s) + x.shape[1:])  # noqa: E731

    def column_chunk(x, j):
        return jax.lax.dynamic_slice_in_dim(x, j * c, c, axis=x.ndim - 1)

    def logits(h, j):
        return (jnp.einsum("ntd,dv->ntv", h, column_chunk(w, j),
                           preferred_element_type=jnp.float32) + column_chunk(b, j))

    # Pass 0: per-token log-sum-exp over the vocabulary, online over chunks, block by block of
    # sequences (each block's features stay in cache while the vocabulary streams past).
    def block_lse(h_block):
        def step(carry, j):
            high, total = carry
            z = logits(h_block, j)
            new_high = jnp.maximum(high, jnp.max(z, axis=-1))
            total = total * jnp.exp(high - new_high) + jnp.sum(jnp.exp(z - new_high[..., None]),
                                                               -1)
            return (new_high, total), None

        start = (jnp.full(h_block.shape[:2], -jnp.inf, jnp.float32),
                 jnp.zeros(h_block.shape[:2], jnp.float32))
        (high, total), _ = jax.lax.scan(step, start, jnp.arange(num_chunks))
        return high + jnp.log(total)

    lse = jax.lax.map(block_lse, blocks(h)).reshape(h.shape[:2])
    ones_s, ones_t = jnp.ones(s, jnp.float32), jnp.ones(t, jnp.float32)

    # Per vocabulary chunk: scaled errors of every token, the per-sequence gradients block by
    # block (Σ g, Σ g² only), t = ḡ/F for the chunk, and the chunk's share of every I_i.
    def chunk_step(scores, j):
        onehot = labels[..., None] == j * c + jnp.arange(c)
        errors = (jnp.exp(logits(h, j) - lse[..., None]) - onehot) * scale[..., None]  # [N,T,C]
        g_b = jnp.einsum("t,ntv->nv", ones_t, errors)  # [N, C]

        def block_sums(carry, block):
            h_block, e_block = block
            g_w = jnp.einsum("ntd,ntv->ndv", h_block, e_block.astype(compute_dtype),
                             preferred_element_type=jnp.float32)  # [S, D, C]
            # Sums over sequences as products with a vector (a reduction fuses into a slow loop).
            return (carry[0] + jnp.tensordot(ones_s, g_w, 1),
                    carry[1] + jnp.tensordot(ones_s, g_w * g_w, 1)), None

        zeros = jnp.zeros((d, c), jnp.float32)
        (total, total_sq), _ = jax.lax.scan(block_sums, (zeros, zeros), (blocks(h), blocks(errors)))
        t_w = (total / n) / (total_sq / n + damping)
        t_b = (jnp.sum(g_b, 0) / n) / (jnp.sum(g_b * g_b, 0) / n + damping)
        # Σ_{d,v} g_i t_W = Σ_{t,v} Ẽ_itv (H_i t_W)_tv: the same product as the logits, with t_W.
        direction = jnp.einsum("ntd,dv->ntv", h, t_w.astype(compute_dtype),
                               preferred_element_type=jnp.float32) + t_b
        return scores + jnp.einsum("ntv,ntv->n", errors, direction), None

    scores, _ = jax.lax.scan(chunk_step, jnp.zeros(n + pad_n, jnp.float32),
                             jnp.arange(num_chunks))
    return -scores[:n]


def _sequence_block(n: int, d: int, c: int) -> int:
    """Sequences per block of per-sequence gradients ``[S, D, C]``: about 32 MiB, at most N."""
    return max(1, min(n, (32 * 2**20) // (4 * d * c)))
