"""Any image folder ``<split>/<class>/<file>`` (a directory or a ``.zip``) as a local TFDS dataset.

``--dataset imagefolder:PATH`` reads the folder once, decodes every image with PIL and writes an
array_record TFDS dataset into the data dir (``imu_image_folder/<name>_<fingerprint>/``), so
``tfds.data_source`` random access works as for the catalogue datasets. This happens
automatically on first use (or with ``imu-jax data --dataset imagefolder:PATH``); later runs read
the cache. The fingerprint hashes the folder's absolute path and its content (each image's
split/class/file path and size, and the label map), so a changed folder (an image added, removed,
resized or moved to another class; a renamed class; an edited map) is rebuilt under a new name.
An image rewritten in place with the same size is not noticed.

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

Label hierarchy (optional): a ``coarse_labels.json`` beside the split folders (``ROOT/train``,
``ROOT/test``, ``ROOT/coarse_labels.json``; in a zip at the same root, e.g.
``cifar100/coarse_labels.json`` in the shared CIFAR-100 zip) maps every fine class folder name to
its superclass name. The dataset then also has a ``coarse_label`` feature, and the forget specs
``superclass:K`` and ``subclass:K`` work as on CIFAR-100 (``imu_jax.data.splits``), by id or by
name. Superclass ids are the indices of the sorted superclass names (fine ids stay the sorted
class-folder names). The map enters the fingerprint: a changed map is a new build. Every class
folder of ``train`` must be in the map, once, and every key must be a class folder
(``ValueError`` otherwise); names are compared in Unicode NFC. Without the file everything is as
before.

  >>> _ = (root / COARSE_FILE).write_text('{"cat": "pets", "dog": "pets"}')
  >>> layout = scan(root)  # scan() caches per path until the folder changes
  >>> layout.superclasses, layout.coarse_of_fine.tolist()
  (('pets',), [0, 0])

With the shared CIFAR-100 zip (100 fine classes, 20 superclasses), forget one superclass::

  imu-jax run --dataset imagefolder:../shared/data/cifar100-jpeg.zip \
      --forget superclass:vehicles_2 --methods retrain,imu --seeds 0 --out runs/c100_vehicles_2
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import pathlib
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from imu_jax.data.coarse_map import few, nfc, parse_coarse_map

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
REQUIRED_SPLITS = ("train", "test")
COARSE_FILE = "coarse_labels.json"  # fine class folder name -> superclass name, beside train/


@dataclasses.dataclass(frozen=True)
class Layout:
    """What :func:`scan` found: ``files[split]`` = sorted ``(class, member)`` pairs.

    ``coarse``: the superclass name of each of ``classes`` (from ``coarse_labels.json``; ``()``
    where the folder has none); ``coarse_file``: where that file is (or would be) inside ``path``;
    ``stray_coarse``: files of that name elsewhere in ``path`` (not read; named in errors).
    ``content``: a digest of what the dataset holds (each image's path below the split folders
    and its size, and the map): unlike ``fingerprint`` it leaves out where the folder is, so a
    copy elsewhere has the same one (it identifies a cached model's training data).
    """

    path: str
    root: str  # the prefix inside ``path`` that holds the split folders ("" = path itself)
    is_zip: bool
    classes: tuple[str, ...]
    files: dict
    shape: tuple[int, int, int]
    mode: str
    fingerprint: str
    coarse: tuple[str, ...] = ()
    coarse_file: str = COARSE_FILE
    stray_coarse: tuple[str, ...] = ()
    content: str = ""

    @property
    def superclasses(self) -> tuple[str, ...]:
        """The sorted superclass names; a superclass's id is its index here."""
        return tuple(sorted(set(self.coarse)))

    @property
    def coarse_of_fine(self) -> np.ndarray:
        """The superclass id of each fine class (int64 ``[len(classes)]``; empty without a map)."""
        index = {c: i for i, c in enumerate(self.superclasses)}
        return np.array([index[c] for c in self.coarse], np.int64)

    def read(self, member: str) -> bytes:
        return self.read_member(self.path, self.is_zip, member)

    @staticmethod
    def read_member(path: str | os.PathLike, is_zip: bool, member: str) -> bytes:
        if is_zip:
            with zipfile.ZipFile(path) as zf:
                return zf.read(member)
        return (pathlib.Path(path) / member).read_bytes()


def _walk(path: pathlib.Path):
    """``(folder, file names)`` of every folder under ``path``, following symbolic links (a class
    folder may be one); a link back to a folder above it is not entered again."""
    for dirpath, dirnames, files in os.walk(path, followlinks=True):
        inside = pathlib.Path(dirpath).relative_to(path)
        above = {os.path.realpath(path / p) for p in inside.parents}
        if os.path.realpath(dirpath) in above:  # a cycle
            dirnames[:] = []
            continue
        yield dirpath, files


def _hidden(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/"))


def _list(path: pathlib.Path) -> tuple[bool, dict[str, int], list[str], list[str]]:
    """All image members (relative posix path -> size in bytes), every folder (so that a class
    folder without images can be reported rather than silently dropped), and every file named
    ``coarse_labels.json``."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        names = [(i.filename, i.file_size) for i in infos if not i.is_dir()]
        folders = {i.filename.rstrip("/") for i in infos if i.is_dir()}
        folders |= {n.rsplit("/", 1)[0] for n, _ in names if "/" in n}
        is_zip = True
    elif path.is_dir():
        names, folders = [], set()
        for dirpath, files in _walk(path):
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
    maps = sorted(n for n, _ in names if n.rsplit("/", 1)[-1] == COARSE_FILE and not _hidden(n))
    return (is_zip, dict(sorted(images)), sorted(f for f in folders if not _hidden(f)), maps)


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


def _empty_class_folders(folders: list[str], held: set[str], prefix: str) -> list[str]:
    """``<split>/<class>`` folders directly under a split folder that are not in ``held`` (the
    ``<split>/<class>`` folders that hold an image)."""
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


def scan(path: str | os.PathLike) -> Layout:
    """Lists an image folder (directory or zip) and checks its layout; reads one image only (and
    ``coarse_labels.json`` beside the split folders, if there is one).

    The result is cached per path until the folder changes: a zip's size or modification time, a
    directory's folders (a file added, removed or renamed) or a ``coarse_labels.json`` (edited in
    place). An image rewritten in place under its old name is not noticed (call
    ``scan.cache_clear()``), as the fingerprint does not notice one of the same size.
    Class and superclass names are read in Unicode NFC.

    Raises:
      ValueError: the path is missing, has no ``train``/``test`` split folders, a class folder
        holds no image (its class would silently vanish and shift every later label), two class
        folders differ only in Unicode normalisation, ``test`` has a class that ``train`` lacks,
        or ``coarse_labels.json`` is not valid JSON, lacks a class folder, names a class that is
        not one or gives one twice.
    """
    path = pathlib.Path(path).expanduser().resolve()
    return _scan(path, _signature(path))


def _signature(path: pathlib.Path) -> tuple:
    """What changes when the folder at ``path`` changes (the cache key of :func:`scan`)."""
    if not path.is_dir():
        try:
            stat = path.stat()
        except OSError:
            return ()
        return stat.st_mtime_ns, stat.st_size
    out = []
    for dirpath, names in _walk(path):
        out.append((dirpath, os.stat(dirpath).st_mtime_ns))
        if COARSE_FILE in names:
            stat = os.stat(os.path.join(dirpath, COARSE_FILE))
            out.append((COARSE_FILE, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _scan(path: pathlib.Path, signature: tuple) -> Layout:
    del signature  # part of the cache key only
    is_zip, members, folders, maps = _list(path)
    root = _find_root(list(members), path)
    prefix = root + "/" if root else ""
    files: dict[str, list[tuple[str, str]]] = {}
    spelled: dict[str, set[str]] = {}  # NFC class name -> the folder names that give it
    held: set[str] = set()  # the <split>/<class> folders (as spelled) that hold an image
    for m in members:
        if not m.startswith(prefix):
            continue
        parts = m[len(prefix):].split("/")
        if len(parts) == 3 and parts[0] in REQUIRED_SPLITS:
            cls = nfc(parts[1])
            files.setdefault(parts[0], []).append((cls, m))
            spelled.setdefault(cls, set()).add(parts[1])
            held.add(f"{parts[0]}/{parts[1]}")
    empty = _empty_class_folders(folders, held, prefix)
    if empty:
        raise ValueError(f"imagefolder {str(path)!r}: class folders with no image file directly "
                         f"inside: {empty}; add images or remove the folders (labels are the "
                         "sorted class names).")
    clash = sorted(ascii(sorted(v)) for v in spelled.values() if len(v) > 1)
    if clash:
        raise ValueError(f"imagefolder {str(path)!r}: class folders whose names differ only in "
                         f"Unicode normalisation (NFC / NFD): {', '.join(clash)}; rename or "
                         "merge them.")
    classes = tuple(sorted({c for c, _ in files["train"]}))
    extra = sorted({c for c, _ in files["test"]} - set(classes))
    if extra:
        raise ValueError(f"imagefolder {str(path)!r}: test classes {extra} have no train folder; "
                         f"train classes: {list(classes)}.")
    coarse_file = prefix + COARSE_FILE
    coarse = (parse_coarse_map(Layout.read_member(path, is_zip, coarse_file), classes,
                               f"imagefolder {str(path)!r}: {coarse_file!r}")
              if coarse_file in maps else ())
    layout = Layout(path=str(path), root=root, is_zip=is_zip, classes=classes,
                    files={k: tuple(v) for k, v in sorted(files.items())}, shape=(0, 0, 0),
                    mode="", fingerprint="", coarse=coarse, coarse_file=coarse_file,
                    stray_coarse=tuple(m for m in maps if m != coarse_file))
    first = _decode(layout.read(files["train"][0][1]), name=repr(files["train"][0][1]))
    shape, mode = tuple(first.shape), ("L" if first.shape[-1] == 1 else "RGB")
    hierarchy = ("|coarse:" + json.dumps(dict(zip(classes, coarse)), sort_keys=True)
                 if coarse else "")
    used = "\n".join(f"{nfc(m[len(prefix):])}\t{members[m]}"  # split/class/file, its size
                      for _, pairs in sorted(files.items()) for _, m in pairs)
    content = hashlib.sha1((used + hierarchy).encode()).hexdigest()[:16]
    return dataclasses.replace(
        layout, shape=shape, mode=mode, content=content,
        fingerprint=hashlib.sha1(f"{path}|{content}".encode()).hexdigest()[:10])


scan.cache_clear = _scan.cache_clear  # type: ignore[attr-defined]


def missing_coarse_message(layout: Layout) -> str:
    """Why a folder has no coarse labels, and where ``coarse_labels.json`` must go."""
    inside = f"inside the zip at {layout.coarse_file!r}" if layout.is_zip else \
        f"at {str(pathlib.Path(layout.path) / layout.coarse_file)!r}"
    stray = (f" (found {few(layout.stray_coarse, 3)}, which is not beside train/ and test/)"
             if layout.stray_coarse else "")
    return (f"imagefolder {layout.path!r} has no {COARSE_FILE}{stray}; add one mapping each fine "
            f'class folder name to its superclass name ({{"{layout.classes[0]}": "...", ...}}) '
            f"{inside}, beside train/ and test/.")


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
    split's sorted file list); with a ``coarse_labels.json`` also ``coarse_label`` (superclass
    index, sorted superclass names).
    """

    VERSION = tfds.core.Version("1.0.0")
    url_infos = None
    RELEASE_NOTES = {"1.0.0": "Image folder <split>/<class>/<file>, decoded with PIL."}

    @property
    def layout(self) -> Layout:
        return scan(self.builder_config.path)

    def _info(self) -> tfds.core.DatasetInfo:
        layout = self.layout
        features = {
            "image": tfds.features.Tensor(shape=layout.shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(layout.classes)),
            "id": np.int64,
        }
        if layout.coarse:
            features["coarse_label"] = tfds.features.ClassLabel(names=list(layout.superclasses))
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Image folder {layout.path} ({layout.root or '.'}).",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in REQUIRED_SPLITS}

    def _generate_examples(self, split: str):
        layout = self.layout
        index = {c: i for i, c in enumerate(layout.classes)}
        coarse = dict(zip(layout.classes, layout.coarse_of_fine.tolist()))
        zf = zipfile.ZipFile(layout.path) if layout.is_zip else None
        try:
            for i, (cls, member) in enumerate(layout.files[split]):
                data = zf.read(member) if zf else (pathlib.Path(layout.path) / member).read_bytes()
                image = _decode(data, layout.mode, name=f"{layout.path}: {member!r}")
                if image.shape != layout.shape:
                    raise ValueError(f"imagefolder {layout.path!r}: {member!r} has shape "
                                     f"{image.shape}; expected {layout.shape} (the first image's).")
                example = {"image": image, "label": index[cls], "id": i}
                if coarse:
                    example["coarse_label"] = coarse[cls]
                yield i, example
        finally:
            if zf:
                zf.close()


__all__ = ["COARSE_FILE", "ImageFolderConfig", "ImuImageFolder", "Layout", "config_name",
           "folder_config", "missing_coarse_message", "scan"]
