"""The edges of an image folder's label hierarchy that two reviewers met: a changed
``coarse_labels.json`` or image never reuses a model or a build made before the change, while
the same folder under another path spelling or in a copy reuses its models; :func:`scan` sees
edits within one process; symbolic links; names match across Unicode normalisations; padded,
invisible, numeric and comma names; a single superclass; a subclass whose siblings have no test
images; a class given twice; a byte-order mark; JSON that breaks the parser."""

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
    args = _tiny_run(root, tmp_path / "out", tmp_path / "tfds")
    assert cli.main(args) == 0
    assert cli.main([*args, "--overwrite"]) == 0  # same map: the cached models serve
    (root / image_folder.COARSE_FILE).write_text(json.dumps({**ZOO, "ant": "air", "bee": "zoo"}))
    capsys.readouterr()
    assert cli.main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after "building ..." (new map)
    assert err.startswith("imu-jax run: error: cached model ") and "_seed0 was trained for" in err
    assert "images or coarse_labels.json changed since it was trained" in err


def _tiny_run(root, out: pathlib.Path, data_dir: pathlib.Path, spec="superclass:zoo") -> list:
    return ["run", "--dataset", f"imagefolder:{root}", "--model", "mlp", "--forget", spec,
            "--methods", "retrain", "--seeds", "0", "--train-option", "epochs=1", "--no-progress",
            "--no-noise-floor", "--fixed-length", "--out", str(out), "--data-dir", str(data_dir)]


def test_the_same_folder_under_another_spelling_or_copied_reuses_its_models(tmp_path,
                                                                             monkeypatch):
    root = make(tmp_path / "f", ZOO)
    out, data = tmp_path / "out", tmp_path / "tfds"
    assert cli.main(_tiny_run(root.resolve(), out, data)) == 0
    saved = sorted(out.glob("models/*/checkpoint/*/meta/metadata"))
    stamps = {p: p.stat().st_mtime_ns for p in saved}
    monkeypatch.chdir(tmp_path)
    copy = shutil.copytree(root, tmp_path / "copy")
    (tmp_path / "link").symlink_to(root)
    for spelling in ("f", "./f/", "link", str(copy)):
        assert cli.main([*_tiny_run(spelling, out, data), "--overwrite"]) == 0, spelling
    assert {p: p.stat().st_mtime_ns for p in saved} == stamps  # never retrained


def test_an_image_moved_to_another_class_is_a_new_build(tmp_path):
    root = make(tmp_path / "f", ZOO)
    dataset = f"imagefolder:{root}"
    assert make_splits(dataset, "superclass:zoo", data_dir=tmp_path / "tfds"
                       ).info["counts"]["forget"] == 6  # ant and cat, 3 each
    before = image_folder.scan(root)
    os.replace(root / "train" / "bee" / "2.png", root / "train" / "ant" / "9.png")
    after = image_folder.scan(root)
    assert after.fingerprint != before.fingerprint and after.content != before.content
    assert make_splits(dataset, "superclass:zoo", data_dir=tmp_path / "tfds"
                       ).info["counts"]["forget"] == 7


def test_symbolic_links_to_class_folders_are_followed_and_a_cycle_ends(tmp_path):
    real = make(tmp_path / "real", ZOO)
    root = tmp_path / "linked"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for name in ZOO:
            (root / split / name).symlink_to(real / split / name, target_is_directory=True)
    shutil.copy(real / image_folder.COARSE_FILE, root)
    layout = image_folder.scan(root)
    assert layout.classes == tuple(sorted(ZOO))
    assert layout.content == image_folder.scan(real).content
    (real / "train" / "ant" / "loop").symlink_to(real / "train", target_is_directory=True)
    assert image_folder.scan(real).classes == tuple(sorted(ZOO))  # the cycle is not entered


def test_models_cached_before_the_content_was_recorded_are_matched_by_name(tmp_path):
    """A model whose saved splits lack ``data_content`` (written by an older imu-jax) is reused
    for the same dataset name, as before; the next run of it is not retrained."""
    root = make(tmp_path / "f", ZOO)
    out = tmp_path / "out"
    args = _tiny_run(root, out, tmp_path / "tfds")
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


