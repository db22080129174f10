"""Checkpointing a running loop: :class:`LoopCheckpoint` saves and resumes a loop's carried state
through a :class:`~imu_jax.unlearning.run_checkpoint.RunCheckpointer`; :func:`use_run_checkpoints`
turns it on for every loop run inside it (each named by a fingerprint of its run)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
from typing import Any, Mapping

import numpy as np

from imu_jax.unlearning.run_checkpoint import PyTree, RunCheckpointer


class LoopCheckpoint:
    """Checkpoint-and-resume glue for a step loop; does nothing without a checkpointer.

    ``start(state)`` returns ``(first_step, state)``: ``(0, state)``, or with ``resume`` the
    newest readable checkpoint's (checking that it was saved for the same selection of forget
    examples); then ``progress`` holds what ``done`` saved with it (``None`` when nothing was
    resumed). ``done(step, state, progress=...)`` saves when due (and always at
    ``total_steps``), with ``progress``: JSON the loop needs on resume beyond the arrays (the
    stopping rule's curve so far), or a function returning it (called only when a save is due).
    ``finish()`` waits for the asynchronous writes.

    Examples:
      >>> import tempfile, numpy as np, jax.numpy as jnp
      >>> from imu_jax.unlearning.loop_checkpoint import LoopCheckpoint
      >>> from imu_jax.unlearning.run_checkpoint import RunCheckpointer
      >>> directory = tempfile.mkdtemp()
      >>> loop = LoopCheckpoint(RunCheckpointer(directory, save_every=2), total_steps=3)
      >>> first, w = loop.start({"w": jnp.zeros(2)})
      >>> for step in range(first, 3):
      ...   w = {"w": w["w"] + 1}
      ...   loop.done(step + 1, w)
      >>> loop.finish()
      >>> again = LoopCheckpoint(RunCheckpointer(directory), total_steps=3, resume=True)
      >>> first, w = again.start({"w": jnp.zeros(2)})
      >>> first, w["w"].tolist()
      (3, [3.0, 3.0])
    """

    def __init__(self, checkpointer: RunCheckpointer | None, *, total_steps: int,
                 resume: bool = False, selection: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None):
        self.checkpointer, self.total_steps, self.resume = checkpointer, int(total_steps), resume
        self.selection = None if selection is None else {
            k: np.asarray(v) for k, v in selection.items()}
        self.config = dict(config or {})
        self.progress: dict[str, Any] | None = None

    def saved_selection(self) -> dict[str, np.ndarray] | None:
        """With ``resume``: the selection the checkpointed run used, adopted as this run's.

        A resumed run continues from what it saved rather than from a recomputation, which on
        another mesh or device count rounds differently (and may keep other examples). The
        checkpoint must have been saved with this run's ``config`` (the keys that define the run:
        hyperparameters, seed, forget-set fingerprint); otherwise a ``ValueError`` names the keys
        that differ. Returns ``None`` without a checkpoint (or without resume)."""
        if self.checkpointer is None or not self.resume:
            return None
        found = self.checkpointer.restore_selection()
        if found is None:
            return None
        selection, meta = found
        saved = meta.get("config", {})
        wanted = json.loads(json.dumps(self.config, sort_keys=True, default=str))
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if differ:
            raise ValueError(
                f"the checkpoint in {self.checkpointer.directory} was saved for another run: "
                + "; ".join(f"{k}: checkpoint {saved.get(k, '(absent)')!r}, this run "
                            f"{wanted.get(k, '(absent)')!r}" for k in differ[:6])
                + ". Resume with the same data and settings, or use another checkpoint "
                  "directory.")
        self.selection = selection
        return selection

    def start(self, state: PyTree) -> tuple[int, PyTree]:
        if self.checkpointer is None or not self.resume:
            return 0, state
        restored = self.checkpointer.restore(state)
        if restored is None:
            return 0, state
        saved = restored.selection
        if self.selection is not None and saved is not None and not (
                all(saved[k].shape == v.shape for k, v in self.selection.items() if k in saved)
                and np.array_equal(saved["indices"], self.selection["indices"])
                and np.allclose(saved["weights"], self.selection["weights"])):
            raise ValueError(
                f"checkpoint step {restored.step} in {self.checkpointer.directory} was saved for "
                f"another selection of forget examples ({len(saved['indices'])} kept) than this "
                f"run's ({len(self.selection['indices'])} kept); resume with the same data and "
                "settings, or use another checkpoint directory.")
        settings = _SETTINGS.get()
        if settings is not None:  # so the caller can say the run was resumed (see resumed_steps)
            settings.setdefault("resumed", []).append(int(restored.step))
        self.progress = restored.meta.get("progress")
        return restored.step, restored.state

    def done(self, step: int, state: PyTree, progress=None) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(step, state, selection=self.selection, config=self.config,
                                   progress=progress, force=int(step) == self.total_steps)

    def finish(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.wait_until_finished()



_SETTINGS: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "imu_jax_run_checkpoints", default=None)


@contextlib.contextmanager
def use_run_checkpoints(root, *, save_every: int = 100, keep: int = 3, resume: bool = False):
    """Inside the block, high-level loops (``imu_jax.unlearn``) checkpoint each run under
    ``root/<run fingerprint>`` and, with ``resume``, continue from there (see :func:`for_run`).

    Examples:
      >>> import tempfile
      >>> from imu_jax.unlearning import loop_checkpoint
      >>> with loop_checkpoint.use_run_checkpoints(tempfile.mkdtemp(), save_every=5):
      ...   ckpt, resume = loop_checkpoint.for_run("imu-abc")
      >>> ckpt.save_every, resume
      (5, False)
      >>> loop_checkpoint.for_run("imu-abc")
      (None, False)
    """
    token = _SETTINGS.set({"root": os.path.abspath(os.fspath(root)), "save_every": save_every,
                           "keep": keep, "resume": resume})
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def resumed_steps() -> list[int]:
    """The steps that runs inside the current :func:`use_run_checkpoints` block resumed from,
    in order (empty outside one, or when nothing was resumed).

    Examples:
      >>> from imu_jax.unlearning import loop_checkpoint
      >>> loop_checkpoint.resumed_steps()
      []
    """
    settings = _SETTINGS.get()
    return list((settings or {}).get("resumed", []))


def for_run(key: str, *, architecture: Mapping[str, Any] | None = None
            ) -> tuple[RunCheckpointer | None, bool]:
    """``(checkpointer, resume)`` for the run named ``key`` under :func:`use_run_checkpoints`,
    or ``(None, False)`` outside it."""
    settings = _SETTINGS.get()
    if settings is None:
        return None, False
    ckpt = RunCheckpointer(os.path.join(settings["root"], key), save_every=settings["save_every"],
                           keep=settings["keep"], architecture=architecture)
    return ckpt, bool(settings["resume"])
