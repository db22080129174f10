"""Per-example gradients of dense layers as outer products, never formed (private; jax only).

For a dense layer ``z = a W`` (one example: ``a`` of size ``D``, ``W`` of shape ``[D, C]``) the
per-example gradient of the kernel is the outer product ``a ⊗ δ`` with ``δ = ∂ℓ/∂z``. So the
statistics IMU needs (spec §1) reduce to products of the stacked inputs ``A [N, D]`` and output
gradients ``Δ [N, C]``:

    Σ_n w_n g_n    = Aᵀ (w ∘ Δ)                 Σ_n w_n g_n²  = (A ∘ A)ᵀ (w ∘ Δ ∘ Δ)
    g_n · t        = rowsum((A t) ∘ Δ)_n

``N × (D + C)`` numbers instead of ``N × D × C``. :func:`per_example_grads` finds such layers in
the traced per-example loss (:mod:`imu_jax._traced`): a 2-D parameter used exactly once, by a
``dot_general`` with one input vector per example (no batch or sequence axis), same float dtype.
It evaluates the loss with a zero added to each such layer's output and differentiates with
respect to that zero and to the other parameters; those others (biases, norms, convolutions,
tied or sequence kernels) keep materialized per-example gradients. The result is a pytree shaped
like the parameters whose factored leaves are :class:`OuterProducts`; the helpers below
(:func:`weighted_sum`, :func:`weighted_sum_of_squares`, :func:`dot`) treat both kinds alike.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from imu_jax import _traced
  >>> def loss(head, ex):
  ...   return jnp.sum(jnp.tanh(ex @ head["kernel"] + head["bias"]) ** 2)
  >>> head = {"kernel": jnp.ones((3, 2)) * 0.1, "bias": jnp.zeros(2)}
  >>> batch = jnp.arange(12.0).reshape(4, 3) / 10
  >>> traced, consts = _traced.trace_example_loss(loss, head, batch)
  >>> g = per_example_grads(traced, consts, head, batch)
  >>> type(g["kernel"]).__name__, g["kernel"].shape, g["bias"].shape
  ('OuterProducts', (4, 3, 2), (4, 2))
  >>> full = jax.vmap(jax.grad(loss), in_axes=(None, 0))(head, batch)
  >>> bool(jnp.allclose(g["kernel"].materialize(), full["kernel"], atol=1e-6))
  True
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, NamedTuple

import jax
import jax.extend as jex
import jax.numpy as jnp

from imu_jax import _layout, _traced

__all__ = ["OuterProducts", "is_factored", "per_example_grads", "per_example_grads_of",
           "dense_taps",
           "weighted_sum", "weighted_sum_of_squares", "dot", "per_example_bytes"]

PyTree = Any


@jax.tree_util.register_pytree_node_class
class OuterProducts:
    """Per-example gradients of one dense kernel, ``g_n = a_n ⊗ δ_n`` (``δ_n ⊗ a_n`` when the
    kernel is ``[C, D]``), kept as ``inputs [N, D]`` and ``deltas [N, C]``."""

    __slots__ = ("inputs", "deltas", "transposed")

    def __init__(self, inputs: jax.Array, deltas: jax.Array, transposed: bool = False):
        self.inputs, self.deltas, self.transposed = inputs, deltas, bool(transposed)

    def tree_flatten(self):
        return (self.inputs, self.deltas), self.transposed

    @classmethod
    def tree_unflatten(cls, transposed, children):
        return cls(*children, transposed)

    @property
    def shape(self) -> tuple[int, ...]:
        n, d = self.inputs.shape
        c = self.deltas.shape[1]
        return (n, c, d) if self.transposed else (n, d, c)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self):
        return self.deltas.dtype

    def materialize(self) -> jax.Array:
        """The ``[N, D, C]`` (or ``[N, C, D]``) per-example gradients, for checks."""
        spec = "nd,nc->ncd" if self.transposed else "nd,nc->ndc"
        return jnp.einsum(spec, self.inputs, self.deltas)

    def __repr__(self) -> str:
        return f"OuterProducts(shape={self.shape}, dtype={self.dtype})"


def is_factored(x: Any) -> bool:
    return isinstance(x, OuterProducts)


def _over_examples(a: jax.Array, b: jax.Array) -> jax.Array:
    """``aᵀ b`` over the example axis: ``[N, D] × [N, C] -> [D, C]``."""
    return _layout.tensordot(a, b, ((0,), (0,)))


def _orient(g: OuterProducts, x: jax.Array) -> jax.Array:
    return x.T if g.transposed else x


def weighted_sum(g, w: jax.Array) -> jax.Array:
    """``Σ_n w_n g_n`` of one leaf (factored or ``[N, ...]``)."""
    if is_factored(g):
        w = w.astype(g.deltas.dtype)[:, None]
        return _orient(g, _over_examples(g.inputs, g.deltas * w))
    return _layout.tensordot(w.astype(g.dtype), g, 1)


def weighted_sum_of_squares(g, w: jax.Array) -> jax.Array:
    """``Σ_n w_n g_n²`` of one leaf. The squares stay out of the matrix product
    (``optimization_barrier``): XLA:CPU otherwise fuses them into a slow loop."""
    if is_factored(g):
        barrier = jax.lax.optimization_barrier
        w = w.astype(g.deltas.dtype)[:, None]
        return _orient(g, _over_examples(barrier(g.inputs * g.inputs),
                                         barrier(g.deltas * g.deltas * w)))
    return _layout.tensordot(w.astype(g.dtype), g * g, 1)


def dot(g, t: jax.Array) -> jax.Array:
    """``[g_n · t for n]`` of one leaf, float32."""
    if is_factored(g):
        projected = _layout.tensordot(g.inputs, _orient(g, t), 1)  # [N, C]
        return jnp.sum(projected * g.deltas, axis=1).astype(jnp.float32)
    return _layout.tensordot(g, t, axes=t.ndim).astype(jnp.float32)


def tree_map(fn, grads: PyTree, *rest: PyTree) -> PyTree:
    """``jax.tree.map`` that stops at :class:`OuterProducts`."""
    return jax.tree.map(fn, grads, *rest, is_leaf=is_factored)


def leaves(grads: PyTree) -> list:
    return jax.tree.leaves(grads, is_leaf=is_factored)


class DenseTap(NamedTuple):
    """A dense use of parameter leaf ``leaf`` by equation ``eqn`` of the loss: ``kernel`` is the
    kernel's operand position, ``transposed`` whether the kernel is ``[C, D]``; ``width`` is
    ``C`` (the output size) and ``dtype`` the output's."""
    leaf: int
    eqn: int
    kernel: int
    transposed: bool
    width: int
    dtype: Any


