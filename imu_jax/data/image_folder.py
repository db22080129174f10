"""Any image folder ``<split>/<class>/<file>`` (a directory or a ``.zip``) as a local TFDS dataset.

``--dataset imagefolder:PATH`` reads the folder once, decodes every image with PIL and writes an
array_record TFDS dataset into the data dir (``imu_image_folder/<name>_<fingerprint>/``), so
``tfds.data_source`` random access works as for the catalogue datasets. This happens
automatically on first use (or with ``imu-jax data --dataset imagefolder:PATH``); later runs read
the cache. The fingerprint hashes the folder's absolute path, file count and total size, so a
changed folder is rebuilt under a new name.

``PATH`` is the folder holding the split folders (``train/``, ``test/``), or any folder / ``.zip``
with exactly one such folder inside (e.g. the CIFAR-10 zip, whose root is ``cifar10/``). Labels are
the sorted class-folder names of ``train``; every image must have the first image's size; images
are stored as uint8 ``[H, W, C]`` (C = 1 for grayscale folders, else 3).

Examples:
  >>> import tempfile, pathlib
  >>> from PIL import Image
  >>> root = pathlib.Path(tempfile.mkdtemp())
  >>> for split, cls, i in [("train", "cat", 0), ("train", "dog", 0), ("test", "dog", 1)]:
  ...     (root / split / cls).mkdir(parents=True, exist_ok=True)
  ...     Image.new("RGB", (4, 4), (i, 0, 0)).save(root / split / cls / f"{i}.png")
  >>> layout = scan(root)
  >>> layout.classes, {k: len(v) for k, v in layout.files.items()}, layout.shape
  (('cat', 'dog'), {'test': 1, 'train': 2}, (4, 4, 3))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pathlib
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
REQUIRED_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Layout:
    """What :func:`scan` found: ``files[split]`` = sorted ``(class, member)`` pairs."""

    path: str
    root: str  # the prefix inside ``path`` that holds the split folders ("" = path itself)
    is_zip: bool
    classes: tuple[str, ...]
    files: dict
    shape: tuple[int, int, int]
    mode: str
    fingerprint: str

    def read(self, member: str) -> bytes:
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(member)
        return (pathlib.Path(self.path) / member).read_bytes()


def _hidden(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/"))


def _list(path: pathlib.Path) -> tuple[bool, list[str], int, list[str]]:
    """All image members (relative posix paths), their total size, and every folder (so that a
    class folder without images can be reported rather than silently dropped)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        names = [(i.filename, i.file_size) for i in infos if not i.is_dir()]
        folders = {i.filename.rstrip("/") for i in infos if i.is_dir()}
        folders |= {n.rsplit("/", 1)[0] for n, _ in names if "/" in n}
        is_zip = True
    elif path.is_dir():
        names, folders = [], set()
        for dirpath, _, files in os.walk(path):
            folders.add(pathlib.Path(dirpath).relative_to(path).as_posix())
            for f in files:
                full = pathlib.Path(dirpath) / f
                names.append((full.relative_to(path).as_posix(), full.stat().st_size))
        is_zip = False
    elif path.is_file():
        raise ValueError(f"imagefolder {str(path)!r} is a file but not a zip archive (it may be "
                         "damaged or another format); PATH must be a directory or a .zip file.")
    else:
        raise ValueError(f"imagefolder PATH must be a directory or a .zip file, got {str(path)!r} "
                         "(not found).")
    images = [(n, s) for n, s in names if n.lower().endswith(EXTENSIONS) and not _hidden(n)]
    return (is_zip, sorted(n for n, _ in images), sum(s for _, s in images),
            sorted(f for f in folders if not _hidden(f)))


def _find_root(members: list[str], path: pathlib.Path) -> str:
    """The unique prefix ``P`` with members ``P<split>/<class>/<file>`` for every required split."""
    candidates = set()
    for m in members:
        parts = m.split("/")
        if len(parts) >= 3 and parts[-3] == "train":
            candidates.add("/".join(parts[:-3]))
    missing = {r: [s for s in REQUIRED_SPLITS
                   if not any(m.startswith((r + "/" if r else "") + s + "/") for m in members)]
               for r in candidates}  # the split folders each candidate root lacks
    roots = sorted(r for r, lacks in missing.items() if not lacks)
    if len(roots) != 1:
        lacking = [f"{r or '.'!r} has train/ but no " + ", ".join(f"{s}/" for s in missing[r])
                   for r in sorted(r for r, lacks in missing.items() if lacks)]
        raise ValueError(
            f"imagefolder {str(path)!r}: expected exactly one folder holding "
            f"{'/'.join(REQUIRED_SPLITS)} split folders of <class>/<image> files, found "
            f"{len(roots)}{': ' + ', '.join(repr(r or '.') for r in roots) if roots else ''}"
            f"{' (' + '; '.join(lacking) + ')' if lacking and not roots else ''}.")
    return roots[0]


def _empty_class_folders(folders: list[str], files: dict, prefix: str) -> list[str]:
    """``<split>/<class>`` folders directly under a split folder that hold no image."""
    held = {f"{split}/{cls}" for split, pairs in files.items() for cls, _ in pairs}
    inside = [f[len(prefix):] for f in folders if f.startswith(prefix)]
    return [f for f in inside if f.count("/") == 1 and f.split("/")[0] in REQUIRED_SPLITS
            and f not in held]


