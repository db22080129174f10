"""Ctrl-C that always stops an ``imu-jax`` command (standard library only).

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be.
Two places lose it:

* a garbage-collector callback or a finalizer (``__del__``, weakref callbacks): JAX registers
  ``_xla_gc_callback``, and while JAX works the collector often runs it. An exception raised
  there is "unraisable": Python prints ``Exception ignored in: <function _xla_gc_callback>`` and a
  traceback, drops it, and the program goes on as if Ctrl-C had not been pressed;
* code that catches every exception and goes on (``except BaseException:`` in a library).

Inside :func:`reliable_interrupts` SIGINT has a handler of its own that records the request and
raises as usual; a ``KeyboardInterrupt`` that reaches ``sys.unraisablehook`` is not printed but
delivered again (SIGINT to the main thread, 50 ms later, once the callback has returned), so it
is raised in ordinary code; and :func:`check` (called by the runner between runs) raises when a
request was swallowed all the same. A SIGINT that was ignored when the block started
(``nohup``, a background job of a script) stays ignored.

Examples:
  >>> import signal
  >>> with reliable_interrupts():
  ...     try:
  ...         signal.raise_signal(signal.SIGINT)
  ...     except KeyboardInterrupt:
  ...         print("stopped", requested())
  stopped True
  >>> requested()  # outside the block nothing is recorded
  False
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["check", "quiet", "reliable_interrupts", "requested"]


class _State:
    active = False  # inside reliable_interrupts()
    requested = False  # SIGINT arrived (inside the block)


def _on_sigint(signum, frame):
    _State.requested = True
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether Ctrl-C was pressed inside the current :func:`reliable_interrupts` block."""
    return _State.active and _State.requested


def check() -> None:
    """Raises ``KeyboardInterrupt`` if Ctrl-C was pressed and the program went on all the same
    (the interrupt was swallowed): called at points where stopping loses nothing, e.g. between
    runs. A no-op outside :func:`reliable_interrupts`.

    >>> check()  # nothing was pressed
    """
    if requested():
        raise KeyboardInterrupt


@contextlib.contextmanager
def reliable_interrupts():
    """Inside the block (main thread only) Ctrl-C raises ``KeyboardInterrupt`` reliably (module
    docstring); the previous SIGINT handler and unraisable hook are restored after it."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous_handler = signal.signal(signal.SIGINT, _on_sigint)
    previous_hook = sys.unraisablehook

    def unraisable(info):
        if isinstance(info.exc_type, type) and issubclass(info.exc_type, KeyboardInterrupt):
            _deliver_again()
            return
        previous_hook(info)

    sys.unraisablehook = unraisable
    outer = _State.active, _State.requested
    _State.active, _State.requested = True, False
    try:
        yield
    finally:
        _State.active, _State.requested = outer
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous_handler)


def _deliver_again() -> None:
    """Sends SIGINT to the main thread again shortly, from another thread: sent from the hook
    itself, the handler would run inside the hook (and be lost once more). A real signal, not
    ``_thread.interrupt_main``, so that it also ends a blocking call (a sleep, a lock wait)."""
    main = threading.main_thread().ident

    def send():
        if hasattr(signal, "pthread_kill"):
            signal.pthread_kill(main, signal.SIGINT)
        else:  # pragma: no cover - Windows
            import _thread

            _thread.interrupt_main(signal.SIGINT)

    timer = threading.Timer(REDELIVERY_SECONDS, send)
    timer.daemon = True
    timer.start()


REDELIVERY_SECONDS = 0.05  # after the callback that swallowed the interrupt has returned


@contextlib.contextmanager
def quiet():
    """Ignores further Ctrl-C inside the block: for the few lines that report an interruption
    (a second Ctrl-C there would end in a traceback)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
