"""Seconds spent compiling JAX programs inside a block of code (private; jax only).

JAX reports every tracing, lowering and backend compilation of a ``jit`` (and of the small
programs eager operations compile on first use) through ``jax.monitoring`` duration events.
:func:`compile_clock` adds up those events while its block runs: the union of their time spans,
so a trace nested in another (a ``jit`` inside a traced function) is counted once. What remains of
the block's wall-clock time is run time. Compilation in another thread while a clock runs is
counted too (the events do not say which thread they came from).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> with compile_clock() as clock:
  ...     _ = jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(3)).block_until_ready()
  >>> clock.seconds > 0
  True
  >>> with compile_clock() as clock:  # nothing new to compile
  ...     _ = jnp.ones(3).block_until_ready()
  >>> clock.seconds
  0.0
"""

from __future__ import annotations

import contextlib
import threading
import time

import jax

__all__ = ["CompileClock", "compile_clock", "COMPILE_EVENTS"]

# the duration events of one compilation: trace to a jaxpr, lower to MLIR, compile for the backend
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")

_LOCK = threading.Lock()
_ACTIVE: list["CompileClock"] = []
_REGISTERED = False


class CompileClock:
    """The compile-time spans recorded while the clock runs; ``seconds`` is their union."""

    def __init__(self):
        self.spans: list[tuple[float, float]] = []

    @property
    def seconds(self) -> float:
        return self.seconds_since(float("-inf"))

    def seconds_since(self, t0: float) -> float:
        """Compile seconds after ``t0`` (a ``time.perf_counter()`` reading)."""
        total, end = 0.0, t0
        for start, stop in sorted(self.spans):
            if stop <= end:
                continue
            total += stop - max(start, end)
            end = stop
        return total


def _listener(event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event not in COMPILE_EVENTS:
        return
    stop = time.perf_counter()
    with _LOCK:
        for clock in _ACTIVE:
            clock.spans.append((stop - float(duration), stop))


@contextlib.contextmanager
def compile_clock():
    """A :class:`CompileClock` counting compile time while the block runs (module doc)."""
    global _REGISTERED
    with _LOCK:
        if not _REGISTERED:
            jax.monitoring.register_event_duration_secs_listener(_listener)
            _REGISTERED = True
        clock = CompileClock()
        _ACTIVE.append(clock)
    try:
        yield clock
    finally:
        with _LOCK:
            _ACTIVE.remove(clock)