def _decode(data: bytes, mode: str | None = None, *, name: str = "an image") -> np.ndarray:
    """The image as uint8 ``[H, W, C]``; a file PIL cannot read is a ``ValueError`` naming it."""
    from imu_jax import _extras

    _extras.require("PIL", "data", "image folders (decoded with Pillow)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if mode is None:
                mode = "L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            arr = np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"imagefolder: cannot read {name} as an image ({err.__class__.__name__}: "
                         f"{str(err).split(' <')[0]}); remove or replace the file.") from None
    return arr[..., None] if arr.ndim == 2 else arr


@functools.lru_cache(maxsize=16)
def scan(path: str | os.PathLike) -> Layout:
    """Lists an image folder (directory or zip) and checks its layout; reads one image only.

    Raises:
      ValueError: the path is missing, has no ``train``/``test`` split folders, a class folder
        holds no image (its class would silently vanish and shift every later label), or
        ``test`` has a class that ``train`` lacks.
    """
    path = pathlib.Path(path).expanduser().resolve()
    is_zip, members, total, folders = _list(path)
    root = _find_root(members, path)
    prefix = root + "/" if root else ""
    files: dict[str, list[tuple[str, str]]] = {}
    for m in members:
        if not m.startswith(prefix):
            continue
        parts = m[len(prefix):].split("/")
        if len(parts) == 3 and parts[0] in REQUIRED_SPLITS:
            files.setdefault(parts[0], []).append((parts[1], m))
    empty = _empty_class_folders(folders, files, prefix)
    if empty:
        raise ValueError(f"imagefolder {str(path)!r}: class folders with no image file directly "
                         f"inside: {empty}; add images or remove the folders (labels are the "
                         "sorted class names).")
    classes = tuple(sorted({c for c, _ in files["train"]}))
    extra = sorted({c for c, _ in files["test"]} - set(classes))
    if extra:
        raise ValueError(f"imagefolder {str(path)!r}: test classes {extra} have no train folder; "
                         f"train classes: {list(classes)}.")
    layout = Layout(path=str(path), root=root, is_zip=is_zip, classes=classes,
                    files={k: tuple(v) for k, v in sorted(files.items())}, shape=(0, 0, 0),
                    mode="", fingerprint="")
    first = _decode(layout.read(files["train"][0][1]), name=repr(files["train"][0][1]))
    shape, mode = tuple(first.shape), ("L" if first.shape[-1] == 1 else "RGB")
    digest = hashlib.sha1(f"{path}|{len(members)}|{total}".encode()).hexdigest()[:10]
    return dataclasses.replace(layout, shape=shape, mode=mode, fingerprint=digest)


def config_name(layout: Layout) -> str:
    """``<folder name>_<fingerprint>``, safe as a TFDS config name.

    >>> config_name(Layout("/d/cifar10-jpeg.zip", "cifar10", True, (), {}, (1, 1, 1), "L", "ab"))
    'cifar10_jpeg_ab'
    """
    stem = pathlib.Path(layout.path).stem if layout.is_zip else pathlib.Path(layout.path).name
    stem = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_").lower() or "folder"
    return f"{stem}_{layout.fingerprint}"


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
    """One image folder; ``path`` is what the user passed after ``imagefolder:``."""

    path: str = ""


def folder_config(path: str | os.PathLike) -> ImageFolderConfig:
    """The builder config of the folder at ``path`` (scans it)."""
    layout = scan(str(path))
    return ImageFolderConfig(name=config_name(layout), path=layout.path,
                             description=f"Image folder {layout.path}")


class ImuImageFolder(tfds.core.GeneratorBasedBuilder):
    """An image folder as a TFDS dataset (``imu_image_folder/<config>``); build with array_record.

    Features: ``image`` uint8 ``[H, W, C]``, ``label`` (class index), ``id`` (position in the
    split's sorted file list).
    """

    VERSION = tfds.core.Version("1.0.0")
    url_infos = None
    RELEASE_NOTES = {"1.0.0": "Image folder <split>/<class>/<file>, decoded with PIL."}

    @property
    def layout(self) -> Layout:
        return scan(self.builder_config.path)

    def _info(self) -> tfds.core.DatasetInfo:
        layout = self.layout
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Image folder {layout.path} ({layout.root or '.'}).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=layout.shape, dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(layout.classes)),
                "id": np.int64,
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in REQUIRED_SPLITS}

    def _generate_examples(self, split: str):
        layout = self.layout
        index = {c: i for i, c in enumerate(layout.classes)}
        zf = zipfile.ZipFile(layout.path) if layout.is_zip else None
        try:
            for i, (cls, member) in enumerate(layout.files[split]):
                data = zf.read(member) if zf else (pathlib.Path(layout.path) / member).read_bytes()
                image = _decode(data, layout.mode, name=f"{layout.path}: {member!r}")
                if image.shape != layout.shape:
                    raise ValueError(f"imagefolder {layout.path!r}: {member!r} has shape "
                                     f"{image.shape}; expected {layout.shape} (the first image's).")
                yield i, {"image": image, "label": index[cls], "id": i}
        finally:
            if zf:
                zf.close()


__all__ = ["ImageFolderConfig", "ImuImageFolder", "Layout", "config_name", "folder_config", "scan"]
