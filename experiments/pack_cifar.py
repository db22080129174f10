"""Packs an image folder (the shared CIFAR-10 / CIFAR-100 JPEG zips) into one small file, and back.

Why: the lent GPU machine receives only the repository's working tree, 64 MiB in all; the shared
JPEG zips are 63 MB (CIFAR-10) and 53 MB (CIFAR-100), most of it per-file overhead (a 32×32
JPEG's headers and tables are ~600 of its ~1,000 bytes, plus the zip's ~100 bytes a member).

How: every split's images are tiled, in the image folder's own order, into one mosaic (256 tiles
a row) and the mosaic is encoded as ONE JPEG (default quality 75, 4:4:4 chroma, optimised
Huffman tables). JPEG codes 8×8 blocks independently and 32 is a multiple of 8, and 4:4:4 has no
chroma upsampling across blocks, so each tile decodes exactly as that image alone re-encoded
with the same settings would: no pixel of one image leaks into another (``tests/test_pack_cifar.py``
checks this). The labels (uint8/uint16), the class names and ``coarse_labels.json`` go into the
same ``.npz`` (stored, not compressed: the JPEG bytes do not compress). ``unpack`` writes the
decoded pixels back as a lossless PNG image folder ``DIR/<root>/{train,test}/<class>/<index>.png``
(plus ``coarse_labels.json``) whose sorted order, labels and example ids equal the source
folder's (file ``<index>`` is the example's position in its split), so ``--dataset
imagefolder:DIR`` works as on the zip, random forget sets (drawn by position) included; only the
pixels carry the re-encoding error below.

Why quality 75 and 4:4:4: the shared JPEGs were themselves written at quality 75, so re-encoding
with the same quantisation tables nearly reproduces their coefficients: q75 4:4:4 is both
smaller and closer to them than q85 or q90 (only q95, 50% larger, is closer). 4:2:0 is smaller
still but further off in PSNR, and its chroma upsampling mixes neighbouring tiles. A lossless
pack (uint8 pixels + xz) is 134 MiB, over the limit by itself.

Measured 2026-12-06 (``python experiments/pack_cifar.py measure ../shared/data/cifar10-jpeg.zip``;
error against the shared JPEGs' decoded pixels, 0-255 scale, all 60,000 CIFAR-10 images; the
JPEGs themselves are ~7.6/255 from the original CIFAR pixels, ../shared/data/README.md):

| CIFAR-10 encoding | MiB | mean abs. error | PSNR (dB) |
|---|---|---|---|
| the shared zip of JPEGs | 60.2 | 0 | – |
| uint8 pixels / + xz (lossless) | 175.8 / 134.5 | 0 | – |
| one JPEG mosaic q75 4:4:4 (**the default**) | **19.1** | **1.06** | **43.52** |
| one JPEG mosaic q75 4:2:0 | 16.8 | 0.67 | 40.40 |
| one JPEG mosaic q85 4:4:4 / 4:2:0 | 22.2 / 18.7 | 1.64 / 2.22 | 41.05 / 37.21 |
| one JPEG mosaic q90 4:4:4 / 4:2:0 | 24.8 / 20.4 | 1.37 / 1.86 | 42.51 / 38.20 |
| one JPEG mosaic q95 4:4:4 / 4:2:0 | 30.2 / 23.9 | 0.72 / 1.28 | 46.85 / 39.32 |

``pack`` (q75 4:4:4) prints the same figures for what it wrote: CIFAR-10 20,132,376 bytes (19.2
MiB with the labels), PSNR 43.52 dB train / 43.51 dB test, 36 s; CIFAR-100 20,246,579 bytes,
PSNR 42.89 / 42.84 dB, 40 s (2 loaded cores). ``unpack`` of CIFAR-10: 37 s here (load 8), 237 MB
of PNG files. Both packs at once (40 MB) plus the ~11 MB tree and the wheels of
gpu_paper_scale.sh come close to the 64 MiB transfer limit: carry one at a time.

Commands:
  python experiments/pack_cifar.py pack ../shared/data/cifar10-jpeg.zip data/cifar10.pack.npz
  python experiments/pack_cifar.py unpack data/cifar10.pack.npz /tmp/cifar10_folder
  imu-jax run --dataset imagefolder:/tmp/cifar10_folder ...
  python experiments/pack_cifar.py measure ../shared/data/cifar10-jpeg.zip   # the table above
``--per-class N`` packs only the first N training and N/5 test images of every class (a tiny
pack for smoke tests). Put the pack under ``data/`` (ignored by .gitignore): it must never be
committed; name it in the device tool's ``carry`` (experiments/gpu_paper_scale.sh).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import math
import os
import pathlib
import sys
import time
import zipfile

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: import this checkout's imu_jax
    sys.path.insert(0, str(ROOT))

from imu_jax.data import image_folder  # noqa: E402

FORMAT = "imu-jax image pack 1"
COLUMNS = 256  # tiles per mosaic row: 256 × 32 = 8,192 pixels wide (JPEG allows 65,535)
SPLITS = image_folder.REQUIRED_SPLITS


def read_folder(path, per_class: int | None = None) -> dict:
    """The image folder (directory or zip) at ``path`` as arrays, in its own (sorted) order.

    Returns ``{"root", "classes", "coarse", "mode", "<split>_images" (uint8 [N, H, W, C]),
    "<split>_labels" (int64 [N])}``; ``per_class``: keep only the first ``per_class`` training and
    ``max(1, per_class // 5)`` test images of each class.
    """
    layout = image_folder.scan(str(path))
    index = {c: i for i, c in enumerate(layout.classes)}
    out = {"root": layout.root, "classes": list(layout.classes), "mode": layout.mode,
           "coarse": dict(zip(layout.classes, layout.coarse)) if layout.coarse else None}
    zf = zipfile.ZipFile(layout.path) if layout.is_zip else None
    try:
        for split in SPLITS:
            limit = None if per_class is None else (per_class if split == "train"
                                                    else max(1, per_class // 5))
            taken: dict[str, int] = {}
            images, labels = [], []
            for cls, member in layout.files[split]:
                if limit is not None and taken.get(cls, 0) >= limit:
                    continue
                taken[cls] = taken.get(cls, 0) + 1
                data = zf.read(member) if zf else (pathlib.Path(layout.path) / member).read_bytes()
                with Image.open(io.BytesIO(data)) as img:
                    arr = np.asarray(img.convert(layout.mode), np.uint8)
                images.append(arr[..., None] if arr.ndim == 2 else arr)
                labels.append(index[cls])
            out[f"{split}_images"] = np.stack(images)
            out[f"{split}_labels"] = np.asarray(labels, np.int64)
    finally:
        if zf:
            zf.close()
    return out


def mosaic(images: np.ndarray, columns: int = COLUMNS) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` row-major into ``[rows·H, columns·W, C]`` (last row zero-padded).

    >>> m = mosaic(np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2, 1), columns=2)
    >>> m.shape, bool((untile(m, 3, (2, 2), 2)[2] == np.arange(8, 12).reshape(2, 2, 1)).all())
    ((4, 4, 1), True)
    """
    n, h, w, c = images.shape
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    padded = np.zeros((rows * columns, h, w, c), np.uint8)
    padded[:n] = images
    return padded.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, columns * w, c)


