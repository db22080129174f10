"""The edges of an image folder's label hierarchy that a new user met: a changed
``coarse_labels.json`` never reuses a model cached under the old one, :func:`scan` sees edits
within one process, names match across Unicode normalisations, padded / numeric / comma names,
a single superclass, a subclass whose siblings have no test images, a class given twice, a
byte-order mark."""

import json
import os
import pathlib
import shutil
import unicodedata
import zipfile

import pytest
from PIL import Image

from imu_jax.data import image_folder, make_splits
from imu_jax.lab import cli

NFC, NFD = "caf\u00e9", "cafe\u0301"  # the same name as typed on Linux and as stored by macOS


def make(root: pathlib.Path, coarse: dict, *, no_test: tuple = (), text: str | None = None,
         raw: bytes | None = None) -> pathlib.Path:
    """Class folders named by ``coarse``'s keys (3 train and 2 test 4x4 PNGs each; none in test
    for ``no_test``) and ``coarse_labels.json`` = ``raw`` bytes, ``text``, or ``coarse``."""
    for c, name in enumerate(coarse):
        for split, n in (("train", 3), ("test", 0 if name in no_test else 2)):
            if n:
                (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (4, 4), (30 * c + 5, 40 * i, 9)).save(root / split / name /
                                                                      f"{i}.png")
    target = root / image_folder.COARSE_FILE
    if raw is not None:
        target.write_bytes(raw)
    else:
        target.write_text(text if text is not None else json.dumps(coarse), encoding="utf-8")
    return root


ZOO = {"ant": "zoo", "bee": "air", "cat": "zoo", "dog": "land", "elm": "air", "fig": "land"}


def test_scan_sees_an_edited_map_and_a_rewritten_zip_in_the_same_process(tmp_path):
    root = make(tmp_path / "f", ZOO)
    assert image_folder.scan(root).superclasses == ("air", "land", "zoo")
    (root / image_folder.COARSE_FILE).write_text(json.dumps({**ZOO, "fig": "sea"}))  # in place
    edited = image_folder.scan(root)
    assert edited.superclasses == ("air", "land", "sea", "zoo")
    assert dict(zip(edited.classes, edited.coarse))["fig"] == "sea"
    archive = tmp_path / "f.zip"
    for superclass in ("land", "zoo"):
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(root.rglob("*.png")):
                zf.write(f, f.relative_to(root).as_posix())
            zf.writestr(image_folder.COARSE_FILE, json.dumps({**ZOO, "fig": superclass}))
        layout = image_folder.scan(archive)
        assert dict(zip(layout.classes, layout.coarse))["fig"] == superclass


def test_content_leaves_out_the_path_and_follows_the_images_and_the_map(tmp_path):
    root = make(tmp_path / "f", ZOO)
    copy = pathlib.Path(shutil.copytree(root, tmp_path / "elsewhere"))
    a, b = image_folder.scan(root), image_folder.scan(copy)
    assert a.content == b.content and a.fingerprint != b.fingerprint
    (copy / image_folder.COARSE_FILE).write_text(json.dumps({**ZOO, "fig": "zoo"}))
    assert image_folder.scan(copy).content != a.content
    os.remove(copy / "train" / "ant" / "2.png")
    (copy / image_folder.COARSE_FILE).write_text(json.dumps(ZOO))
    assert image_folder.scan(copy).content != a.content  # one image fewer


def test_a_changed_map_refuses_the_models_cached_under_the_old_one(tmp_path, capsys):
    """The models of ``--out`` were trained on other coarse labels once the map changes: a
    one-line error that says so, never a silent reuse."""
    root = make(tmp_path / "f", ZOO)
    args = ["run", "--dataset", f"imagefolder:{root}", "--model", "mlp", "--forget",
            "superclass:zoo", "--methods", "retrain", "--seeds", "0", "--train-option", "epochs=1",
            "--no-progress", "--no-noise-floor", "--fixed-length", "--out", str(tmp_path / "out"),
            "--data-dir", str(tmp_path / "tfds")]
    assert cli.main(args) == 0
    assert cli.main([*args, "--overwrite"]) == 0  # same map: the cached models serve
    (root / image_folder.COARSE_FILE).write_text(json.dumps({**ZOO, "ant": "air", "bee": "zoo"}))
    capsys.readouterr()
    assert cli.main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after "building ..." (new map)
    assert err.startswith("imu-jax run: error: cached model ") and "_seed0 was trained for" in err
    assert "images or coarse_labels.json changed since it was trained" in err


