"""Orbax checkpoints of a model: params, BatchNorm state and JSON metadata (the architecture).

Layout: ``DIR/<step>/{params,state,meta}`` written by ``ocp.CheckpointManager``; ``meta`` holds
``{"model": fm.config, ...}`` so :func:`restore` can rebuild the model with no other input.

Examples:
  >>> import tempfile
  >>> from imu_jax.models import create, functional
  >>> fm = functional(create("mlp", num_classes=3, input_shape=(4,), hidden=(5,)))
  >>> path = save(tempfile.mkdtemp(), fm, fm.params, fm.state, metadata={"epochs": 1})
  >>> fm2, params, state, meta = restore(path, expected=fm)
  >>> fm2.config == fm.config, meta["epochs"], params["head"]["kernel"].shape
  (True, 1, (5, 3))
"""

from __future__ import annotations

import json

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from imu_jax.models import FunctionalModel, from_config, functional


def _jsonable(tree):
    if isinstance(tree, dict):
        return {str(k): _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def describe(config: dict) -> str:
    """A one-line architecture description used in error messages.

    >>> describe({"name": "mlp", "num_classes": 10, "hidden": (8,), "seed": 0})
    'mlp(num_classes=10, hidden=[8])'
    """
    cfg = _jsonable({k: v for k, v in config.items() if k not in ("name", "seed")})
    return f"{config['name']}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in cfg.items()) + ")"


def _same_architecture(a: dict, b: dict) -> bool:
    strip = lambda c: _jsonable({k: v for k, v in c.items() if k != "seed"})  # noqa: E731
    return strip(a) == strip(b)


def save(directory, fm: FunctionalModel, params, state, *, metadata: dict | None = None,
         step: int = 0) -> pathlib.Path:
    """Saves ``params``/``state`` and ``{"model": fm.config, **metadata}``; waits for the write.

    Returns the checkpoint root ``directory`` (restore from it).
    """
    directory = pathlib.Path(directory).absolute()
    meta = _jsonable({**(metadata or {}), "model": fm.config, "has_state": bool(state)})
    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if state:
        items["state"] = ocp.args.StandardSave(state)
    with ocp.CheckpointManager(directory) as mngr:
        mngr.save(step, args=ocp.args.Composite(**items), force=True)
        mngr.wait_until_finished()
    return directory


def load_metadata(directory, *, step: int | None = None) -> dict:
    """The JSON metadata of a checkpoint (``meta["model"]`` is the architecture config)."""
    directory = pathlib.Path(directory).absolute()
    if not directory.exists():
        raise FileNotFoundError(f"No checkpoint directory {directory}.")
    with ocp.CheckpointManager(directory) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint found in {directory}.")
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def restore(directory, *, expected: FunctionalModel | dict | None = None,
            step: int | None = None):
    """Restores ``(fm, params, state, metadata)``; the model is rebuilt from the metadata.

    Args:
      directory: the directory given to :func:`save`.
      expected: the architecture the caller wants (a ``FunctionalModel`` or its ``config``);
        if the checkpoint holds another one, a ``ValueError`` names both.
      step: which step (default: latest).
    """
    directory = pathlib.Path(directory).absolute()
    meta = load_metadata(directory, step=step)
    saved = meta["model"]
    if expected is not None:
        want = expected.config if isinstance(expected, FunctionalModel) else expected
        if not _same_architecture(saved, want):
            raise ValueError(
                f"Checkpoint {directory} holds architecture {describe(saved)}, which cannot be "
                f"restored into the requested architecture {describe(want)}."
            )
    fm = functional(from_config(saved))
    abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
    items = {"params": ocp.args.StandardRestore(abstract(fm.params))}
    if meta.get("has_state"):
        items["state"] = ocp.args.StandardRestore(abstract(fm.state))
    with ocp.CheckpointManager(directory) as mngr:
        step = mngr.latest_step() if step is None else step
        try:
            out = mngr.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError) as err:
            raise ValueError(
                f"Checkpoint {directory} does not match the architecture in its metadata "
                f"{describe(saved)}: {err}"
            ) from err
    return fm, out.params, (out.state if meta.get("has_state") else {}), meta


__all__ = ["describe", "load_metadata", "restore", "save"]


def _os_error(err: BaseException) -> OSError | None:
    """The ``OSError`` (disk full, permission, ...) behind ``err``, however a library wrapped it.

    >>> wrapped = RuntimeError("save failed")
    >>> wrapped.__cause__ = OSError(28, "No space left on device")
    >>> _os_error(wrapped).strerror
    'No space left on device'
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def write_outputs(workdir, fm: FunctionalModel, params, state, metrics: dict) -> pathlib.Path:
    """Saves ``workdir/checkpoint`` (Orbax) and ``workdir/metrics.json``, atomically: both are
    written into a temporary sibling folder first, then moved into place (the whole folder when
    ``workdir`` holds nothing else, metrics.json last), so an interrupted save never leaves a
    checkpoint without its metrics (readers treat ``metrics.json`` as the completion mark)."""
    import os
    import shutil

    workdir = pathlib.Path(workdir).absolute()
    workdir.parent.mkdir(parents=True, exist_ok=True)
    for stale in workdir.parent.glob(f".{workdir.name}.partial-*"):  # left by a killed process
        shutil.rmtree(stale, ignore_errors=True)
    tmp = workdir.parent / f".{workdir.name}.partial-{os.getpid()}"
    tmp.mkdir()
    meta = {k: metrics[k] for k in ("config", "splits", "retrain", "seed") if k in metrics}
    try:
        save(tmp / "checkpoint", fm, params, state, metadata=meta)
        (tmp / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
    except BaseException as err:  # a full disk, Ctrl-C, ...: leave nothing half-written behind
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _os_error(err)
        if cause is None:
            raise
        raise OSError(cause.errno, f"could not save the model into {workdir}: "
                      f"{cause.strerror or cause} (nothing was kept)") from err
    ours = {"checkpoint", "metrics.json"}
    if workdir.exists() and not {p.name for p in workdir.iterdir()} <= ours:
        (workdir / "metrics.json").unlink(missing_ok=True)  # incomplete from here on
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
        os.replace(tmp / "checkpoint", workdir / "checkpoint")
        os.replace(tmp / "metrics.json", workdir / "metrics.json")
        tmp.rmdir()
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        os.replace(tmp, workdir)
    return workdir
