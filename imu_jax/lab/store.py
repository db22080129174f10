"""The results store of an experiment: ``OUT/results.json`` and ``OUT/tune_runs.jsonl.xz``
(both written after every finished run), resume and its refusal on changed settings, and the
reports drawn from it. The per-run curves are in ``OUT/curves.jsonl.xz``
(:mod:`imu_jax.lab.curves`).

Layout: ``results.json`` holds the config and every run except the oracle-tuning sweep (role
``"tune"``: the shared grid on the tuning seeds, scored on the validation split), one compact
line per run (:func:`results_text`); the sweep, most of an oracle-tuned experiment's runs, is in
``tune_runs.jsonl.xz`` beside it: xz-compressed JSON Lines, one run per line in the order they
were saved (about 20 times smaller than the same lines in ``results.json``; absent when there are
no tuning runs; ``xzcat OUT/tune_runs.jsonl.xz | head -1`` reads it). :func:`load_results` joins
the two (``results.json``'s runs, then the sweep's) and :func:`save_results` splits them again.
A ``results.json`` written before the split (tuning runs inline, no sibling) loads as it is.
A sibling beside a ``results.json`` that holds tuning runs inline is not read: an older imu-jax
wrote that ``results.json`` without knowing of the sibling, which is stale then; the next save
moves the inline runs out and replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from typing import Mapping

try:  # file locks for concurrent writers (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import numpy as np

from imu_jax.lab import report, tune_runs


RESULTS_JSON, RESULTS_MD, TRADEOFF_PNG = "results.json", "results.md", "tradeoff.png"
TUNE_RUNS, TUNE_ROLE = tune_runs.TUNE_RUNS, tune_runs.TUNE_ROLE  # the sweep: lab.tune_runs
_is_tune = tune_runs.is_tune


STEPS_PNG = "steps.png"


def run_key(method: str, seed: int, role: str, hparams: Mapping) -> str:
    """Identity of a run for ``--resume``."""
    return json.dumps([method, int(seed), role, dict(sorted(hparams.items()))], default=str)


def load_results(out: str | os.PathLike) -> dict:
    """``out/results.json`` with the tuning runs of ``out/tune_runs.jsonl.xz`` joined back (after
    ``results.json``'s runs, in the order saved; module docstring); ``{"runs": []}`` when neither
    is there. A file that is not a results dict (truncated, empty, another structure) or a
    damaged sibling is a ``ValueError`` naming it and what to do.

    >>> import tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> run = {"method": "imu", "seed": 0, "hparams": {}, "metrics": {}, "avg_gap": 0.0}
    >>> save_results(out, {"runs": [{**run, "role": "tune"}, {**run, "role": "eval"}]})
    ['tune_runs.jsonl.xz', 'results.json']
    >>> [r["role"] for r in load_results(out)["runs"]]
    ['eval', 'tune']
    """
    out = pathlib.Path(out)
    path = out / RESULTS_JSON
    results = _read_json(path) if path.exists() else {"runs": []}
    if not any(_is_tune(run) for run in results["runs"]):  # else an older writer's file: inline
        results["runs"] += _read_tune_runs(out / TUNE_RUNS)
    return results


def saved_run_count(out: str | os.PathLike) -> int:
    """How many runs ``out`` holds: ``results.json``'s and its tuning sweep's; what
    ``results.json`` lists when either cannot be read as the store's (0 when it cannot be read
    at all). What an interrupted ``imu-jax run`` reports as saved."""
    try:
        return len(load_results(out)["runs"])
    except (OSError, ValueError):
        pass
    try:
        return len(json.loads((pathlib.Path(out) / RESULTS_JSON).read_text()).get("runs", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def has_results(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a ``results.json`` or a ``tune_runs.jsonl.xz``."""
    return any((pathlib.Path(out) / name).is_file() for name in (RESULTS_JSON, TUNE_RUNS))


class UnreadableResults(ValueError):
    """A ``results.json`` or ``tune_runs.jsonl.xz`` that cannot be read: ``path`` and
    ``problem``, and a message that says what to do."""

    def __init__(self, path: pathlib.Path, problem: str):
        super().__init__(f"cannot resume from {path}: {problem}; delete it (the cached models in "
                         f"{path.parent / 'models'} are kept) or run with --overwrite (not "
                         "--resume) to start over.")
        self.path, self.problem = path, problem


