"""Image folders (``imagefolder:PATH``, directory or zip) as datasets; the shared CIFAR-10 zip."""

import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from imu_jax.data import image_folder, load, local_builder, make_splits
from imu_jax.lab import arguments, cli


REPO = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ("ant", "bee", "cow")  # sorted: labels 0, 1, 2
COUNTS = {"train": 6, "test": 2}  # per class


def pixel(split: str, cls: int, i: int) -> tuple[int, int, int]:
    """A colour that identifies the image, so decoding and labelling are checked exactly."""
    return (40 * cls + 10, 20 * i + (100 if split == "test" else 0), 7)


def make_folder(root: pathlib.Path, *, size=(6, 5), fmt="png", mode="RGB") -> pathlib.Path:
    for split, n in COUNTS.items():
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = pixel(split, c, i) if mode == "RGB" else pixel(split, c, i)[0]
                Image.new(mode, size, colour).save(root / split / name / f"{i:03d}.{fmt}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images") / "tiny")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def expected_pixels(split: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(CLASSES)), COUNTS[split])
    idx = np.tile(np.arange(COUNTS[split]), len(CLASSES))
    return np.array([pixel(split, c, i) for c, i in zip(labels, idx)]), labels


def test_folder_loads_every_image_with_its_class(folder, data_dir):
    raw = load(f"imagefolder:{folder}", data_dir=data_dir)
    for split in ("train", "test"):
        images, labels = raw[split]["image"], raw[split]["label"]
        assert images.shape == (COUNTS[split] * 3, 5, 6, 3) and images.dtype == np.uint8
        want_pixels, want_labels = expected_pixels(split)
        np.testing.assert_array_equal(labels, want_labels)  # sorted files: class by class
        np.testing.assert_array_equal(images[:, 0, 0, :], want_pixels)  # PNG is lossless
        assert (images == images[:, :1, :1, :]).all()
    builder = local_builder(f"imagefolder:{folder}", data_dir)
    assert builder.is_prepared()
    assert builder.info.features["label"].names == list(CLASSES)


def test_zip_and_nested_root_read_the_same_images(folder, data_dir, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # root one level down, as in the CIFAR-10 zip
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, "wrapper/" + f.relative_to(folder).as_posix())
    a = load(f"imagefolder:{folder}", data_dir=data_dir)
    b = load(f"imagefolder:{archive}", data_dir=data_dir)
    layout = image_folder.scan(str(archive))
    assert layout.is_zip and layout.root == "wrapper"
    for split in ("train", "test"):
        for key in ("image", "label"):
            np.testing.assert_array_equal(a[split][key], b[split][key])


def test_grayscale_jpeg_folder(tmp_path, data_dir):
    root = make_folder(tmp_path / "gray", size=(4, 4), fmt="jpg", mode="L")
    raw = load(f"imagefolder:{root}", data_dir=data_dir)
    assert raw["train"]["image"].shape == (18, 4, 4, 1)
    want, _ = expected_pixels("train")
    np.testing.assert_allclose(raw["train"]["image"][:, 0, 0, 0], want[:, 0], atol=3)  # lossy