def test_models_cached_before_the_content_was_recorded_are_matched_by_name(tmp_path):
    """A model whose saved splits lack ``data_content`` (written by an older imu-jax) is reused
    for the same dataset name, as before; the next run of it is not retrained."""
    root = make(tmp_path / "f", ZOO)
    out = tmp_path / "out"
    args = ["run", "--dataset", f"imagefolder:{root}", "--model", "mlp", "--forget",
            "superclass:zoo", "--methods", "retrain", "--seeds", "0", "--train-option", "epochs=1",
            "--no-progress", "--no-noise-floor", "--fixed-length", "--out", str(out),
            "--data-dir", str(tmp_path / "tfds")]
    assert cli.main(args) == 0
    saved = sorted(out.glob("models/*/checkpoint/*/meta/metadata"))
    assert len(saved) == 2  # original and Retrain
    for path in saved:
        meta = json.loads(path.read_text())
        assert len(meta["splits"].pop("data_content")) == 16
        path.write_text(json.dumps(meta))
    stamps = {p: p.stat().st_mtime_ns for p in saved}
    assert cli.main([*args, "--overwrite"]) == 0
    assert {p: p.stat().st_mtime_ns for p in saved} == stamps  # reused, not retrained


@pytest.mark.parametrize("folders_as, map_as", [(NFD, NFC), (NFC, NFD), (NFD, NFD)])
def test_names_match_across_unicode_normalisations(tmp_path, folders_as, map_as):
    root = make(tmp_path / "f", {folders_as: "drinks", "tea": "drinks", "ant": "zoo", "cat": "zoo"},
                text=json.dumps({map_as: "drinks", "tea": "drinks", "ant": "zoo", "cat": "zoo"}))
    layout = image_folder.scan(root)
    assert NFC in layout.classes and NFD not in layout.classes
    for typed in (NFC, NFD):
        s = make_splits(f"imagefolder:{root}", f"subclass:{typed}", data_dir=tmp_path / "tfds")
        assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3  # tea
    s = make_splits(f"imagefolder:{root}", "superclass:" + unicodedata.normalize("NFD", "zoo"),
                    data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6


def test_class_folders_that_differ_only_in_normalisation_are_an_error(tmp_path):
    root = make(tmp_path / "f", {NFC: "drinks", NFD: "drinks", "ant": "zoo"}, text="{}")
    with pytest.raises(ValueError, match=r"differ only in Unicode normalisation \(NFC / NFD\): "
                                         r"\['cafe\\u0301', 'caf\\xe9'\]"):
        image_folder.scan(root)


@pytest.mark.parametrize("text, match", [
    (json.dumps({**ZOO, "ant": " zoo"}), r"must not start or end with white space .*\[' zoo'\]"),
    ('{"ant": "zoo", "ant": "air", "bee": "air", "cat": "zoo", "dog": "land", "elm": "air", '
     '"fig": "land"}', r"gives a superclass twice for the fine classes \['ant'\]"),
    ('"zoo"', r"it is a JSON string\.$"),
])
def test_bad_names_in_the_map(tmp_path, text, match):
    root = make(tmp_path / "f", ZOO, text=text)
    with pytest.raises(ValueError, match=match):
        image_folder.scan(root)


def test_a_map_saved_with_a_byte_order_mark_is_read(tmp_path):
    root = make(tmp_path / "f", ZOO, raw=b"\xef\xbb\xbf" + json.dumps(ZOO).encode())
    assert image_folder.scan(root).superclasses == ("air", "land", "zoo")


def test_a_number_that_is_also_another_class_name_is_ambiguous(tmp_path):
    # superclasses "1" (id 0) and "2" (id 1); fine classes 0..3 are named by their own ids
    root = make(tmp_path / "f", {"0": "1", "1": "1", "2": "2", "3": "2"})
    with pytest.raises(ValueError, match=r"'superclass:1' is ambiguous .*superclass id 1 is "
                                         r"'2', and '1' is the name of id 0; give the id"):
        make_splits(f"imagefolder:{root}", "superclass:1", data_dir=tmp_path / "tfds")
    s = make_splits(f"imagefolder:{root}", "superclass:0", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6  # folders 0 and 1, by id
    s = make_splits(f"imagefolder:{root}", "subclass:2", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3  # name = id


def test_names_with_commas_are_one_name(tmp_path):
    root = make(tmp_path / "f", {"a,b": "x, y", "c": "x, y", "d": "z", "e": "z"})
    s = make_splits(f"imagefolder:{root}", "subclass:a,b", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3
    s = make_splits(f"imagefolder:{root}", "superclass:x, y", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6


def test_one_superclass_is_an_error_before_anything_is_built(tmp_path):
    root = make(tmp_path / "f", {"ant": "all", "bee": "all", "cat": "all"})
    for spec in ("subclass:ant", "superclass:all"):
        with pytest.raises(ValueError, match=r"needs at least two superclasses .* has 1: 0 all\."):
            make_splits(f"imagefolder:{root}", spec, data_dir=tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


def test_a_subclass_whose_siblings_have_no_test_images_is_an_error(tmp_path):
    root = make(tmp_path / "f", ZOO, no_test=("ant",))
    with pytest.raises(ValueError, match=r"'subclass:cat' leaves the test split of .* empty: its "
                                         r"sibling classes \['ant'\] have no test images"):
        make_splits(f"imagefolder:{root}", "subclass:cat", data_dir=tmp_path / "tfds")
    s = make_splits(f"imagefolder:{root}", "subclass:ant", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["test"] == 2 and s.info["counts"]["forget_test"] == 0