def test_the_content_reads_names_in_nfc(tmp_path):
    a = make(tmp_path / "a", {NFC: "drinks", "tea": "drinks", "ant": "zoo"})
    b = make(tmp_path / "b", {NFD: "drinks", "tea": "drinks", "ant": "zoo"},
             text=json.dumps({NFC: "drinks", "tea": "drinks", "ant": "zoo"}))
    assert image_folder.scan(a).content == image_folder.scan(b).content


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
    (json.dumps({**ZOO, "ant": "z\noo"}), r"control or invisible characters .*'z\\noo'"),
    (json.dumps({**ZOO, "ant": "zoo\u200b"}), r"control or invisible characters .*'zoo\\u200b'"),
    ('{"ant": {"x": 1, "x": 2}, "bee": "air", "cat": "zoo", "dog": "land", "elm": "air", '
     '"fig": "land"}', r"superclass name \(a non-empty string\); bad entries: \['ant'\]"),
    ('{"ant": ' + "[" * 100_000 + "]" * 100_000 + "}", r"is not valid JSON \(RecursionError"),
    ('{"ant": 1' + "0" * 5000 + "}", r"is not valid JSON \(ValueError: Exceeds the limit"),
])
def test_bad_names_in_the_map(tmp_path, text, match):
    root = make(tmp_path / "f", ZOO, text=text)
    with pytest.raises(ValueError, match=match):
        image_folder.scan(root)


def test_a_map_saved_with_a_byte_order_mark_is_read(tmp_path):
    root = make(tmp_path / "f", ZOO, raw=b"\xef\xbb\xbf" + json.dumps(ZOO).encode())
    assert image_folder.scan(root).superclasses == ("air", "land", "zoo")


@pytest.mark.parametrize("typed", ["1", "01", "+1", " 1"])
def test_a_number_that_is_also_another_class_name_is_ambiguous(tmp_path, typed):
    # superclasses "1" (id 0) and "2" (id 1); fine classes 0..3 are named by their own ids
    root = make(tmp_path / "f", {"0": "1", "1": "1", "2": "2", "3": "2"})
    with pytest.raises(ValueError, match=r"is ambiguous .*superclass id 1 is '2', and '1' has "
                                         r"id\(s\) 0; give the id"):
        make_splits(f"imagefolder:{root}", f"superclass:{typed}", data_dir=tmp_path / "tfds")
    s = make_splits(f"imagefolder:{root}", "superclass:0", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6  # folders 0 and 1, by id
    s = make_splits(f"imagefolder:{root}", "subclass:2", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3  # name = id


def test_a_number_that_is_no_id_names_the_class_that_spells_it(tmp_path):
    root = make(tmp_path / "f", {"1": "1", "2": "1", "3": "2", "4": "2"})
    s = make_splits(f"imagefolder:{root}", "subclass:4", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3  # '4'; '3' kept
    s = make_splits(f"imagefolder:{root}", "superclass:2", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6  # superclass '2' (id 1): no id 2 exists
    with pytest.raises(ValueError, match=r"subclass \[7\] out of range \[0, 3\]"):
        make_splits(f"imagefolder:{root}", "subclass:7", data_dir=tmp_path / "tfds")
    other = make(tmp_path / "g", {"\u00b2": "x", "a": "x", "b": "y", "c": "y"})
    s = make_splits(f"imagefolder:{other}", "subclass:\u00b2", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3  # a superscript two is a name, not a number


def test_names_with_commas_are_one_name(tmp_path):
    root = make(tmp_path / "f", {"a,b": "x, y", "c": "x, y", "d": "z", "e": "z"})
    s = make_splits(f"imagefolder:{root}", "subclass:a,b", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 3 and s.info["counts"]["retain"] == 3
    s = make_splits(f"imagefolder:{root}", "superclass:x, y", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["forget"] == 6


def test_one_superclass_is_an_error_before_anything_is_built(tmp_path):
    root = make(tmp_path / "f", {"ant": "all", "bee": "all", "cat": "all"})
    for spec in ("subclass:ant", "superclass:all"):
        with pytest.raises(ValueError, match=r"needs at least two superclasses .* has 1: 0 all "
                                             r"\(give coarse_labels.json at least two"):
            make_splits(f"imagefolder:{root}", spec, data_dir=tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


def test_a_subclass_whose_siblings_have_no_test_images_is_an_error(tmp_path):
    root = make(tmp_path / "f", ZOO, no_test=("ant",))
    with pytest.raises(ValueError, match=r"'subclass:cat' leaves the test split of .* empty: its "
                                         r"sibling classes \['ant'\] have no test images"):
        make_splits(f"imagefolder:{root}", "subclass:cat", data_dir=tmp_path / "tfds")
    s = make_splits(f"imagefolder:{root}", "subclass:ant", data_dir=tmp_path / "tfds")
    assert s.info["counts"]["test"] == 2 and s.info["counts"]["forget_test"] == 0