def test_every_forget_spec_on_a_folder(folder, data_dir, tmp_path):
    ds = f"imagefolder:{folder}"
    s = make_splits(ds, "class:1", data_dir=data_dir)
    assert s.num_classes == 3 and s.input_shape == (5, 6, 3)
    assert set(s.forget["label"].tolist()) == {1} and 1 not in s.retain["label"]
    assert s.info["counts"] == {"train": 18, "forget": 6, "retain": 12, "test": 4,
                                "forget_test": 2}
    s = make_splits(ds, "classes:0,2", data_dir=data_dir)
    assert set(s.forget["label"].tolist()) == {0, 2} and set(s.test["label"].tolist()) == {1}
    s = make_splits(ds, "random:0.5", data_dir=data_dir, seed=3)
    assert s.info["counts"]["forget"] == 9 and s.info["counts"]["retain"] == 9
    (tmp_path / "idx.txt").write_text("0, 5 17")
    s = make_splits(ds, f"indices:{tmp_path / 'idx.txt'}", data_dir=data_dir)
    np.testing.assert_array_equal(s.forget["label"], [0, 0, 2])
    clean = make_splits(ds, None, data_dir=data_dir)
    s = make_splits(ds, "mislabeled:0.5", data_dir=data_dir, seed=1)
    changed = s.train["label"] != clean.train["label"]
    assert changed.sum() == 9 and len(s.forget["label"]) == 9
    # Images are standardised with the training split's own per-channel statistics.
    np.testing.assert_allclose(clean.train["image"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    mean, _ = clean.info["normalization"]
    want, _ = expected_pixels("train")
    np.testing.assert_allclose(mean, want.mean(axis=0) / 255.0, rtol=1e-5)


def test_bad_folders_raise_clear_errors(tmp_path, data_dir):
    with pytest.raises(ValueError, match="directory or a .zip"):
        load(f"imagefolder:{tmp_path / 'missing'}", data_dir=data_dir)
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="fake.zip' is a file but not a zip archive"):
        load(f"imagefolder:{tmp_path / 'fake.zip'}", data_dir=data_dir)
    with pytest.raises(ValueError, match="imagefolder:PATH"):
        load("imagefolder:", data_dir=data_dir)
    only_train = make_folder(tmp_path / "only_train")
    shutil.rmtree(only_train / "test")
    with pytest.raises(ValueError, match=r"train/test split folders.*'\.' has train/ but no "
                                         r"test/"):
        load(f"imagefolder:{only_train}", data_dir=data_dir)
    extra = make_folder(tmp_path / "extra")
    (extra / "test" / "zebra").mkdir()
    Image.new("RGB", (6, 5)).save(extra / "test" / "zebra" / "0.png")
    with pytest.raises(ValueError, match=r"test classes \['zebra'\]"):
        load(f"imagefolder:{extra}", data_dir=data_dir)
    sizes = make_folder(tmp_path / "sizes")
    Image.new("RGB", (7, 7)).save(sizes / "train" / "cow" / "999.png")
    with pytest.raises(ValueError, match=r"999.png.*expected \(5, 6, 3\)"):
        load(f"imagefolder:{sizes}", data_dir=data_dir)
    broken = make_folder(tmp_path / "broken")
    (broken / "train" / "cow" / "broken.png").write_bytes(b"not an image")
    fresh_dir = tmp_path / "fresh_tfds"
    with pytest.raises(ValueError, match=r"cannot read .*broken.png.* as an image") as err:
        load(f"imagefolder:{broken}", data_dir=fresh_dir)
    assert "--rebuild" not in str(err.value)  # rebuilding cannot fix the file; the file is named
    assert not fresh_dir.exists()  # the failed build left no empty folders behind


@pytest.mark.parametrize("as_zip", [False, True])
def test_class_folder_without_images_is_an_error_not_a_shifted_label(tmp_path, data_dir, as_zip):
    root = make_folder(tmp_path / "holes")
    (root / "train" / "aardvark").mkdir()  # sorts first: would shift every label by one if kept
    (root / "train" / "aardvark" / "notes.txt").write_text("no images here")
    (root / "test" / "bee" / "empty_sub").mkdir()  # deeper folders are not class folders
    path = root
    if as_zip:
        path = tmp_path / "holes.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted(root.rglob("*")):
                zf.write(f, f.relative_to(root).as_posix())  # folders become entries too
    with pytest.raises(ValueError, match=r"class folders with no image .*\['train/aardvark'\]"):
        load(f"imagefolder:{path}", data_dir=data_dir)


def test_cli_data_and_train_on_a_folder(tmp_path, capsys, caplog):
    folder = make_folder(tmp_path / "square", size=(8, 8))  # fastcnn pools 3 times
    dd = tmp_path / "tfds"
    with caplog.at_level("INFO"):
        assert cli.main(["data", "--dataset", f"imagefolder:{folder}", "--data-dir", str(dd)]) == 0
    notices = [r.getMessage() for r in caplog.records if "custom data configuration" in
               r.getMessage() or "has no dataset_info.json" in r.getMessage()]
    assert not notices  # TFDS's expected notices about our own builders are not shown
    first = capsys.readouterr()
    built = pathlib.Path(first.out.strip())
    assert built.is_dir() and built.is_relative_to(dd / "imu_image_folder")
    assert "building" in first.err
    assert cli.main(["data", "--dataset", f"imagefolder:{folder}", "--data-dir", str(dd)]) == 0
    again = capsys.readouterr()
    assert pathlib.Path(again.out.strip()) == built and "building" not in again.err  # cached
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"imagefolder:{folder}", "--forget", "class:0",
                     "--epochs", "1", "--batch-size", "6", "--data-dir", str(dd), "--out",
                     str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "fastcnn"  # the image-folder (CPU CIFAR) recipe
    assert metrics["num_train"] == 18 and metrics["splits"]["counts"]["forget"] == 6


def test_run_command_on_a_folder_with_fastcnn(tmp_path):
    """``imu-jax run --dataset imagefolder:PATH``: BatchNorm model, closed-form IMU on its head."""
    folder = make_folder(tmp_path / "square", size=(8, 8))
    out = tmp_path / "run"
    rc = cli.main(["run", "--dataset", f"imagefolder:{folder}", "--forget", "class:2",
                   "--methods", "retrain,imu", "--seeds", "0", "--train-option", "epochs=1",
                   "--train-option", "batch_size=6", "--train-option",
                   'model_options={"stem": 4, "widths": [4, 8]}', "--no-progress",
                   "--out", str(out), "--data-dir", str(tmp_path / "tfds")])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    imu = next(r for r in runs if r["method"] == "imu")
    assert imu["info"]["closed_form"] is True and 0.0 <= imu["metrics"]["ua"] <= 1.0


def test_forgetting_a_class_without_test_images_with_another_model(tmp_path):
    """A train class with no test folder: the forget-test split is empty, so forget-test accuracy
    is left out (not a crash on an empty array); ``--model mlp`` on an image folder builds the MLP
    with its own options, not the folder recipe's FastCNN ones."""
    folder = make_folder(tmp_path / "no_test_cow")
    shutil.rmtree(folder / "test" / "cow")
    out = tmp_path / "run"
    rc = cli.main(["run", "--dataset", f"imagefolder:{folder}", "--model", "mlp", "--forget",
                   "class:2", "--methods", "retrain,imu", "--seeds", "0", "--train-option",
                   "epochs=1", "--train-option", "batch_size=6", "--no-progress", "--out",
                   str(out), "--data-dir", str(tmp_path / "tfds")])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["method"] for r in runs} == {"original", "retrain", "retrain_floor", "imu"}
    for run in runs:
        assert "fta" not in run["metrics"] and 0.0 <= run["metrics"]["ta"] <= 1.0
    assert json.loads((out / "models" / "original_seed0" / "metrics.json").read_text())[
        "config"]["model"] == "mlp"


