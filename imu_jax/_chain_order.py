"""Where a per-example transform sits in the optax combinators that initialise it (private).

A per-example transform (``weighted_ascent``, ``influence_weighted_ascent``, ``accumulate``) takes
``[N, ...]`` per-example gradients and must be the FIRST transformation that sees them. Nothing in
the arrays tells: a ``clip_by_global_norm``, ``scale``, ``adam`` or ``add_decayed_weights``
placed before it maps the ``[N, ...]`` stack to another ``[N, ...]`` stack of the same shapes (it
clips the norm of the whole stack, adds the decay to every example, …). What does tell is the
combinator calling our ``init``: :func:`check_first` looks at the Python frames that are
initialising it, and for every enclosing ``optax.chain`` / ``optax.named_chain`` checks that the
element being initialised (the one that contains our transform) is that chain's first element;
an enclosing ``optax.MultiSteps`` is refused too (it would average the ``[N, ...]`` stacks).

It runs once, in ``init``, and reads only the combinators' own frames, identified by their code
objects; with an optax whose combinators are built differently it finds no frame and checks
nothing. ``weighted_ascent(inner=...)`` and :func:`imu_jax.imu_sgd` own the rest of their chain,
so with them a wrong order cannot be written at all.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import optax

__all__ = ["check_first"]

_CHAIN_INIT = optax.chain(optax.identity()).init.__code__
_NAMED_CHAIN_INIT = optax.named_chain(("_", optax.identity())).init.__code__
_MULTISTEPS_INIT = optax.MultiSteps.init.__code__

_RIGHT_ORDER = (
    "it takes per-example gradients (a leading example axis N) and must come first: a "
    "transformation placed before it receives the [N, ...] stack and transforms the stack as if "
    "it were one gradient (clip_by_global_norm clips the norm of all examples together, "
    "add_decayed_weights adds the decay to every example, adam keeps moments per example). Put "
    "the rest of the chain after it, e.g. {name}(inner=optax.chain(optax.clip_by_global_norm("
    "1.0), optax.sgd(0.01))) or optax.chain({name}(), optax.clip_by_global_norm(1.0), "
    "optax.sgd(0.01)); a per-example operation of your own (e.g. per-example clipping) is applied "
    "to the gradients before calling update.")


def _position(items: list, current: Any) -> int | None:
    return next((i for i, item in enumerate(items) if item is current), None)


def check_first(name: str, init_fn: Callable) -> None:
    """Raises ``ValueError`` when an enclosing optax chain places ``init_fn``'s transform (or the
    element containing it) after another transformation, or an ``optax.MultiSteps`` wraps it."""
    frame, child = sys._getframe(1), None
    while frame is not None:
        code = frame.f_code
        position = None
        if code is _CHAIN_INIT and child is not None:  # its generator: `fn(params) for fn in ...`
            position = _position(list(frame.f_locals.get("init_fns", ())),
                                 child.f_locals.get("fn"))
        elif code is _NAMED_CHAIN_INIT:  # `for name, tx in transforms: states[name] = tx.init`
            position = _position([tx for _, tx in frame.f_locals.get("transforms", ())],
                                 frame.f_locals.get("tx"))
        elif code is _MULTISTEPS_INIT:
            raise ValueError(
                f"imu_jax.{name} cannot run inside optax.MultiSteps: MultiSteps averages the "
                "gradients it is given elementwise, here [N, ...] per-example stacks, and hands "
                "the inner optimizer parameter-shaped ones. Use imu_jax.accumulate(optimizer, k) "
                "(k micro-batches = exactly one step over their union), or wrap only the rest of "
                f"the chain: optax.chain(imu_jax.{name}(), optax.MultiSteps(rest, k)"
                ".gradient_transformation()) (the mean of the micro-batches' weighted means), "
                "as optax's differentially_private_aggregate documents.")
        if position:  # not None and > 0
            raise ValueError(
                f"imu_jax.{name} is transformation {position + 1} of an optax chain; "
                + _RIGHT_ORDER.format(name=f"imu_jax.{name}"))
        frame, child = frame.f_back, frame