def _read_json(path: pathlib.Path) -> dict:
    try:
        results = json.loads(path.read_text())
        problem = _results_problem(results)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = f"not valid JSON ({err.msg if hasattr(err, 'msg') else err})"
    if problem:
        raise UnreadableResults(path, problem)
    return results


def _read_tune_runs(path: pathlib.Path) -> list[dict]:
    """The runs of ``tune_runs.jsonl.xz`` (``[]`` when absent), checked like results.json's."""
    try:
        runs = tune_runs.read(path)
        problem = _results_problem({"runs": runs})
    except ValueError as err:
        problem = str(err)
    if problem:
        raise UnreadableResults(path, problem)
    return runs


_RUN_KEYS = ("method", "seed", "hparams", "metrics", "avg_gap")


def _results_problem(results) -> str | None:
    """What is wrong with a loaded results dict, or ``None``.

    >>> _results_problem({"runs": [{"method": "imu"}]})
    'run 0 lacks avg_gap, hparams, metrics, seed'
    """
    if not isinstance(results, dict) or not isinstance(results.get("runs"), list):
        return "expected a JSON object with a list of runs"
    for i, run in enumerate(results["runs"]):
        if not isinstance(run, dict):
            return f"run {i} is not an object"
        missing = sorted(k for k in _RUN_KEYS if k not in run)
        if missing:
            return f"run {i} lacks {', '.join(missing)}"
    if not isinstance(results.get("config", {}), dict):
        return "its config is not an object"
    return None


def check_resume(out: str | os.PathLike, record: Mapping, results: Mapping | None = None) -> None:
    """Raises a one-line ``ValueError`` when ``out/results.json`` holds runs made with settings
    (:data:`RESULT_SETTINGS`) other than ``record``'s, or cannot be read."""
    out = pathlib.Path(out)
    results = load_results(out) if results is None else results
    conflicts = resume_conflicts(results.get("config") or {}, record) if results["runs"] else []
    if conflicts:
        raise ValueError(f"--resume: {out / RESULTS_JSON} was made with other settings "
                         f"({'; '.join(conflicts)}); rerun with the folder's settings, or use "
                         "another --out.")


# The recorded settings that change results: ``--resume`` refuses a folder made with others.
RESULT_SETTINGS = ("dataset", "model", "forget", "split_seed", "train_config", "hparams", "grids",
                   "tune_seeds", "retain_free")


def resume_conflicts(saved: Mapping, wanted: Mapping) -> list[str]:
    """The settings (of :data:`RESULT_SETTINGS`, recorded in both) where ``saved`` and
    ``wanted`` differ, as ``"name: saved → wanted"`` lines.

    >>> resume_conflicts({"forget": "class:3", "seeds": [0]}, {"forget": "class:4", "seeds": [1]})
    ["forget: 'class:3' → 'class:4'"]
    """
    out = []
    for key in RESULT_SETTINGS:
        if key in saved and key in wanted:
            a, b = _normalized(saved[key]), _normalized(wanted[key])
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):
                    parts = [f"{k}={a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
                             if a.get(k) != b.get(k)]
                    out.append(f"{key}: {', '.join(parts)}")
                else:
                    out.append(f"{key}: {a!r} → {b!r}")
    return out


