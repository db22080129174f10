"""Per-example influence of forget examples on the head, and the weights derived from it.

This is spec §1–2 and nothing else. With per-example head gradients ``g_i`` of the loss ``ℓ``,

    F   = mean_i(g_i ⊙ g_i) + λ          (diagonal Fisher, damped)
    ḡ   = mean_i g_i                      (mean forget gradient)
    I_i = −(g_i ⊙ F⁻¹) · ḡ                (influence; negative = aligned with forgetting)

The weights derived from ``I`` (spec §2) live in :mod:`imu_jax.weights` and are re-exported here.
Everything here imports only jax and numpy, so it can be copied into any codebase.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import _checks, _factored, _layout, _traced
from imu_jax.weights import (DEFAULT_CLIP_QUANTILE, DEFAULT_TOP_FRACTION,
                               NoNegativeInfluenceWarning, influence_weights, keep_count,
                               select_and_weight)

__all__ = [
    "DEFAULT_DAMPING",
    "DEFAULT_TOP_FRACTION",
    "DEFAULT_CLIP_QUANTILE",
    "per_example_grads",
    "influence_from_grads",
    "influence_scores",
    "auto_chunk_size",
    "classifier_influence",
    "select_and_weight",
    "influence_weights",
    "keep_count",
    "NoNegativeInfluenceWarning",
]

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

DEFAULT_DAMPING = 0.01
# influence_scores(chunk_size=None): bytes of per-example gradients held at once, per backend
# (see auto_chunk_size), and the smallest automatic chunk.
AUTO_CHUNK_BYTES = {"cpu": 8 * 2**20, "default": 2**30}
AUTO_MIN_CHUNK = 8


def per_example_grads(loss_fn: LossFn, params: PyTree, batch: PyTree) -> PyTree:
    """Gradients of ``loss_fn`` for every example of ``batch``, stacked on a leading axis.

    Args:
      loss_fn: ``loss_fn(params, example) -> scalar``, the loss of ONE example.
      params: the parameters to differentiate (usually the head; close over the rest).
      batch: a pytree whose leaves share a leading axis ``N``.

    Returns:
      A pytree shaped like ``params`` whose leaves have an extra leading axis ``N``.

    Not jitted here: call it inside your jitted step. (``jax.jit(per_example_grads,
    static_argnums=0)`` would cache by the function object and keep the arrays ``loss_fn``
    closes over at their first values; :func:`influence_scores` avoids that, see its doc.)

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> loss = lambda w, ex: 0.5 * jnp.sum((ex["x"] @ w - ex["y"]) ** 2)
      >>> batch = {"x": jnp.eye(3), "y": jnp.zeros(3)}
      >>> imu.per_example_grads(loss, jnp.ones(3), batch).shape
      (3, 3)
    """
    _checks.leading_size(batch, "batch")
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, batch)


def influence_from_grads(grads: PyTree, damping: float | jax.Array = DEFAULT_DAMPING) -> jax.Array:
    """Spec §1 influence ``I_i`` from materialized per-example gradients (leading axis ``N``).

    This is the small-batch form used inside a step (the per-batch variant); for large forget sets
    use :func:`influence_scores`, which never holds all ``N × P`` gradients at once.

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> g = {"w": jnp.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 2.0]])}
      >>> bool(imu.influence_from_grads(g)[0] < 0)
      True
    """
    first = _factored.leaves(grads)[0]
    n = first.shape[0]
    like = first.deltas if _factored.is_factored(first) else first
    ones = _layout.shard_like(jnp.ones(n, jnp.float32), like)  # like the examples (Explicit)
    total, total_sq = _sums(grads, ones)
    # damping in the gradients' dtype, however it is given (a weak Python float or an injected
    # float32 hyperparameter give the same numbers)
    direction = jax.tree.map(
        lambda s, sq: (s / n) / (sq / n + jnp.asarray(damping).astype(sq.dtype)), total, total_sq)
    return -_per_example_dot(grads, direction)


def _sums(grads: PyTree, mask: jax.Array) -> tuple[PyTree, PyTree]:
    """``(Σ_i m_i g_i, Σ_i m_i g_i²)`` as matrix-vector products with the mask ``m``; for a dense
    kernel given as outer products (``imu_jax._factored``), as products of its factors.

    A reduction (``jnp.sum(g, axis=0)``) would let XLA:CPU fuse the per-example gradients into a
    slow loop (10x on the benchmark MLP); a product with a vector stays a fast GEMV.
    """
    total = _factored.tree_map(lambda g: _factored.weighted_sum(g, mask), grads)
    total_sq = _factored.tree_map(lambda g: _factored.weighted_sum_of_squares(g, mask), grads)
    return total, total_sq


def _per_example_dot(grads: PyTree, direction: PyTree) -> jax.Array:
    """``[g_i · t for i]`` for per-example gradients ``g`` and one direction ``t``."""
    terms = _factored.tree_map(_factored.dot, grads, direction)
    return functools.reduce(jnp.add, jax.tree.leaves(terms))


def influence_scores(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    *,
    damping: float = DEFAULT_DAMPING,
    chunk_size: int | None = None,
    out_sharding: jax.sharding.NamedSharding | None = None,
) -> jax.Array:
    """Influence ``I_i`` of every example of ``batch`` with respect to ``params`` (spec §1).

    Two streaming passes. Pass 1 accumulates ``Σ g_i`` and ``Σ g_i²`` chunk by chunk; pass 2 needs
    only ``g_i · (ḡ / F)``, a directional derivative (a JVP), so no per-example gradient is kept.
    When one chunk covers all ``N`` examples, the gradients are formed once and there is no
    second pass.

    Dense layers are never expanded: a 2-D parameter that the loss uses once, as the kernel of a
    matrix-vector product with one input vector per example (``h @ W``, ``h @ W.T``; an
    ``nnx.Linear`` or Linen ``Dense`` on one example), has the per-example gradient
    ``h_i ⊗ δ_i`` (``δ_i`` = the gradient of the loss at the layer's output), so its sums are
    ``Hᵀ Δ`` and ``(H∘H)ᵀ(Δ∘Δ)`` and its dot products ``rowsum((H t) ∘ Δ)``: one batched forward
    and backward pass plus three matrix products, ``N × (D + C)`` numbers instead of
    ``N × D × C`` (``imu_jax._factored``). The other parameters (biases, norms, convolutions, a
    kernel used twice or over a sequence of inputs) get materialized per-example gradients.
    The scores are the same either way (to float rounding).

    Memory: per-example gradients of one chunk, ``chunk_size × P' × itemsize`` bytes (``P'`` =
    the number of parameters in ``params``, with each dense kernel counted as ``D + C``), plus
    ``O(P)`` for the sums. The default (``chunk_size=None``) is :func:`auto_chunk_size`: the
    largest power of two whose gradients fit ``AUTO_CHUNK_BYTES`` (8 MiB on CPU, 1 GiB on
    accelerators), at least 8 examples, at most ``N``; so the default holds at most
    ``max(8 MiB, 8 × P' × itemsize)`` of gradients on CPU (``experiments/bench_influence.py``
    sweeps the chunk size).

    The computation is jitted, and ``loss_fn`` may close over anything (the frozen body, an NNX
    module updated in place): it is traced afresh on each call and the arrays it closes over are
    passed to the compiled program as arguments, so the scores always use their current values.
    Calls whose loss has the same program (same shapes, same Python constants) reuse one
    compilation, whatever the function object (``imu_jax._traced``).

    Sharding: ``batch`` may be sharded over a mesh axis (``data``) and ``params`` replicated or
    sharded (``model``), on ``Auto`` or ``Explicit`` meshes; the per-example gradients then stay
    sharded like the examples and are never gathered. Chunks are strided (chunk ``j`` holds
    examples ``j, j + K, …``), so every chunk is spread over all devices holding the batch. On an
    Explicit mesh ``chunk_size`` is rounded up to a multiple of the number of batch shards, and
    ``loss_fn`` must itself be valid on sharded inputs (e.g. a one-hot cross-entropy rather than
    integer indexing into model-sharded logits).

    Args:
      loss_fn: ``loss_fn(params, example) -> scalar``; the loss of one example (softmax cross-entropy
        in the paper), with the model in inference mode.
      params: the head parameters; the caller closes over the rest of the model.
      batch: pytree of arrays with a shared leading axis ``N`` (the forget set).
      damping: ``λ`` added to every entry of the diagonal Fisher; must be > 0.
      chunk_size: examples per chunk (``≥ N``: all at once), or ``None`` to choose it
        automatically (:func:`auto_chunk_size`).
      out_sharding: where to place the scores; default: like the leading axis of ``batch`` when
        it is a sharded ``jax.Array`` (e.g. ``P("data")``).

    Returns:
      ``f32[N]`` influence scores; negative scores mark the examples to unlearn.

    Examples:
      >>> import jax, jax.numpy as jnp, imu_jax as imu
      >>> def loss(head, ex):
      ...   logits = ex["x"] @ head["kernel"] + head["bias"]
      ...   return -jax.nn.log_softmax(logits)[ex["y"]]
      >>> head = {"kernel": jnp.ones((4, 3)) * 0.1, "bias": jnp.zeros(3)}
      >>> batch = {"x": jax.random.normal(jax.random.key(0), (10, 4)), "y": jnp.arange(10) % 3}
      >>> scores = imu.influence_scores(loss, head, batch, chunk_size=4)
      >>> scores.shape
      (10,)
      >>> bool(jnp.allclose(scores, imu.influence_scores(loss, head, batch), rtol=1e-5))
      True
    """
    _checks.leading_size(batch, "batch")
    _checks.check_positive(damping, "damping")
    _checks.check_finite(batch, "batch")
    _checks.check_finite(params, "params")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}.")
    return _influence_scores(*_scores_args(loss_fn, params, batch, damping, chunk_size,
                                           out_sharding))


def _scores_args(loss_fn, params, batch, damping=DEFAULT_DAMPING, chunk_size=None,
                 out_sharding=None):
    """The arguments :func:`influence_scores` jits with (also to ``lower`` it in benchmarks):
    ``loss_fn`` traced now, its closed-over arrays as arguments (module ``_traced``)."""
    if out_sharding is None:
        out_sharding = _layout.leading_sharding(batch)
    n = jax.tree.leaves(batch)[0].shape[0]
    traced, consts = _traced.trace_example_loss(loss_fn, params, batch)
    if chunk_size is None:
        chunk_size = auto_chunk_size(
            n, params, per_example_bytes=_factored.per_example_bytes(traced, params, batch))
    chunk_size = int(chunk_size)
    return (traced, consts, params, batch, damping, chunk_size, out_sharding,
            _layout.leading_is_sharded(batch))


def auto_chunk_size(num_examples: int, params: PyTree, *, chunk_bytes: int | None = None,
                    per_example_bytes: int | None = None) -> int:
    """The chunk :func:`influence_scores` uses when ``chunk_size`` is None.

    The largest power of two ``c`` with ``c × P × itemsize ≤ chunk_bytes`` (``P`` = number of
    parameters in ``params``; or ``c × per_example_bytes`` when given: :func:`influence_scores`
    passes the bytes one example's gradients take as it holds them, where a dense kernel's are
    its input and output gradient, ``D + C`` numbers, not ``D × C``), at least ``AUTO_MIN_CHUNK`` examples and at most ``num_examples``;
    when it covers every example, all per-example gradients are materialized once and there is no
    second pass. ``chunk_bytes`` defaults to ``AUTO_CHUNK_BYTES`` for the default backend: 8 MiB on
    CPU (a chunk's gradients stay in cache: fastest on ``experiments/bench_influence.py``), 1 GiB on
    accelerators (large batched kernels).

    Examples:
      >>> import jax.numpy as jnp, imu_jax as imu
      >>> head = {"kernel": jnp.zeros((512, 10)), "bias": jnp.zeros(10)}  # 5,130 float32
      >>> imu.auto_chunk_size(2048, head, chunk_bytes=8 * 2**20)
      256
      >>> imu.auto_chunk_size(100, head, chunk_bytes=8 * 2**20)   # all at once
      100
    """
    per_example = per_example_bytes
    if per_example is None:
        per_example = sum(math.prod(np.shape(x)) * jnp.dtype(jnp.result_type(x)).itemsize
                          for x in jax.tree.leaves(params))
    if chunk_bytes is None:
        chunk_bytes = AUTO_CHUNK_BYTES.get(jax.default_backend(), AUTO_CHUNK_BYTES["default"])
    fit = max(1, int(chunk_bytes) // max(1, per_example))
    chunk = max(AUTO_MIN_CHUNK, 1 << (fit.bit_length() - 1))
    return max(1, min(chunk, int(num_examples)))


@functools.partial(jax.jit,
                   static_argnames=("traced", "chunk_size", "out_sharding", "strided"))
def _influence_scores(traced, consts, params, batch, damping, chunk_size, out_sharding=None,
                      strided=False):
    scores = _influence_scores_impl(traced, consts, params, batch, damping, chunk_size,
                                    strided)
    return _layout.constrain_leading(scores, out_sharding)


def _influence_scores_impl(traced, consts, params, batch, damping, chunk_size, strided=False):
    loss_fn = traced.bind(consts)
    n = jax.tree.leaves(batch)[0].shape[0]
    spec = _layout.explicit_spec(jax.tree.leaves(batch)[0])
    strided = strided or (spec is not None and spec[0] is not None)
    # per-example gradients, dense kernels as outer products of their factors (never D × C each)
    grads_of = functools.partial(_factored.per_example_grads, traced, consts)
    if chunk_size is not None:  # on an Explicit mesh, whole rows of the sharded example axis
        shards = _layout.leading_shards(jax.tree.leaves(batch)[0])
        chunk_size = -(-chunk_size // shards) * shards
    if chunk_size is None or chunk_size >= n:
        return influence_from_grads(grads_of(params, batch), damping)

    # The batch is padded to whole chunks; padded rows are masked out. On one device chunk j is
    # examples [j·c, (j+1)·c). When the batch is sharded, chunks are strided instead,
    # [N] -> [c, K] -> [K, c]: chunk j holds examples j, j + K, j + 2K, ..., so each chunk is
    # spread over every device holding the (block-sharded) batch.
    num_chunks = math.ceil(n / chunk_size)
    pad = num_chunks * chunk_size - n

    def to_chunks(x):
        if pad:
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        if not strided:
            return x.reshape((num_chunks, chunk_size) + x.shape[1:])
        return jnp.swapaxes(x.reshape((chunk_size, num_chunks) + x.shape[1:]), 0, 1)

    chunks = jax.tree.map(to_chunks, batch)
    # Padded rows are False; on an Explicit mesh the mask is sharded like the chunks.
    valid = _layout.shard_like(to_chunks(jnp.arange(n) >= 0), jax.tree.leaves(chunks)[0])

    # Pass 1: Σ g and Σ g², chunk by chunk. The sums are matrix-vector products with the mask
    # (a reduction would let XLA:CPU fuse the per-example gradients into a slow loop, 10x); with
    # padding, padded rows are zeroed first so a loss that is NaN on a zero input cannot leak in.
    def accumulate(carry, chunk_and_valid):
        chunk, ok = chunk_and_valid
        g = grads_of(params, chunk)
        if pad:
            g = jax.tree.map(lambda x: jnp.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0),
                             g)  # (an OuterProducts leaf's factors are zeroed row by row)
        chunk_total, chunk_total_sq = _sums(g, ok)
        return jax.tree.map(jnp.add, carry, (chunk_total, chunk_total_sq)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (total, total_sq), _ = jax.lax.scan(accumulate, (zeros, zeros), (chunks, valid))
    direction = jax.tree.map(lambda s, sq: (s / n) / (sq / n + damping), total, total_sq)

    # Pass 2: g_i · direction as a JVP of each example's loss; never a per-example gradient.
    def directional_derivative(example):
        return jax.jvp(lambda p: loss_fn(p, example), (params,), (direction,))[1]

    scores = jax.lax.map(jax.vmap(directional_derivative), chunks)  # [K, chunk_size]
    if strided:
        scores = jnp.swapaxes(scores, 0, 1)
    scores = scores.reshape(num_chunks * chunk_size)
    return -(scores[:n] if pad else scores).astype(jnp.float32)


def classifier_influence(
    features: jax.Array,
    labels: jax.Array,
    head: dict[str, jax.Array],
    *,
    damping: float = DEFAULT_DAMPING,
    out_sharding: jax.sharding.NamedSharding | None = None,
) -> jax.Array:
    """Closed-form influence for a dense softmax cross-entropy head (spec §1).

    With features ``H`` (the head's input) and errors ``E = softmax(H W + b) − onehot(y)``, the
    per-example head gradient is ``(h_i ⊗ e_i, e_i)``, so

        F_W = (H∘H)ᵀ(E∘E)/N + λ,   ḡ_W = HᵀE/N,   F_b = mean(E∘E) + λ,   ḡ_b = mean(E)
        I_i = −[rowsum((H (ḡ_W/F_W)) ∘ E) + E (ḡ_b/F_b)]_i

    one forward pass of the head plus three ``N×D×C`` matmuls; no per-example gradient exists.
    The numbers equal :func:`influence_scores` on the same head.

    Sharding: ``features``/``labels`` may be sharded over their example axis and the head
    replicated or sharded over its class axis, on ``Auto`` or ``Explicit`` meshes (the
    contractions over the example axis state their output sharding).

    Args:
      features: ``[N, D]`` backbone features (inference mode).
      labels: ``[N]`` integer labels in ``[0, C)``.
      head: ``{"kernel": [D, C], "bias": [C]}``.
      damping: ``λ`` > 0.
      out_sharding: where to place the scores; default: like ``features``' leading axis when it
        is a sharded ``jax.Array``.

    Returns:
      ``f32[N]`` influence scores.

    Examples:
      >>> import jax, jax.numpy as jnp, imu_jax as imu
      >>> h = jax.random.normal(jax.random.key(0), (6, 4))
      >>> head = {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}
      >>> imu.classifier_influence(h, jnp.array([0, 0, 1, 2, 0, 1]), head).shape
      (6,)
    """
    if not isinstance(head, dict) or set(head) != {"kernel", "bias"}:
        raise ValueError(
            "head must be a dict with exactly the keys 'kernel' [D, C] and 'bias' [C], got "
            f"{sorted(head) if isinstance(head, dict) else type(head).__name__}.")
    features_shape, labels_shape = np.shape(features), np.shape(labels)
    if len(features_shape) != 2:
        raise ValueError(f"features must be [N, D], got shape {features_shape}.")
    if features_shape[0] == 0:
        raise ValueError("features is empty: the forget set has no examples.")
    if labels_shape != features_shape[:1]:
        raise ValueError(f"labels must be [N] = [{features_shape[0]}] integer classes, got shape "
                         f"{labels_shape}.")
    labels_dtype = getattr(labels, "dtype", None) or np.result_type(labels)
    if not jnp.issubdtype(labels_dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got dtype {labels_dtype}.")
    kernel_shape, bias_shape = np.shape(head["kernel"]), np.shape(head["bias"])
    if len(kernel_shape) != 2 or kernel_shape[0] != features_shape[1] or bias_shape != kernel_shape[1:]:
        raise ValueError(
            f"head shapes kernel {kernel_shape}, bias {bias_shape} do not fit features with "
            f"D = {features_shape[1]} (need kernel [D, C] and bias [C]).")
    num_classes = kernel_shape[1]
    _checks.check_labels_in_range(labels, num_classes, "labels",
                                  what=f"the head has {num_classes} classes")
    _checks.check_positive(damping, "damping")
    _checks.check_finite(features, "features")
    _checks.check_finite(head, "head")
    features, labels = jnp.asarray(features), jnp.asarray(labels)
    if out_sharding is None:
        out_sharding = _layout.leading_sharding(features)
    return _classifier_influence(features, labels, head["kernel"], head["bias"], damping,
                                 out_sharding)


@functools.partial(jax.jit, static_argnames=("out_sharding",))
def _classifier_influence(features, labels, kernel, bias, damping, out_sharding=None):
    errors = closed_form_errors(_layout.tensordot(features, kernel, 1) + bias, labels)
    sums = closed_form_sums(features, errors)
    scores = closed_form_scores(features, errors, sums, features.shape[0], damping)
    return _layout.constrain_leading(scores, out_sharding)


# The closed form in three stages, so a caller can run it inside its own compiled pass over the
# examples (``imu_jax.unlearning.closed_form`` does, sharing the head's logits with its check);
# :func:`classifier_influence` is the three in a row. No value checks here.


def closed_form_errors(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``E = softmax(logits) − onehot(y)``, ``[N, C]``, for the head's logits ``H W + b``."""
    return jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def closed_form_sums(features: jax.Array, errors: jax.Array) -> tuple[jax.Array, ...]:
    """``(Eᵀ H, (E∘E)ᵀ (H∘H), Σ_i e_i, Σ_i e_i²)``: ``[C, D]``, ``[C, D]``, ``[C]``, ``[C]``;
    sums over the examples, so chunks of rows add up to the whole."""
    # Contractions over N are written [C, N] @ [N, D] with the [C, N] side transposed for real
    # and the squares kept out of the matmul (optimization_barrier): XLA:CPU then runs a plain
    # matmul (2x faster than contracting both operands' leading axis) and does not fuse the
    # squares into a slow loop (5x).
    barrier = jax.lax.optimization_barrier
    errors_t, squares_t = barrier((errors.T, (errors * errors).T))
    return (_layout.tensordot(errors_t, features, 1),
            _layout.tensordot(squares_t, barrier(features * features), 1),
            jnp.sum(errors, axis=0), jnp.sum(errors * errors, axis=0))


def closed_form_scores(features: jax.Array, errors: jax.Array, sums: tuple[jax.Array, ...],
                       n: int, damping) -> jax.Array:
    """``f32[N]`` scores from the features, the errors and the sums over all ``n`` examples."""
    total_t, total_sq_t, total_bias, total_sq_bias = sums
    direction_t = (total_t / n) / (total_sq_t / n + damping)
    direction_bias = (total_bias / n) / (total_sq_bias / n + damping)
    kernel_term = jnp.sum(_layout.tensordot(features, direction_t, ((1,), (1,))) * errors,
                          axis=1)
    bias_term = _layout.tensordot(errors, direction_bias, 1)
    return -(kernel_term + bias_term).astype(jnp.float32)
