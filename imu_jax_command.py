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
    """Imports the command line (a Ctrl-C meanwhile ends the process at once), then runs it."""

    def on_sigint(signum, frame):
        # Nothing was done yet, and raising KeyboardInterrupt here would land inside whatever is
        # being imported: a C extension may print it as a traceback (numpy's dtype registration
        # does), turn it into an ImportError, or lose it in a gc callback. So exit from here.
        print(STARTING_MESSAGE, file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # a half-imported JAX is not torn down

    handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if handled:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        from imu_jax.lab import cli
    finally:
        if handled:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return cli.entry()


if __name__ == "__main__":
    sys.exit(main())
