"""The oracle-tuning sweep of an experiment, stored compactly beside ``results.json``.

The runs of role ``"tune"`` (the shared grid on the tuning seeds, scored on the validation
split) are most of an oracle-tuned experiment's runs; :mod:`imu_jax.lab.store` keeps them out of
``results.json`` in ``tune_runs.jsonl.xz``: xz-compressed JSON Lines, one run per line in the
order they were saved (about 20 times smaller than the same lines in ``results.json``;
``xzcat OUT/tune_runs.jsonl.xz | head -1`` reads it).

Examples:
  >>> import json, tempfile
  >>> out = pathlib.Path(tempfile.mkdtemp())
  >>> write(out / TUNE_RUNS, [{"method": "imu", "role": "tune"}], json.dumps)
  True
  >>> read(out / TUNE_RUNS), write(out / TUNE_RUNS, [{"method": "imu", "role": "tune"}], json.dumps)
  ([{'method': 'imu', 'role': 'tune'}], False)
"""

from __future__ import annotations

import json
import lzma
import os
import pathlib
from typing import Callable, Mapping, Sequence

TUNE_RUNS = "tune_runs.jsonl.xz"  # the runs of role TUNE_ROLE, beside results.json
TUNE_ROLE = "tune"


def is_tune(run) -> bool:
    return isinstance(run, dict) and run.get("role") == TUNE_ROLE


def read(path: pathlib.Path) -> list[dict]:
    """The runs stored in ``path`` (``[]`` when absent). A damaged file, a line that is not
    JSON or a run of another role is a ``ValueError`` saying which."""
    if not path.exists():
        return []
    try:
        runs = [json.loads(line) for line in _text(path).splitlines() if line.strip()]
    except (lzma.LZMAError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"not an xz file of text ({err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"a line is not valid JSON ({err.msg})") from None
    if not all(is_tune(run) for run in runs):
        raise ValueError(f"it holds runs whose role is not {TUNE_ROLE!r}")
    return runs


def write(path: pathlib.Path, runs: Sequence[Mapping], line: Callable[[Mapping], str]) -> bool:
    """Stores ``runs`` (each as ``line(run)``) in ``path``, atomically (a temporary file, then
    ``os.replace``) and only when the content changes; removes ``path`` when there are none.
    Returns whether the file changed."""
    sweep = "".join(line(run) + "\n" for run in runs)
    if not runs:
        if path.exists():
            path.unlink()
            return True
        return False
    if path.exists() and _current_text(path) == sweep:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(lzma.compress(sweep.encode("utf-8")))
    os.replace(tmp, path)
    return True


def _text(path: pathlib.Path) -> str:
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def _current_text(path: pathlib.Path) -> str | None:
    """A stored sweep's text, ``None`` when it cannot be read (it is then rewritten)."""
    try:
        return _text(path)
    except (lzma.LZMAError, EOFError, UnicodeDecodeError, OSError):
        return None


__all__ = ["TUNE_ROLE", "TUNE_RUNS", "is_tune", "read", "write"]