def untile(grid: np.ndarray, n: int, tile: tuple[int, int], columns: int) -> np.ndarray:
    """The inverse of :func:`mosaic`: the first ``n`` tiles (``tile`` = (H, W)) of ``grid``."""
    grid = grid[..., None] if grid.ndim == 2 else grid
    (h, w), rows = tile, grid.shape[0] // tile[0]
    tiles = grid.reshape(rows, h, columns, w, grid.shape[-1]).transpose(0, 2, 1, 3, 4)
    return tiles.reshape(rows * columns, h, w, grid.shape[-1])[:n]


def encode_jpeg(grid: np.ndarray, quality: int) -> bytes:
    """One baseline JPEG of ``grid`` (4:4:4 chroma, optimised Huffman tables)."""
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """uint8 ``[H, W, C]`` of an encoded image."""
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def pack(folder: dict, out, *, quality: int = 75, columns: int = COLUMNS) -> dict:
    """Writes ``folder`` (:func:`read_folder`) as one ``.npz`` at ``out``; returns its metadata."""
    first = folder["train_images"]
    meta = {"format": FORMAT, "root": folder["root"], "classes": folder["classes"],
            "coarse": folder["coarse"], "tile": list(first.shape[1:]), "columns": columns,
            "codec": f"jpeg q{quality} 4:4:4 mosaic", "quality": quality,
            "counts": {s: int(len(folder[f"{s}_labels"])) for s in SPLITS}}
    dtype = np.uint8 if len(folder["classes"]) <= 256 else np.uint16
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    for split in SPLITS:
        data = encode_jpeg(mosaic(folder[f"{split}_images"], columns), quality)
        arrays[f"{split}_jpeg"] = np.frombuffer(data, np.uint8)
        arrays[f"{split}_labels"] = folder[f"{split}_labels"].astype(dtype)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # a file object: np.savez would append ".npz" to other names
        np.savez(f, **arrays)
    return meta


def load_pack(path) -> dict:
    """A pack as :func:`read_folder`'s dict (pixels decoded), plus ``"meta"``."""
    with np.load(path) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not an image pack ({FORMAT!r}); make one with "
                             "`python experiments/pack_cifar.py pack FOLDER OUT`.")
        out = {"root": meta["root"], "classes": meta["classes"], "coarse": meta["coarse"],
               "mode": "L" if meta["tile"][-1] == 1 else "RGB", "meta": meta}
        for split in SPLITS:
            n = meta["counts"][split]
            grid = decode_image(npz[f"{split}_jpeg"].tobytes(), meta["tile"][-1])
            out[f"{split}_images"] = untile(grid, n, tuple(meta["tile"][:2]),
                                            min(meta["columns"], n))
            out[f"{split}_labels"] = npz[f"{split}_labels"].astype(np.int64)
    return out


