"""Crash-safe, sharded checkpoints of an unlearning run (Orbax ``CheckpointManager``).

A checkpoint holds four items, saved together every ``save_every`` steps (asynchronously; the
last ``keep`` are kept):

* ``state``: a pytree of arrays — params, optimizer state, step, RNG key data — saved sharded
  (each process writes its own shards), restored onto any target sharding (8 devices → 1 and
  back);
* ``selection``: the unlearned examples' ``indices`` and ``weights`` (numpy);
* ``meta``: JSON — the run's ``config``, the ``architecture`` (parameter paths → shapes, plus
  any model description the caller gives), the step and the loop's ``progress`` (what a resumed
  loop needs beyond the arrays, e.g. the stopping rule's curve so far).

Restoring reads ``meta`` first: a different architecture is a :class:`ArchitectureMismatchError`
naming both; a checkpoint that cannot be read (truncated, corrupted, half-deleted) is skipped with
a :class:`CheckpointFallbackWarning` and the previous one is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import warnings
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from imu_jax import heads


PyTree = Any


class CheckpointFallbackWarning(UserWarning):
    """A checkpoint could not be restored; an older one was used instead."""


class ArchitectureMismatchError(ValueError):
    """The checkpoint was saved for another architecture than the restore target."""


@dataclasses.dataclass
class Restored:
    """What :meth:`RunCheckpointer.restore` returns."""
    step: int
    state: PyTree
    selection: dict[str, np.ndarray] | None
    meta: dict[str, Any]


def architecture_of(params: PyTree, description: Mapping[str, Any] | None = None) -> dict:
    """A JSON-able fingerprint of an architecture: parameter paths → ``"dtype[shape]"``.

    Examples:
      >>> import numpy as np
      >>> from imu_jax.unlearning.run_checkpoint import architecture_of
      >>> architecture_of({"head": {"kernel": np.zeros((4, 3), np.float32)}}, {"name": "mlp"})
      {'params': {'head/kernel': 'float32[4,3]'}, 'description': {'name': 'mlp'}}
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    shapes = {heads.param_path(path):
              f"{np.dtype(leaf.dtype).name}[{','.join(map(str, np.shape(leaf)))}]"
              for path, leaf in leaves}
    # through JSON, as it is stored (tuples become lists), so saved and wanted compare equal
    described = json.loads(json.dumps(dict(description or {}), default=str, sort_keys=True))
    return {"params": shapes, "description": described}


def abstract_like(tree: PyTree, shardings: PyTree | None = None) -> PyTree:
    """``jax.ShapeDtypeStruct`` leaves (with ``shardings``, or each array's own) to restore onto.

    Examples:
      >>> import jax.numpy as jnp
      >>> from imu_jax.unlearning.run_checkpoint import abstract_like
      >>> abstract_like({"w": jnp.zeros((2, 3))})["w"].shape
      (2, 3)
    """
    if shardings is None:
        shardings = jax.tree.map(lambda x: getattr(x, "sharding", None), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
                        tree, shardings)


