"""Reading datasets as numpy arrays through ``tfds.data_source`` (array_record, no TensorFlow).

Local datasets (``digits``, ``mnist1d``, ``markov``, ``imagefolder:PATH``) are built on first
use into the data directory (see :func:`imu_jax.data.paths.resolve_data_dir`); catalogue datasets
(``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``) come from TFDS.

Examples:
  >>> import tempfile
  >>> raw = load("digits", data_dir=tempfile.mkdtemp())
  >>> raw["train"]["image"].shape, raw["train"]["image"].dtype, raw["test"]["label"].shape
  ((1437, 8, 8, 1), dtype('uint8'), (360,))
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import shutil
import sys

import numpy as np
import tensorflow_datasets as tfds

from imu_jax.data import digits as digits_lib
from imu_jax.data import image_folder as folder_lib
from imu_jax.data import markov as markov_lib
from imu_jax.data import mnist_1d as mnist1d_lib
from imu_jax.data.paths import ENV_VAR, DataDirError, rebuild_hint, resolve_data_dir

LOCAL = {"digits": (digits_lib.ImuDigits, None), "mnist1d": (mnist1d_lib.ImuMnist1d, None),
         "markov": (markov_lib.ImuMarkovChain, "full")}
FOLDER = "imagefolder"  # ``imagefolder:PATH``: any <split>/<class>/<file> folder or zip
CATALOGUE = ("cifar10", "cifar100", "mnist", "fashion_mnist")
ALIASES = {"markov_chain": "markov"}


def canonical_name(dataset: str) -> tuple[str, str | None]:
    """Splits ``"markov/small"`` into ``("markov", "small")``; validates the name.

    ``"imagefolder:PATH"`` gives ``("imagefolder", PATH)``.

    >>> canonical_name("markov_chain/small"), canonical_name("cifar100")
    (('markov', 'small'), ('cifar100', None))
    >>> canonical_name("imagefolder:data/cifar10")
    ('imagefolder', 'data/cifar10')
    """
    kind, sep, path = dataset.partition(":")
    if sep and kind == FOLDER:
        if not path:
            raise ValueError(f"Dataset {dataset!r}: expected imagefolder:PATH with a folder or "
                             ".zip of <split>/<class>/<image> files.")
        return FOLDER, path
    base, _, config = dataset.partition("/")
    base = ALIASES.get(base, base)
    if base not in LOCAL and base not in CATALOGUE:
        valid = sorted(LOCAL) + ["markov/small"] + list(CATALOGUE) + [f"{FOLDER}:PATH"]
        raise ValueError(f"Unknown dataset {dataset!r}; valid: {', '.join(valid)}.")
    if base in LOCAL and config and LOCAL[base][1] is None:
        raise ValueError(f"Dataset {base!r} has no configs, got {dataset!r}.")
    return base, config or (LOCAL[base][1] if base in LOCAL else None)


class _OwnBuilderNotices(logging.Filter):
    """Drops TFDS's absl warnings about our own local builders ("Using custom data
    configuration", "Variant folder ... has no dataset_info.json" before the first build): they
    are expected here and read like problems in every log."""

    NOTICES = ("Using custom data configuration", "has no dataset_info.json")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = "/imu_" in message or "ImageFolderConfig(" in message  # our builders' names
        unprepared = "has no dataset_info.json" in message  # load() says what to do instead
        return not ((ours or unprepared) and any(n in message for n in self.NOTICES))


logging.getLogger("absl").addFilter(_OwnBuilderNotices())


def local_builder(dataset: str, data_dir=None) -> tfds.core.DatasetBuilder:
    """The TFDS builder of a local dataset (``digits``, ``mnist1d``, ``markov[/small|/full]``,
    ``imagefolder:PATH``)."""
    base, config = canonical_name(dataset)
    if base == FOLDER:
        return folder_lib.ImuImageFolder(data_dir=str(resolve_data_dir(data_dir)),
                                         file_format="array_record",
                                         config=folder_lib.folder_config(config))
    if base not in LOCAL:
        raise ValueError(f"{dataset!r} is a TFDS catalogue dataset, not a local one.")
    kwargs = {"config": config} if config else {}
    return LOCAL[base][0](data_dir=str(resolve_data_dir(data_dir)), file_format="array_record",
                          **kwargs)


def prepare(builder: tfds.core.DatasetBuilder) -> None:
    """Builds a local dataset quietly (one line on stderr instead of TFDS's progress output).

    Raises:
      DataDirError: the build failed (e.g. an unreadable image in a folder); the message carries
        the cause, and the empty folders the attempt created are removed again.
    """
    print(f"imu-jax: building {builder.name} into {builder.data_dir}", file=sys.stderr)
    target, root = pathlib.Path(builder.data_dir), pathlib.Path(builder.data_dir_root)
    scratch = [target, *target.parents, root / "downloads" / "extracted", root / "downloads"]
    new = sorted((d for d in scratch if not d.exists()), key=lambda d: -len(d.parts))
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            builder.download_and_prepare()
    except Exception as err:
        for folder in new:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise DataDirError(f"Building {builder.name} into {target} failed "
                           f"({type(err).__name__}: {err}).") from err


def build(dataset: str, data_dir=None, *, overwrite: bool = False) -> pathlib.Path:
    """Builds a local dataset (deleting a previous copy when ``overwrite``); returns its dir."""
    builder = local_builder(dataset, data_dir)
    path = pathlib.Path(builder.data_dir)
    if overwrite and path.exists():
        shutil.rmtree(path)
        builder = local_builder(dataset, data_dir)
    if not builder.is_prepared():  # already built: nothing to do (and nothing to announce)
        prepare(builder)
    return path


def _all_records(source, chunk: int = 4096) -> list:
    """Every record; batched reads where the source supports them (about 2x faster)."""
    n = len(source)
    try:
        return [r for i in range(0, n, chunk)
                for r in source.__getitems__(list(range(i, min(i + chunk, n))))]
    except (AttributeError, TypeError):  # e.g. tfds.testing.mock_data sources
        return [source[i] for i in range(n)]


def read_split(source) -> dict[str, np.ndarray]:
    """Stacks every record of a data source into numeric numpy arrays (string fields dropped).

    Records with a numeric ``id`` are sorted by it, so the order is the generation order.
    """
    records = _all_records(source)
    if not records:
        return {}
    keys = [k for k, v in records[0].items() if np.asarray(v).dtype.kind in "biuf"]
    out = {k: np.stack([np.asarray(r[k]) for r in records]) for k in keys}
    if "id" in out:  # local datasets: restore generation order (array_record shuffles by key)
        order = np.argsort(out["id"], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out


def _local_sources(dataset: str, data_dir, download: bool):
    builder = local_builder(dataset, data_dir)
    if not builder.is_prepared():
        if not download:
            raise DataDirError(
                f"Dataset {dataset!r} is not built in {resolve_data_dir(data_dir)}. "
                + rebuild_hint(dataset, resolve_data_dir(data_dir))
            )
        prepare(builder)
    return {split: builder.as_data_source(split=split) for split in ("train", "test")}


DOWNLOAD_HOST = ("storage.googleapis.com", 443)  # TFDS's metadata and most of its mirrors


def online(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers within ``timeout`` seconds (TFDS would otherwise retry a
    download for minutes before failing)."""
    import socket

    try:
        socket.create_connection(host, timeout=timeout).close()
        return True
    except OSError:
        return False


def _catalogue_sources(base: str, dataset: str, explicit_dir, download: bool):
    """The catalogue dataset's train/test sources; missing data fails at once, naming the folder
    TFDS reads and writes (``--data-dir``/``$IMU_JAX_DATA_DIR`` if given, else TFDS's own)."""
    kwargs = {"data_dir": os.fspath(explicit_dir)} if explicit_dir else {}
    # the folder TFDS reads and writes (<root>/<name>/<version>), without building a builder
    root = pathlib.Path(kwargs.get("data_dir") or tfds.core.constants.get_default_data_dir())
    try:  # prepared (or faked by tfds.testing.mock_data): no network needed
        sources = tfds.data_source(base, split=["train", "test"], download=False, **kwargs)
        return dict(zip(("train", "test"), sources)), root
    except Exception:  # noqa: BLE001 - not prepared: download below, if the network is there
        pass
    if not download or not online():
        why = ("is not prepared" if not download else
               "is not prepared and the network cannot be reached to download it")
        raise DataDirError(
            f"Dataset {dataset!r} {why} in {root}: prepare it where the network works (`tfds "
            f"build {base} --file_format=array_record --data_dir {root}`, which needs `pip "
            f"install tensorflow`) and copy that folder here, or give the images as a folder: "
            f"--dataset imagefolder:PATH (PATH/train/<class>/*.jpg, PATH/test/<class>/*.jpg, "
            f"or a .zip of them).")
    sources = tfds.data_source(base, split=["train", "test"], download=download, **kwargs)
    return dict(zip(("train", "test"), sources)), root



def load(dataset: str, *, data_dir=None, download: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Loads ``{"train": arrays, "test": arrays}`` (raw values: uint8 images, int labels).

    Raises:
      DataDirError: the data is missing (``download=False``) or unreadable, with a rebuild hint.
      ValueError: unknown dataset name.
    """
    base, config = canonical_name(dataset)
    dd = resolve_data_dir(data_dir)
    explicit = False
    if base == FOLDER:
        folder_lib.scan(config)  # a bad path or layout is a ValueError of its own, not a rebuild
    try:
        if base in LOCAL or base == FOLDER:
            sources = _local_sources(dataset, data_dir, download)
        else:
            explicit = data_dir or os.environ.get(ENV_VAR)  # else TFDS's default dir
            sources, dd = _catalogue_sources(base, dataset, dd if explicit else None, download)
        out = {split: read_split(src) for split, src in sources.items()}
    except DataDirError:
        raise
    except Exception as err:  # anything TFDS / array_record raises on broken files
        hint = (
            rebuild_hint(dataset, dd)
            if base in LOCAL or base == FOLDER
            else f"Prepare it once with `tfds build {base} --file_format=array_record"
            + f" --data_dir {dd}`"
            + " (TFDS's builder needs TensorFlow for this step: `pip install tensorflow`)."
        )
        raise DataDirError(
            f"Could not read dataset {dataset!r} from {dd} ({type(err).__name__}: {err}). " + hint
        ) from err
    if not len(out["train"].get("label", out["train"].get("tokens", []))):
        raise DataDirError(f"Dataset {dataset!r} in {dd} has an empty train split. "
                           + rebuild_hint(dataset, dd))
    return out