def unpack(path, out_dir) -> pathlib.Path:
    """Writes the pack at ``path`` as a PNG image folder under ``out_dir``; returns the folder
    to pass as ``--dataset imagefolder:FOLDER`` (``out_dir/<root>``)."""
    data = load_pack(path)
    root = pathlib.Path(out_dir) / data["root"] if data["root"] else pathlib.Path(out_dir)

    def write(image: np.ndarray, name: pathlib.Path) -> None:
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            name, compress_level=1)

    # PIL encodes and the OS writes outside the GIL, so threads share the 60,000 files
    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for split in SPLITS:
            images, labels = data[f"{split}_images"], data[f"{split}_labels"]
            digits = max(5, len(str(len(labels) - 1)))
            for cls in data["classes"]:
                (root / split / cls).mkdir(parents=True, exist_ok=True)
            names = [root / split / data["classes"][label] / f"{i:0{digits}d}.png"
                     for i, label in enumerate(labels)]
            list(pool.map(write, images, names))
    if data["coarse"]:
        (root / image_folder.COARSE_FILE).write_text(json.dumps(data["coarse"], indent=0))
    return root


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB, peak 255) between two uint8 arrays.

    >>> round(psnr(np.zeros(4, np.uint8), np.full(4, 255, np.uint8)), 1)
    0.0
    """
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def measure(path, qualities=(75, 85, 90, 95)) -> list[dict]:
    """Size and error of candidate encodings of the folder at ``path`` (all splits together)."""
    folder = read_folder(path)
    images = {s: folder[f"{s}_images"] for s in SPLITS}
    raw = sum(v.nbytes for v in images.values())
    rows = [{"codec": "source (zip of JPEGs)", "bytes": pathlib.Path(path).stat().st_size,
             "mae": 0.0, "psnr": float("inf")},
            {"codec": "uint8 pixels", "bytes": raw, "mae": 0.0, "psnr": float("inf")}]
    import lzma
    t = time.perf_counter()
    size = sum(len(lzma.compress(v.tobytes(), preset=6)) for v in images.values())
    rows.append({"codec": "uint8 pixels + xz (lossless)", "bytes": size, "mae": 0.0,
                 "psnr": float("inf"), "seconds": time.perf_counter() - t})
    for quality in qualities:
        for sub, name in ((0, "4:4:4"), (2, "4:2:0")):
            t, size, err, sq = time.perf_counter(), 0, 0.0, 0.0
            for split, imgs in images.items():
                grid = mosaic(imgs)
                img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=quality, subsampling=sub, optimize=True)
                size += len(buf.getvalue())
                back = untile(decode_image(buf.getvalue(), grid.shape[-1]), len(imgs),
                              imgs.shape[1:3], min(COLUMNS, len(imgs)))
                diff = back.astype(np.float64) - imgs
                err += np.abs(diff).sum()
                sq += (diff ** 2).sum()
            n = raw
            rows.append({"codec": f"one JPEG mosaic q{quality} {name}", "bytes": size,
                         "mae": err / n, "psnr": float(10 * np.log10(255.0 ** 2 / (sq / n))),
                         "seconds": time.perf_counter() - t})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="image folder / zip -> one .npz")
    p.add_argument("folder")
    p.add_argument("out")
    p.add_argument("--quality", type=int, default=75)
    p.add_argument("--per-class", type=int, default=None)
    p = sub.add_parser("unpack", help=".npz -> PNG image folder; prints the folder")
    p.add_argument("pack")
    p.add_argument("out_dir")
    p = sub.add_parser("measure", help="sizes and errors of candidate encodings")
    p.add_argument("folder")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    if args.command == "pack":
        folder = read_folder(args.folder, args.per_class)
        meta = pack(folder, args.out, quality=args.quality)
        back = load_pack(args.out)
        err = {s: psnr(back[f"{s}_images"], folder[f"{s}_images"]) for s in SPLITS}
        print(f"wrote {args.out}: {pathlib.Path(args.out).stat().st_size:,} bytes, "
              f"{meta['counts']} images, {meta['codec']}, PSNR vs source "
              + ", ".join(f"{s} {v:.2f} dB" for s, v in err.items())
              + f" ({time.perf_counter() - t:.1f} s)")
    elif args.command == "unpack":
        root = unpack(args.pack, args.out_dir)
        print(root)
        print(f"unpacked in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    else:
        print("| codec | bytes | MiB | mean abs. error (0-255) | PSNR (dB) | seconds |")
        print("|---|---|---|---|---|---|")
        for r in measure(args.folder):
            print(f"| {r['codec']} | {r['bytes']:,} | {r['bytes'] / 2**20:.1f} | "
                  f"{r['mae']:.2f} | {r['psnr']:.2f} | {r.get('seconds', 0):.1f} |")


if __name__ == "__main__":
    main()