def test_cifar_configs_resolve_to_their_recipes():
    args = cli.build_parser().parse_args([
        "train", "--config", str(REPO / "experiments/configs/train_cifar10_resnet18.py"),
        "--dataset", "imagefolder:../shared/data/cifar10-jpeg.zip", "--out", "x"])
    cfg = arguments.train_config_from_args(args)
    assert (cfg["model"], cfg["epochs"], cfg["dataset"]) == (
        "resnet18", 182, "imagefolder:../shared/data/cifar10-jpeg.zip")
    for name in ("class", "random", "retain_set"):
        path = REPO / f"experiments/configs/unlearn_cifar10_fastcnn_{name}.py"
        args = cli.build_parser().parse_args(["run", "--config", str(path), "--out", "x"])
        options = arguments.run_options(args)
        assert options["dataset"].startswith("imagefolder:") and options["model"] == "fastcnn"
        from imu_jax.train import recipe

        assert recipe(options["dataset"], options["model"])["schedule"] == "onecycle"


def shared_cifar_zip() -> pathlib.Path | None:
    """``../shared/data/cifar10-jpeg.zip`` beside the repository (or its main checkout)."""
    for base in (REPO, *REPO.parents):
        candidate = base.parent / "shared" / "data" / "cifar10-jpeg.zip"
        if candidate.exists():
            return candidate
    return None


def test_shared_cifar10_zip_layout():
    path = shared_cifar_zip()
    if path is None:
        pytest.skip("../shared/data/cifar10-jpeg.zip not found beside the repository "
                    "(the shared CIFAR-10 JPEGs exist only on the project's machines and CI)")
    layout = image_folder.scan(str(path))  # lists the zip, decodes one image
    assert layout.root == "cifar10" and layout.shape == (32, 32, 3)
    assert layout.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                              "horse", "ship", "truck")
    assert {k: len(v) for k, v in layout.files.items()} == {"test": 10_000, "train": 50_000}
    with zipfile.ZipFile(path) as zf:
        for cls, member in layout.files["test"][::2500]:  # a few images, one per 2,500
            image = image_folder._decode(zf.read(member))
            assert member.startswith(f"cifar10/test/{cls}/") and image.shape == (32, 32, 3)