def _difference(saved: dict, wanted: dict) -> str:
    lines = []
    for key in ("params", "description"):
        a, b = saved.get(key, {}), wanted.get(key, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                lines.append(f"  {key}/{name}: checkpoint {a.get(name, '(absent)')}, "
                             f"target {b.get(name, '(absent)')}")
    return "\n".join(lines[:12]) + ("\n  ..." if len(lines) > 12 else "")


class RunCheckpointer:
    """Saves and restores an unlearning run with an Orbax ``CheckpointManager``.

    Args:
      directory: where the step directories go (created if missing); absolute or relative.
      save_every: :meth:`save` writes only when ``step % save_every == 0`` (or ``force=True``).
      keep: how many recent checkpoints to keep.
      async_save: save in the background (call :meth:`wait_until_finished` / :meth:`close`).
      architecture: a description of the model (e.g. its config) checked on restore, on top of
        the parameter shapes.

    Examples:
      >>> import tempfile, numpy as np, jax.numpy as jnp
      >>> from imu_jax.unlearning.run_checkpoint import RunCheckpointer
      >>> state = {"params": {"w": jnp.ones(3)}, "step": jnp.array(2)}
      >>> with RunCheckpointer(tempfile.mkdtemp(), save_every=2) as ckpt:
      ...   ckpt.save(2, state, selection={"indices": np.arange(3), "weights": np.ones(3)},
      ...             config={"lr": 0.01})
      ...   ckpt.wait_until_finished()
      ...   got = ckpt.restore(state)
      True
      >>> got.step, got.state["params"]["w"].tolist(), got.meta["config"]
      (2, [1.0, 1.0, 1.0], {'lr': 0.01})
    """

    def __init__(self, directory, *, save_every: int = 1, keep: int = 3, async_save: bool = True,
                 architecture: Mapping[str, Any] | None = None):
        if int(save_every) < 1 or int(keep) < 1:
            raise ValueError(f"save_every and keep must be >= 1, got {save_every}, {keep}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.save_every = int(save_every)
        self.architecture = dict(architecture or {})
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep), create=True, enable_async_checkpointing=bool(async_save),
            cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "selection", "meta"))

    # -- saving -----------------------------------------------------------------------------
    def save(self, step: int, state: PyTree, *, selection: Mapping[str, Any] | None = None,
             config: Mapping[str, Any] | None = None, progress=None,
             force: bool = False) -> bool:
        """Saves ``state`` at ``step`` if due (every ``save_every``) or ``force``; True if saved.
        ``progress`` (JSON, or a function returning it, called only when a save is due) comes
        back as ``restore(...).meta["progress"]``."""
        step = int(step)
        if not force and step % self.save_every:
            return False
        if step in self._manager.all_steps():
            return False
        meta = {"step": step, "config": dict(config or {}),
                "architecture": architecture_of(_params_of(state), self.architecture)}
        progress = progress() if callable(progress) else progress
        if progress is not None:
            meta["progress"] = json.loads(json.dumps(progress, default=float))  # a copy, now
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
        if selection is not None:
            items["selection"] = ocp.args.StandardSave(
                {k: np.asarray(v) for k, v in selection.items()})
        return bool(self._manager.save(step, args=ocp.args.Composite(**items), force=True))

    # -- restoring --------------------------------------------------------------------------
    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore(self, target: PyTree, *, step: int | None = None) -> Restored | None:
        """Restores onto ``target`` (arrays or ``jax.ShapeDtypeStruct`` with shardings).

        Without ``step`` it tries the newest checkpoint, then older ones, warning
        (:class:`CheckpointFallbackWarning`) for each that cannot be read. Returns ``None`` when
        there is no checkpoint. Raises :class:`ArchitectureMismatchError` when a checkpoint was
        written for another architecture (never silently falls back over that).
        """
        self._manager.reload()
        steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
        abstract = abstract_like(target) if _has_arrays(target) else target
        wanted = architecture_of(_params_of(target), self.architecture)
        failures = []
        for candidate in steps:
            try:
                with _quiet_absl():  # "item ... found but not restored": we only want meta here
                    meta = self._manager.restore(
                        candidate, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception as error:  # unreadable metadata: corrupted
                failures.append((candidate, error))
                self._warn(candidate, error, steps)
                continue
            saved = meta.get("architecture", {})
            if saved.get("params") != wanted["params"] or (
                    self.architecture and saved.get("description") != wanted["description"]):
                raise ArchitectureMismatchError(
                    f"checkpoint step {candidate} in {self.directory} was saved for architecture "
                    f"{saved.get('description') or '(undescribed)'} but the restore target is "
                    f"{wanted['description'] or '(undescribed)'}; they differ in:\n"
                    f"{_difference(saved, wanted)}")
            try:
                items = {"state": ocp.args.StandardRestore(abstract)}
                has_selection = "selection" in _item_names(self._manager, candidate)
                if has_selection:
                    items["selection"] = ocp.args.StandardRestore()
                got = self._manager.restore(candidate, args=ocp.args.Composite(**items))
                state = got["state"]
                jax.block_until_ready(state)
            except Exception as error:
                failures.append((candidate, error))
                self._warn(candidate, error, steps)
                continue
            selection = None
            if has_selection:
                selection = {k: np.asarray(v) for k, v in got["selection"].items()}
            return Restored(step=int(candidate), state=state, selection=selection, meta=meta)
        if failures:
            raise RuntimeError(
                f"no checkpoint in {self.directory} could be restored; tried steps "
                f"{[s for s, _ in failures]}; last error: {failures[-1][1]!r}")
        return None

    def restore_selection(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``(selection, meta)`` of the newest checkpoint whose selection can be read, or ``None``.

        Needs no restore target: a run reads what it selected before it builds its state."""
        self._manager.reload()
        for candidate in sorted(self._manager.all_steps(), reverse=True):
            if "selection" not in _item_names(self._manager, candidate):
                continue
            try:
                with _quiet_absl():
                    got = self._manager.restore(candidate, args=ocp.args.Composite(
                        meta=ocp.args.JsonRestore(), selection=ocp.args.StandardRestore()))
            except Exception:  # unreadable: restore() warns when the state is read
                continue
            return {k: np.asarray(v) for k, v in got["selection"].items()}, got["meta"]
        return None

    def _warn(self, step, error, steps):
        older = [s for s in steps if s < step]
        then = f"falling back to step {older[0]}" if older else "no older checkpoint is left"
        warnings.warn(
            f"checkpoint step {step} in {self.directory} could not be restored "
            f"({type(error).__name__}: {str(error)[:200]}); {then}.",
            CheckpointFallbackWarning, stacklevel=3)

    # -- lifecycle --------------------------------------------------------------------------
    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

def _params_of(state: PyTree) -> PyTree:
    return state["params"] if isinstance(state, Mapping) and "params" in state else state


def _has_arrays(tree: PyTree) -> bool:
    return any(isinstance(x, (jax.Array, np.ndarray)) for x in jax.tree.leaves(tree))



class _WithoutInterrupts(logging.Filter):
    """Drops log records of a ``KeyboardInterrupt``. Orbax logs a Ctrl-C that arrives while it
    waits for a save as an error with a traceback ("Save Finalize thread ... failed") and then
    re-raises it; the caller reports the interrupt (``imu-jax``: one line), so the log is only
    noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.exc_info[0] if record.exc_info else None
        return not (isinstance(kind, type) and issubclass(kind, KeyboardInterrupt))


_WITHOUT_INTERRUPTS = _WithoutInterrupts()
logging.getLogger("absl").addFilter(_WITHOUT_INTERRUPTS)  # Orbax logs through absl's logger


@contextlib.contextmanager
def _quiet_absl():
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _item_names(manager, step) -> set[str]:
    try:
        with _quiet_absl():  # Orbax warns about every item it has no handler for here
            return set(manager.item_metadata(step).keys())
    except Exception:  # older layouts: assume all
        return {"state", "selection", "meta"}


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and arrays (names a run's checkpoint directory).

    Examples:
      >>> import numpy as np
      >>> from imu_jax.unlearning.run_checkpoint import fingerprint
      >>> fingerprint({"lr": 0.01}, np.arange(3)) == fingerprint({"lr": 0.01}, np.arange(3))
      True
    """
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, (np.ndarray, jax.Array)):
            array = np.ascontiguousarray(np.asarray(part))
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def add_arguments(parser, *, default_save_every: int = 100, default_keep: int = 3) -> None:
    """Adds ``--checkpoint-dir``, ``--save-every``, ``--keep`` and ``--resume`` to a parser.

    Examples:
      >>> import argparse
      >>> from imu_jax.unlearning import run_checkpoint
      >>> parser = argparse.ArgumentParser()
      >>> run_checkpoint.add_arguments(parser)
      >>> args = parser.parse_args(["--checkpoint-dir", "/tmp/run", "--resume"])
      >>> args.save_every, args.keep, args.resume
      (100, 3, True)
    """
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint-dir", default=None,
                       help="save the unlearning run here (Orbax, sharded, asynchronous)")
    group.add_argument("--save-every", type=int, default=default_save_every, metavar="K",
                       help=f"checkpoint every K steps (default {default_save_every})")
    group.add_argument("--keep", type=int, default=default_keep, metavar="N",
                       help=f"keep the last N checkpoints (default {default_keep})")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest readable checkpoint in --checkpoint-dir")


def from_args(args, *, default_directory=None,
              architecture: Mapping[str, Any] | None = None) -> RunCheckpointer | None:
    """A :class:`RunCheckpointer` from :func:`add_arguments`' flags, or ``None`` without a dir."""
    directory = getattr(args, "checkpoint_dir", None) or default_directory
    if directory is None:
        if getattr(args, "resume", False):
            raise ValueError("--resume needs --checkpoint-dir (where the run was saved).")
        return None
    return RunCheckpointer(directory, save_every=args.save_every, keep=args.keep,
                           architecture=architecture)
