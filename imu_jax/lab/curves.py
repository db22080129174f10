"""The per-check curves of an experiment's monitored runs, in one compact file per experiment:
``OUT/curves.jsonl.xz``. The PNGs are drawn from it on demand (``imu-jax plot``,
:mod:`imu_jax.lab.figures`).

Format: xz-compressed JSON Lines, one line per run in the order the runs finished, keyed by
``name`` = ``<method>_<role>_seed<S>`` (a rerun of a name replaces its line)::

  {"name": "imu_retain_free_seed0", "stop_reason": "reached", "stopped_at": 12, "cap": 50,
   "removal": "class", "threshold": 0.1, "statistic": "forget_acc",
   "curve": {"step": [0, 1, ...], "forget_acc": [1.0, 0.9726027, ...], "held_out_acc": [...],
             "forget_loss": [...], "held_out_loss": [...], "statistic": [...]}}

These are the fields of the former ``OUT/curves/<name>.json`` (and ``utility_floor`` /
``utility_acc`` when the utility guard was on), with the curve stored column by column;
:func:`read_curves` gives each back as before: the header fields and ``"curve"``, a list of
per-check dicts. ``run["info"]["curve_file"]`` is ``"curves.jsonl.xz#<name>"``.

Why this format rather than a JSON + PNG per run (92 MB over the committed experiments), a gzip
file or an ``.npz``:

* one file per experiment, rewritten whole after each finished run through a temporary file
  and ``os.replace``: an interrupted write leaves the previous complete file. The largest
  experiment holds about 1 MB of text, so a rewrite takes well under a second.
* text that standard tools read: ``xzcat OUT/curves.jsonl.xz | head -1``, Python's ``lzma``.
* xz rather than gzip: these columns of digits compress 45 % smaller (1.4 MB against 2.6 MB over
  all committed experiments); an ``.npz`` (zlib, one member per array) was 3.9 MB and holds no
  readable header.
* columns rather than a dict per check: each field's name once per run, not once per check.
* values at float32 precision (the shortest decimal that reads back as the same float32): the
  losses were float32 on the device already, and an accuracy is k/n for an evaluation set of
  n < 2^24 examples, which float32 keeps distinct; it halves the digits to store.
"""

from __future__ import annotations

import json
import lzma
import os
import pathlib
from typing import Mapping

import numpy as np


CURVES_FILE = "curves.jsonl.xz"
LEGACY_FOLDER = "curves"  # OUT/curves/<name>.json (+ .png) before the compact file
ROLES = ("retain_free", "eval", "tune")
HEADER_KEYS = ("stop_reason", "stopped_at", "cap", "removal", "threshold", "statistic",
               "utility_floor")


def curve_name(run: Mapping) -> str:
    """``<method>_<role>_seed<S>``, the key of a run's curve.

    >>> curve_name({"method": "imu", "role": "retain_free", "seed": 0})
    'imu_retain_free_seed0'
    """
    return f"{run['method']}_{run['role']}_seed{run['seed']}"


def curve_ref(name: str) -> str:
    """What ``run["info"]["curve_file"]`` holds: ``"curves.jsonl.xz#<name>"``."""
    return f"{CURVES_FILE}#{name}"


def write_curve(out: str | os.PathLike, run: dict) -> None:
    """Moves a monitored run's per-check curve out of ``run["info"]`` into ``OUT/curves.jsonl.xz``
    (added, or replacing the line of the same name) and records where in
    ``run["info"]["curve_file"]``. A run without a curve is left as it is."""
    info = run["info"]
    curve = info.pop("curve", None)
    if not curve:
        return
    name = curve_name(run)
    record = {**{k: v for k, v in info.items() if k in HEADER_KEYS}, "curve": curve}
    add_curves(out, {name: record})
    info["curve_file"] = curve_ref(name)