def dense_taps(jaxpr, num_param_leaves: int) -> dict[int, DenseTap]:
    """The parameter leaves (first ``num_param_leaves`` inputs of ``jaxpr``) whose per-example
    gradient is an outer product, by equation index (module doc). A kernel may reach its
    ``dot_general`` through one ``transpose`` (``x @ W.T``, torch's ``[C, D]`` layout)."""
    uses: dict[Any, list] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for position, v in enumerate(eqn.invars):
            if not isinstance(v, jex.core.Literal):
                uses.setdefault(v, []).append((i, position))
    for v in jaxpr.outvars:
        if not isinstance(v, jex.core.Literal):
            uses.setdefault(v, []).append((None, None))

    def only_use(v):
        found = uses.get(v, [])
        return found[0] if len(found) == 1 and found[0][0] is not None else (None, None)

    taps = {}
    for leaf, v in enumerate(jaxpr.invars[:num_param_leaves]):
        i, position = only_use(v)
        flipped = False
        if i is not None and jaxpr.eqns[i].primitive.name == "transpose" and \
                tuple(jaxpr.eqns[i].params.get("permutation", ())) == (1, 0):
            i, position = only_use(jaxpr.eqns[i].outvars[0])
            flipped = True
        if i is None:
            continue
        tap = _dense_use(jaxpr.eqns[i], position, leaf, i)
        if tap is not None:
            taps[i] = tap._replace(transposed=tap.transposed != flipped)
    return taps


