"""A user's per-example loss, traced afresh on every call (private; jax only).

A jitted function that takes the user's ``loss_fn`` as a *static* argument caches its compiled
program by the function object, and the arrays the function closes over (the frozen body of the
model, an NNX module updated in place, a temperature) are baked into that program as constants:
reassign them and the same function object gives the old numbers. So the core never hands
``loss_fn`` itself to ``jax.jit``. It traces ``loss_fn`` on one abstract example each call
(:func:`trace_example_loss`) and splits the result into

* the program, a :class:`TracedLoss`: static, hashed and compared by its text, so a call whose
  closure has the same shapes hits the compilation cache, while a change of program (a new
  Python scalar, a different code path, other shapes) compiles anew; and
* the closed-over arrays (``consts``), which the jitted function receives as ordinary arguments,
  so their current values are always used.

Two programs with the same text are the same computation, with one caveat: a ``custom_jvp`` /
``custom_vjp`` rule is identified by its name, so a rule whose *derivative* closes over arrays
that change between calls must take them as primal arguments (as ``jax.custom_jvp`` asks anyway).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

import jax
import jax.extend as jex
from jax.sharding import NamedSharding, PartitionSpec

__all__ = ["TracedLoss", "trace_example_loss", "example_avals"]

PyTree = Any


class TracedLoss:
    """``loss(consts, params, example) -> scalar``: a traced per-example loss, hashable by program."""

    __slots__ = ("jaxpr", "in_tree", "_key", "_hash")

    def __init__(self, jaxpr, in_tree):
        self.jaxpr = jaxpr  # an open jaxpr: its constvars are the closed-over arrays
        self.in_tree = in_tree
        self._key = (str(jaxpr), in_tree)
        self._hash = hash(self._key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TracedLoss) and self._key == other._key

    def __call__(self, consts, params, example):
        leaves, tree = jax.tree.flatten((params, example))
        if tree != self.in_tree:
            raise ValueError(f"the loss was traced for inputs {self.in_tree}, got {tree}.")
        (out,) = jex.core.jaxpr_as_fun(jex.core.ClosedJaxpr(self.jaxpr, list(consts)))(*leaves)
        return out

    def bind(self, consts) -> Callable[[PyTree, PyTree], jax.Array]:
        """``loss(params, example)`` with these closed-over arrays."""
        return lambda params, example: self(consts, params, example)


def example_avals(batch: PyTree) -> PyTree:
    """Abstract values of ONE example of ``batch`` (leading axis dropped, shardings kept)."""

    def one(x):
        aval = jax.typeof(x)
        sharding = getattr(aval, "sharding", None)
        mesh = getattr(sharding, "mesh", None)
        if mesh is None or mesh.empty:
            return jax.ShapeDtypeStruct(aval.shape[1:], aval.dtype)
        spec = tuple(sharding.spec) + (None,) * (len(aval.shape) - len(sharding.spec))
        return jax.ShapeDtypeStruct(aval.shape[1:], aval.dtype,
                                    sharding=NamedSharding(mesh, PartitionSpec(*spec[1:])))

    return jax.tree.map(one, batch)


def trace_example_loss(loss_fn: Callable, params: PyTree, batch: PyTree
                       ) -> tuple[TracedLoss, list]:
    """``(traced, consts)`` for ``loss_fn(params, example)`` on one example of ``batch``.

    Traced now, with the closure's current arrays (concrete values, or tracers of a caller's
    ``jit``) returned as ``consts``; raises ``ValueError`` unless the loss is a scalar.
    """
    # make_jaxpr traces through jit, whose trace cache is keyed by the function object: a fresh
    # wrapper per call is what makes this a fresh trace (and lets the entry be collected). The
    # trace runs under the inputs' (Explicit) mesh, as it would inside the jitted caller, so the
    # nested jits it records batch over that mesh.
    fresh = functools.partial(loss_fn)
    with _inputs_mesh((params, batch)):
        closed, out_shape = jax.make_jaxpr(fresh, return_shape=True)(params,
                                                                      example_avals(batch))
    shapes = jax.tree.leaves(out_shape)
    if len(shapes) != 1 or shapes[0].shape != ():
        raise ValueError(
            "loss_fn(params, example) must return a scalar, the loss of ONE example; got "
            f"{jax.tree.map(lambda s: s.shape, out_shape)}.")
    in_tree = jax.tree.structure((params, example_avals(batch)))
    return TracedLoss(closed.jaxpr, in_tree), list(closed.consts)


def _inputs_mesh(tree: PyTree):
    """A context with the abstract mesh of ``tree``'s Explicit-sharded leaves, when no mesh is
    set already (the mesh ``jax.jit`` would trace under); a no-op context otherwise."""
    if not jax.sharding.get_abstract_mesh().empty:
        return contextlib.nullcontext()
    for leaf in jax.tree.leaves(tree):
        mesh = getattr(getattr(jax.typeof(leaf), "sharding", None), "mesh", None)
        if mesh is not None and not mesh.empty and \
                jax.sharding.AxisType.Explicit in tuple(mesh.axis_types):
            return jax.sharding.use_abstract_mesh(getattr(mesh, "abstract_mesh", mesh))
    return contextlib.nullcontext()
