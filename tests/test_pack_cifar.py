"""experiments/pack_cifar.py: an image folder packed into one JPEG mosaic a split, and back."""

import importlib.util
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from imu_jax.data import image_folder, sources

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pack_cifar", REPO / "experiments/pack_cifar.py")
pack_cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pack_cifar)

CLASSES = ("apple", "bus", "rocket")
COARSE = {"apple": "fruit", "bus": "vehicles", "rocket": "vehicles"}


def _image(rng, side: int, channels: int) -> np.ndarray:
    """A smooth gradient plus noise (JPEG-like content: neither flat nor pure noise)."""
    y, x = np.mgrid[0:side, 0:side]
    base = rng.uniform(0, 200) + rng.uniform(-2, 2) * x + rng.uniform(-2, 2) * y
    planes = [base + rng.normal(0, 6, (side, side)) + 20 * c for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def _folder(root: pathlib.Path, *, side: int = 32, channels: int = 3, train: int = 7,
            test: int = 3, coarse: bool = True) -> pathlib.Path:
    """``root/tiny/{train,test}/<class>/<name>.png`` (+ coarse_labels.json); returns ``root``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for cls in CLASSES:
            folder = root / "tiny" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = _image(rng, side, channels)
                Image.fromarray(img[..., 0] if channels == 1 else img).save(folder / f"x{i}.png")
    if coarse:
        (root / "tiny" / "coarse_labels.json").write_text(json.dumps(COARSE))
    return root


def test_pack_round_trip_keeps_order_labels_and_hierarchy(tmp_path):
    folder = pack_cifar.read_folder(_folder(tmp_path / "src"))
    assert folder["root"] == "tiny" and folder["classes"] == list(CLASSES)
    assert folder["coarse"] == COARSE
    assert folder["train_labels"].tolist() == [0] * 7 + [1] * 7 + [2] * 7
    meta = pack_cifar.pack(folder, tmp_path / "p.pack", quality=90, columns=4)
    assert meta["counts"] == {"train": 21, "test": 9}
    back = pack_cifar.load_pack(tmp_path / "p.pack")  # not ".npz": the name is kept as given
    for split in ("train", "test"):
        assert back[f"{split}_labels"].tolist() == folder[f"{split}_labels"].tolist()
        assert back[f"{split}_images"].shape == folder[f"{split}_images"].shape
        assert pack_cifar.psnr(back[f"{split}_images"], folder[f"{split}_images"]) > 32
    assert back["coarse"] == COARSE and back["classes"] == list(CLASSES)


def test_each_tile_decodes_as_its_own_image_would(tmp_path):
    """4:4:4 JPEG codes 8x8 blocks alone: a tile of the mosaic equals that image re-encoded
    alone with the same settings (no pixel of a neighbour leaks in)."""
    folder = pack_cifar.read_folder(_folder(tmp_path / "src", train=3, test=1, coarse=False))
    pack_cifar.pack(folder, tmp_path / "p.npz", quality=80, columns=4)
    back = pack_cifar.load_pack(tmp_path / "p.npz")
    for original, tile in zip(folder["train_images"], back["train_images"]):
        alone = pack_cifar.decode_image(pack_cifar.encode_jpeg(original, 80), 3)
        np.testing.assert_array_equal(tile, alone)


@pytest.mark.parametrize("channels", [1, 3])
def test_per_class_limit_and_channels(tmp_path, channels):
    folder = pack_cifar.read_folder(_folder(tmp_path / "src", side=16, channels=channels,
                                            train=6, test=5, coarse=False), per_class=4)
    assert folder["train_images"].shape == (12, 16, 16, channels)
    assert folder["test_labels"].tolist() == [0, 1, 2]  # max(1, 4 // 5) a class
    pack_cifar.pack(folder, tmp_path / "p.npz")
    back = pack_cifar.load_pack(tmp_path / "p.npz")
    assert back["train_images"].shape == (12, 16, 16, channels) and back["coarse"] is None


def test_not_a_pack_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(ValueError, match="not an image pack"):
        pack_cifar.load_pack(tmp_path / "other.npz")


def test_unpacked_folder_loads_like_the_source(tmp_path):
    """The unpacked PNG folder is an image folder with the source's classes, hierarchy, labels
    and example ids; its pixels are the pack's (PNG is lossless)."""
    src = _folder(tmp_path / "src")
    pack_cifar.pack(pack_cifar.read_folder(src), tmp_path / "p.npz")
    root = pack_cifar.unpack(tmp_path / "p.npz", tmp_path / "out")
    assert root == tmp_path / "out" / "tiny"
    layout = image_folder.scan(str(root))
    assert layout.classes == CLASSES and layout.superclasses == ("fruit", "vehicles")
    original = sources.load(f"imagefolder:{src}", data_dir=tmp_path / "d")
    unpacked = sources.load(f"imagefolder:{root}", data_dir=tmp_path / "d")
    packed = pack_cifar.load_pack(tmp_path / "p.npz")
    for split in ("train", "test"):
        for key in ("label", "id", "coarse_label"):
            np.testing.assert_array_equal(unpacked[split][key], original[split][key])
        np.testing.assert_array_equal(unpacked[split]["image"], packed[f"{split}_images"])


def test_mosaic_is_one_jpeg(tmp_path):
    folder = pack_cifar.read_folder(_folder(tmp_path / "src", train=2, test=1, coarse=False))
    pack_cifar.pack(folder, tmp_path / "p.npz", columns=2)
    with np.load(tmp_path / "p.npz") as npz:
        with Image.open(io.BytesIO(npz["train_jpeg"].tobytes())) as img:
            assert (img.format, img.size) == ("JPEG", (64, 96))  # 2 columns, 3 rows of 32