def _dense_use(eqn, position: int, leaf: int, index: int) -> DenseTap | None:
    if eqn.primitive.name != "dot_general" or len(eqn.invars) != 2:
        return None
    if eqn.invars[0] is eqn.invars[1]:
        return None
    (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = eqn.params["dimension_numbers"]
    if batch_lhs or batch_rhs or len(contract_lhs) != 1:
        return None
    kernel_aval = eqn.invars[position].aval
    other_aval = eqn.invars[1 - position].aval
    out_aval = eqn.outvars[0].aval
    if len(kernel_aval.shape) != 2:
        return None
    dtypes = {kernel_aval.dtype, other_aval.dtype, out_aval.dtype}
    if len(dtypes) != 1 or not jnp.issubdtype(kernel_aval.dtype, jnp.floating):
        return None
    kernel_contract = (contract_lhs, contract_rhs)[position][0]
    other_contract = (contract_lhs, contract_rhs)[1 - position][0]
    other_free = [s for d, s in enumerate(other_aval.shape) if d != other_contract]
    if any(s != 1 for s in other_free):  # a sequence or batch axis: a sum of outer products
        return None
    width = kernel_aval.shape[1 - kernel_contract]
    return DenseTap(leaf, index, position, kernel_contract == 1, width, out_aval.dtype)


def _bind(eqn, invals):
    """``eqn``'s primitive on ``invals``, as ``jax.core.eval_jaxpr`` binds it."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bind_params, tuple):  # older JAX: (subfuns, params)
        subfuns, bind_params = bind_params
        invals = [*subfuns, *invals]
    manager = getattr(getattr(eqn, "ctx", None), "manager", None) or contextlib.nullcontext()
    with manager:
        return eqn.primitive.bind(*invals, **bind_params)


def _eval_tapped(jaxpr, consts, args, taps: dict[int, DenseTap], zeros: dict[int, jax.Array]):
    """The loss, with ``zeros[eqn]`` added to each tapped layer's output; and each tapped
    layer's input vector (by equation)."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jex.core.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    inputs = {}
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        out = _bind(eqn, invals)
        tap = taps.get(i)
        if tap is not None:
            inputs[i] = jnp.reshape(invals[1 - tap.kernel], (-1,))
            out = out + jnp.reshape(zeros[i], out.shape)
        if eqn.primitive.multiple_results:
            env.update(zip(eqn.outvars, out))
        else:
            env[eqn.outvars[0]] = out
    (loss,) = [read(v) for v in jaxpr.outvars]
    return loss, inputs


def factorable(params: PyTree, batch: PyTree) -> bool:
    """Off on Explicit meshes (their contractions state shardings the factors do not track)."""
    return not any(_layout.explicit_spec(x) is not None
                   for x in jax.tree.leaves((params, batch)))


def per_example_grads(traced, consts, params: PyTree, batch: PyTree) -> PyTree:
    """Per-example gradients of ``traced`` (an :class:`imu_jax._traced.TracedLoss`) with respect
    to ``params`` for every example of ``batch``: dense kernels as :class:`OuterProducts`, the
    other leaves as ``[N, ...]`` arrays (all of them when nothing factors)."""
    param_leaves, param_tree = jax.tree.flatten(params)
    taps = dense_taps(traced.jaxpr, len(param_leaves)) if factorable(params, batch) else {}
    if not taps:
        return jax.vmap(jax.grad(traced.bind(consts)), in_axes=(None, 0))(params, batch)
    by_leaf = {tap.leaf: tap for tap in taps.values()}
    others = [i for i in range(len(param_leaves)) if i not in by_leaf]

    def example_loss(other_values, zeros, example):
        values = list(param_leaves)
        for i, value in zip(others, other_values):
            values[i] = value
        args = values + jax.tree.leaves(example)
        return _eval_tapped(traced.jaxpr, consts, args, taps, zeros)

    zeros = {i: jnp.zeros((tap.width,), tap.dtype) for i, tap in taps.items()}
    grad_fn = jax.grad(example_loss, argnums=(0, 1), has_aux=True)
    (other_grads, deltas), inputs = jax.vmap(grad_fn, in_axes=(None, None, 0))(
        [param_leaves[i] for i in others], zeros, batch)
    out = list(param_leaves)
    for i, g in zip(others, other_grads):
        out[i] = g
    for i, tap in taps.items():
        out[tap.leaf] = OuterProducts(inputs[i], deltas[i], tap.transposed)
    return jax.tree.unflatten(param_tree, out)


def per_example_grads_of(loss_fn, params: PyTree, batch: PyTree) -> PyTree:
    """:func:`per_example_grads` of a plain ``loss_fn(params, example)`` (traced here, inside the
    caller's ``jit``): what the per-batch step hands to ``influence_weighted_ascent``."""
    traced, consts = _traced.trace_example_loss(loss_fn, params, batch)
    return per_example_grads(traced, consts, params, batch)


def per_example_bytes(traced, params: PyTree, batch: PyTree) -> int:
    """Bytes of one example's gradients as :func:`per_example_grads` holds them."""
    param_leaves = jax.tree.leaves(params)
    taps = dense_taps(traced.jaxpr, len(param_leaves)) if factorable(params, batch) else {}
    by_leaf = {tap.leaf: tap for tap in taps.values()}
    total = 0
    for i, x in enumerate(param_leaves):
        itemsize = jnp.dtype(jnp.result_type(x)).itemsize
        if i in by_leaf:
            total += (jnp.shape(x)[0] + jnp.shape(x)[1]) * itemsize
        else:
            total += functools.reduce(lambda a, b: a * b, jnp.shape(x), 1) * itemsize
    return total