def add_curves(out: str | os.PathLike, records: Mapping[str, Mapping]) -> None:
    """Adds ``{name: record}`` (records as :func:`read_curves` returns them) to
    ``OUT/curves.jsonl.xz``, replacing lines of the same name; atomic (temp file, then
    ``os.replace``)."""
    path = pathlib.Path(out) / CURVES_FILE
    lines = _read_lines(path)
    for name, record in records.items():
        lines[name] = _encode(name, record)
    tmp = path.with_name(CURVES_FILE + ".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines.values())
    os.replace(tmp, path)


def read_curves(out: str | os.PathLike) -> dict[str, dict]:
    """``{name: record}`` of ``OUT/curves.jsonl.xz``, each record the header fields and
    ``"curve"`` (a list of per-check dicts); also the ``OUT/curves/<name>.json`` files an older
    run wrote, for names the compact file lacks. ``{}`` when there are none. A damaged file is a
    one-line ``ValueError`` naming it."""
    out = pathlib.Path(out)
    found = {path.stem: _legacy(path) for path in sorted((out / LEGACY_FOLDER).glob("*.json"))}
    for name, line in _read_lines(out / CURVES_FILE).items():
        found[name] = _decode(json.loads(line))
    return found


def read_curve(out: str | os.PathLike, name: str) -> dict:
    """One run's record by name (or by ``run["info"]["curve_file"]``); a ``ValueError`` listing
    the names there are when it is not there."""
    name = name.split("#", 1)[-1]
    curves = read_curves(out)
    if name not in curves:
        where = pathlib.Path(out) / CURVES_FILE
        have = ", ".join(curves) if curves else "no curves at all"
        raise ValueError(f"no run named {name!r} in {where}; it has: {have}.")
    return curves[name]


def remove_curves(out: str | os.PathLike) -> None:
    """Deletes ``OUT/curves.jsonl.xz`` and what an older run or ``imu-jax plot`` left in
    ``OUT/curves/`` (a fresh run's curves must not sit beside the previous run's)."""
    out = pathlib.Path(out)
    for stale in [out / CURVES_FILE, *(out / LEGACY_FOLDER).glob("*_seed*.*")]:
        stale.unlink(missing_ok=True)


def pack_legacy(out: str | os.PathLike) -> int:
    """Moves ``OUT/curves/*.json`` into ``OUT/curves.jsonl.xz`` (a name already in the compact
    file keeps its line there: it was written later), deletes them and their PNGs and the folder
    when it is left empty; returns how many were packed. Idempotent."""
    out = pathlib.Path(out)
    folder = out / LEGACY_FOLDER
    paths = sorted(folder.glob("*.json"))
    if paths:
        have = set(_read_lines(out / CURVES_FILE))
        add_curves(out, {p.stem: _legacy(p) for p in paths if p.stem not in have})
    for path in [*paths, *folder.glob("*.png")]:
        path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return len(paths)


def split_name(name: str) -> tuple[str, str, int | None]:
    """``(method, role, seed)`` of a curve name (role ``""`` and seed ``None`` when it has no
    such parts).

    >>> split_name("boundary_shrink_runner_up_retain_free_seed2")
    ('boundary_shrink_runner_up', 'retain_free', 2)
    """
    head, _, seed = name.rpartition("_seed")
    if not head or not seed.isdigit():
        return name, "", None
    for role in ROLES:
        if head.endswith("_" + role):
            return head[:-len(role) - 1], role, int(seed)
    return head, "", int(seed)


def _read_lines(path: pathlib.Path) -> dict[str, str]:
    """``{name: line}`` of the compact file (``{}`` when absent)."""
    if not path.exists():
        return {}
    lines = {}
    try:
        with lzma.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    lines[json.loads(line)["name"]] = line.rstrip("\n")
    except (lzma.LZMAError, EOFError, UnicodeDecodeError, json.JSONDecodeError, KeyError,
            TypeError) as err:
        raise ValueError(f"cannot read the curves in {path} ({type(err).__name__}: {err}); "
                         "delete it to start its curves afresh (results.json does not depend "
                         "on it).") from None
    return lines


def _encode(name: str, record: Mapping) -> str:
    """One line: the header fields and the curve as columns at float32 precision."""
    points = list(record.get("curve") or [])
    keys = list(dict.fromkeys(k for p in points for k in p))
    columns = {k: [_float32(p.get(k)) for p in points] for k in keys}
    header = {k: v for k, v in record.items() if k not in ("name", "curve")}
    return json.dumps({"name": name, **header, "curve": columns}, separators=(",", ":"),
                      default=_plain)


def _decode(entry: Mapping) -> dict:
    """A line's record: header fields and the curve as a list of per-check dicts."""
    columns = entry.get("curve") or {}
    length = max((len(v) for v in columns.values()), default=0)
    points = [{k: v[i] for k, v in columns.items() if i < len(v) and v[i] is not None}
              for i in range(length)]
    return {**{k: v for k, v in entry.items() if k not in ("name", "curve")}, "curve": points}


def _legacy(path: pathlib.Path) -> dict:
    """An ``OUT/curves/<name>.json`` of an older run (header fields and the list of checks)."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the curve {path} ({err}); delete it.") from None
    if not isinstance(record, dict):
        raise ValueError(f"cannot read the curve {path} (not a JSON object); delete it.")
    return record


def _float32(value):
    """A float as the shortest decimal of its float32 (other values unchanged).

    >>> _float32(0.9752321981424149), _float32(3), _float32(True)
    (0.9752322, 3, True)
    """
    if isinstance(value, (float, np.floating)):
        return float(str(np.float32(value)))
    return value


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