def save_results(out: str | os.PathLike, results: Mapping) -> list[str]:
    """Writes ``results`` into ``out``: its tuning runs to ``tune_runs.jsonl.xz`` (removed when
    there are none), the rest to ``results.json`` (:func:`results_text`). Each file is written
    atomically (a temporary file, then ``os.replace``: a crash never leaves a half-written file)
    and only when its content changes; the sweep first, so that a crash between the two leaves
    the previous ``results.json`` beside finished runs. Returns the names of the files written
    or removed."""
    out = pathlib.Path(out)
    runs = list(results.get("runs", []))
    changed = [TUNE_RUNS] if tune_runs.write(out / TUNE_RUNS, [r for r in runs if _is_tune(r)],
                                             _run_line) else []
    text = results_text({**results, "runs": [run for run in runs if not _is_tune(run)]})
    path = out / RESULTS_JSON
    if not path.exists() or path.read_bytes() != text.encode():
        tmp = out / (RESULTS_JSON + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        changed.append(RESULTS_JSON)
    return changed


def _run_line(run: Mapping) -> str:
    return json.dumps(run, separators=(",", ":"), default=_json_default)


def results_text(results: Mapping) -> str:
    """``results.json``'s text: one compact line per run (a run added or changed is one line of
    diff; a third of the size of an indented file), then the other keys (``config``) indented.

    >>> print(results_text({"runs": [{"method": "imu", "seed": 0}], "config": {"seeds": [0]}}))
    {"runs": [
    {"method":"imu","seed":0}
    ],
    "config": {
     "seeds": [
      0
     ]
    }}
    <BLANKLINE>
    >>> json.loads(results_text({"runs": []}))
    {'runs': []}
    """
    runs = [_run_line(run) for run in results.get("runs", [])]
    parts = ['"runs": [' + ("\n" + ",\n".join(runs) + "\n" if runs else "") + "]"]
    parts += [f"{json.dumps(key)}: {json.dumps(value, indent=1, default=_json_default)}"
              for key, value in results.items() if key != "runs"]
    return "{" + ",\n".join(parts) + "}\n"


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_reports(out: pathlib.Path, results: Mapping) -> None:
    """``results.md`` and ``tradeoff.png`` (and ``steps.png`` when runs have a per-step trace)."""
    (out / RESULTS_MD).write_text(report.results_markdown(results))
    report.tradeoff_plot(results, str(out / TRADEOFF_PNG))
    if any(r.get("trace") for r in results["runs"]):
        report.trace_plot(results, str(out / STEPS_PNG))


def _normalized(value):
    """Through JSON (tuples become lists), as values are stored."""
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


WRITERS = ".writers"  # OUT/.writers/<pid>: the settings of each imu-jax run writing into OUT
LOCK = ".results.lock"


@contextlib.contextmanager
def _locked(out: pathlib.Path):
    """An exclusive lock on ``OUT`` (``OUT/.results.lock``), held while one writer reads, merges
    and writes ``results.json`` and ``tune_runs.jsonl.xz``. Without ``fcntl`` (Windows) there
    is no lock: run seeds one after another there."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _live_writers(out: pathlib.Path) -> dict[int, dict]:
    """``{pid: settings}`` of the other processes writing into ``out`` now (stale files of
    processes that died are removed)."""
    live = {}
    for path in (out / WRITERS).glob("*"):
        pid = int(path.name) if path.name.isdigit() else -1
        if pid == os.getpid():
            continue
        if pid < 0 or not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        try:
            live[pid] = json.loads(path.read_text())
        except (OSError, ValueError):
            live[pid] = {}
    return live


def key_of(run: Mapping) -> str:
    """:func:`run_key` of a stored run (older runs without a role were ``"eval"``)."""
    return run_key(run["method"], run["seed"], run.get("role", "eval"), run["hparams"])


def check_fresh(out: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raises a one-line ``ValueError`` when a run without ``--resume`` would start alone into
    ``out`` while ``out/results.json`` holds finished runs (hours of work, perhaps): it names
    the folder and the two ways on, ``--resume`` (keep them, run what is missing, add methods or
    seeds) and ``--overwrite`` (replace them). A run that joins another writer live in ``out``
    (one process per seed) keeps every run and is allowed; so is ``overwrite``.

    >>> import tempfile
    >>> check_fresh(tempfile.mkdtemp())  # nothing there yet
    """
    out = pathlib.Path(out)
    if overwrite or not has_results(out):
        return
    with _locked(out):
        if _live_writers(out):
            return
        runs = load_results(out)["runs"]
    if runs:
        raise _would_drop(out, len(runs))


def _runs_to_replace(out: pathlib.Path, overwrite: bool) -> list[dict]:
    """The runs on disk that a fresh start replaces; with ``overwrite`` an unreadable
    ``results.json`` or ``tune_runs.jsonl.xz`` is removed (it is being replaced) rather than an
    error. (The readable ones are replaced at the first save, which writes only the new runs.)"""
    try:
        return load_results(out)["runs"]
    except ValueError:
        if not overwrite:
            raise
        for name in (RESULTS_JSON, TUNE_RUNS):
            (out / name).unlink(missing_ok=True)
        return []


def _would_drop(out: pathlib.Path, count: int) -> ValueError:
    return ValueError(
        f"--out: {out} already holds {count} finished run(s) in {out / RESULTS_JSON}; add "
        "--resume to keep them and run only what is missing (or add methods and seeds), or "
        f"--overwrite to replace them (the trained models in {out / 'models'} are reused either "
        "way; in Python: resume=True or overwrite=True).")


def command_id(command: str) -> str:
    """The short id a stored run names its command by (``config["commands"][id]`` holds it).

    >>> command_id("imu-jax run --seeds 0")
    '99d0f2d6'
    """
    import hashlib

    return hashlib.sha1(command.encode()).hexdigest()[:8]


class SharedResults:
    """``OUT/results.json`` (and its ``tune_runs.jsonl.xz``) shared by every ``imu-jax run``
    writing into ``OUT`` at once (say one process per seed): each save merges, under a lock, the
    runs the others saved since.

    A run that starts while another writes into ``OUT`` joins it (its settings must be the
    same, else a one-line ``ValueError``); a run that starts alone without ``resume`` is refused
    when ``OUT`` holds finished runs (:func:`check_fresh`), unless ``overwrite``: then they are
    dropped at its first save. Each run is saved with the command that made it (``run["command"]``,
    an id of ``results["config"]["command"]``, spelled out in ``config["commands"]``) so that
    results.md can name every command that contributed.

    Examples:
      >>> import tempfile, pathlib
      >>> out = pathlib.Path(tempfile.mkdtemp())
      >>> a = SharedResults(out, {"config": {"forget": "class:3"}, "runs": []}, resume=False)
      >>> b = SharedResults(out, {"config": {"forget": "class:3"}, "runs": []}, resume=False)
      >>> run = {"hparams": {}, "metrics": {}, "avg_gap": 0.0, "role": "eval"}
      >>> a.add({**run, "method": "imu", "seed": 0}); b.add({**run, "method": "imu", "seed": 1})
      >>> sorted(r["seed"] for r in load_results(out)["runs"])
      [0, 1]
      >>> a.close(); b.close()
    """

    def __init__(self, out: str | os.PathLike, results: dict, *, resume: bool,
                 overwrite: bool = False):
        self.out, self.results = pathlib.Path(out), results
        settings = {k: results.get("config", {}).get(k) for k in RESULT_SETTINGS}
        with _locked(self.out):
            others = _live_writers(self.out)
            for pid, theirs in others.items():
                conflicts = resume_conflicts(theirs, settings)
                if conflicts:
                    raise ValueError(
                        f"another imu-jax run (process {pid}) is writing into {self.out} with "
                        f"other settings ({'; '.join(conflicts)}); use another --out.")
            self.joined = bool(others)  # joins them (with overwrite too: they replaced the runs)
            fresh = not (self.joined or resume)  # a fresh start replaces the runs on disk
            on_disk = _runs_to_replace(self.out, overwrite) if fresh else []
            if on_disk and not overwrite:
                raise _would_drop(self.out, len(on_disk))
            self.stale = {key_of(r) for r in on_disk}
            (self.out / WRITERS).mkdir(exist_ok=True)
            (self.out / WRITERS / str(os.getpid())).write_text(
                json.dumps(settings, default=_json_default))

    def add(self, run: dict | None = None) -> None:
        """Adds ``run`` (if any) and saves, merging the runs other writers saved meanwhile."""
        config = self.results.setdefault("config", {})
        if run is not None:
            command = config.get("command")
            if command:  # by id: the command line once per folder, not once per run
                config.setdefault("commands", {})[command_id(command)] = command
                run = {**run, "command": command_id(command)}
            self.results["runs"].append(run)
        with _locked(self.out):
            on_disk = load_results(self.out)
            mine = {key_of(r) for r in self.results["runs"]}
            theirs = [r for r in on_disk["runs"]
                      if key_of(r) not in mine and key_of(r) not in self.stale]
            self.results["runs"].extend(theirs)
            for other in theirs:  # the merged file names every seed and method it holds
                for field, value in (("seeds", other["seed"]), ("methods", other["method"])):
                    if isinstance(config.get(field), list) and value not in config[field]:
                        config[field].append(value)
            commands = {**(on_disk.get("config") or {}).get("commands", {}),
                        **config.get("commands", {})}
            used = {r.get("command") for r in self.results["runs"]}
            config["commands"] = {k: v for k, v in commands.items() if k in used}
            save_results(self.out, self.results)

    def lock(self):
        """The store's lock, for other files every writer into ``OUT`` updates (the curves)."""
        return _locked(self.out)

    def close(self) -> None:
        (self.out / WRITERS / str(os.getpid())).unlink(missing_ok=True)
