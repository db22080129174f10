"""The ``imu-jax`` console script: :func:`imu_jax.lab.cli.entry`, with Ctrl-C handled from the
first instant.

This module sits outside the ``imu_jax`` package on purpose: importing anything inside it runs
``imu_jax/__init__.py``, which imports JAX (one to a few seconds). A Ctrl-C in that time would end
in Python's ``KeyboardInterrupt`` traceback, or be lost in JAX's garbage-collector callback (see
:mod:`imu_jax.lab.interrupts`, which takes over once the import is done). Here it is one line,
exit status 130, and nothing was done.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["main"]

STARTING_MESSAGE = "imu-jax: interrupted while starting; nothing was done."


def main() -> int:
    """Imports the command line (catching a Ctrl-C meanwhile), then runs it."""
    pressed = []

    def on_sigint(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    def on_unraisable(info):  # a Ctrl-C raised inside a gc callback: recorded, not printed
        if not (isinstance(info.exc_type, type) and issubclass(info.exc_type, KeyboardInterrupt)):
            previous_hook(info)

    handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous_hook = sys.unraisablehook
    if handled:
        signal.signal(signal.SIGINT, on_sigint)
        sys.unraisablehook = on_unraisable
    try:
        from imu_jax.lab import cli
    except KeyboardInterrupt:
        pressed.append(signal.SIGINT)
    except Exception:  # a C extension's import turns a Ctrl-C into ImportError
        if not pressed:
            raise
    finally:
        if handled:
            sys.unraisablehook = previous_hook
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        print(STARTING_MESSAGE, file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # a half-imported JAX is not torn down
    return cli.entry()


if __name__ == "__main__":
    sys.exit(main())
