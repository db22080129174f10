"""Image folders with a label hierarchy (``coarse_labels.json``): coarse labels, ``superclass:K``
and ``subclass:K`` by id and by name (directory and zip), the fingerprint, every error; CIFAR-100
names on the catalogue dataset, the cifar100 configs and the shared CIFAR-100 zip."""

import hashlib
import json
import pathlib
import runpy
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from imu_jax.lab import cli
from imu_jax.data import image_folder, load, local_builder, make_splits, parse_forget_spec
from imu_jax.data.cifar100_labels import (CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE,
                                          CIFAR100_FINE_NAMES)
from imu_jax.data.hierarchy import resolve_coarse_spec

REPO = pathlib.Path(__file__).resolve().parents[1]
# Fine ids follow the sorted folder names (ant 0 ... fig 5); superclass ids the sorted superclass
# names (air 0, land 1, zoo 2), which is not the order in which the fine classes meet them.
COARSE = {"ant": "zoo", "bee": "air", "cat": "zoo", "dog": "land", "elm": "air", "fig": "land"}
FINE = tuple(sorted(COARSE))
SUPER = ("air", "land", "zoo")
COARSE_OF_FINE = [2, 0, 2, 1, 0, 1]
COUNTS = {"train": 3, "test": 2}  # images per class


def make_folder(root: pathlib.Path, coarse: dict | str | None = COARSE) -> pathlib.Path:
    """6 classes of 4x4 PNGs, each image one colour that names its class, split and index."""
    for split, n in COUNTS.items():
        for c, name in enumerate(FINE):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = (30 * c + 5, 40 * i + (120 if split == "test" else 0), 9)
                Image.new("RGB", (4, 4), colour).save(root / split / name / f"{i}.png")
    if coarse is not None:
        text = coarse if isinstance(coarse, str) else json.dumps(coarse)
        (root / image_folder.COARSE_FILE).write_text(text)
    return root


def zip_folder(root: pathlib.Path, archive: pathlib.Path, wrapper: str = "wrapper",
               extra: dict | None = None) -> pathlib.Path:
    """``root`` inside a zip one folder down (as the shared CIFAR zips), plus ``extra`` files."""
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f"{wrapper}/" + f.relative_to(root).as_posix())
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return archive


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("coarse") / "tiny")


@pytest.fixture(scope="module")
def archive(folder, tmp_path_factory):
    return zip_folder(folder, tmp_path_factory.mktemp("zip") / "tiny.zip")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(params=["dir", "zip"])
def dataset(request, folder, archive):
    return f"imagefolder:{folder if request.param == 'dir' else archive}"


def test_scan_reads_the_map_beside_the_split_folders(folder, archive):
    for path, where in ((folder, "coarse_labels.json"), (archive, "wrapper/coarse_labels.json")):
        layout = image_folder.scan(str(path))
        assert layout.classes == FINE and layout.superclasses == SUPER
        assert layout.coarse == tuple(COARSE[c] for c in FINE)
        assert layout.coarse_of_fine.tolist() == COARSE_OF_FINE
        assert layout.coarse_file == where and layout.stray_coarse == ()


def test_coarse_labels_are_built_into_the_dataset(dataset, data_dir):
    raw = load(dataset, data_dir=data_dir)
    for split, n in COUNTS.items():
        fine = raw[split]["label"]
        np.testing.assert_array_equal(fine, np.repeat(np.arange(6), n))
        np.testing.assert_array_equal(raw[split]["coarse_label"],
                                      np.array(COARSE_OF_FINE)[fine])
        np.testing.assert_array_equal(raw[split]["image"][:, 0, 0, 0], 30 * fine + 5)
    features = local_builder(dataset, data_dir).info.features
    assert features["coarse_label"].names == list(SUPER)
    assert features["label"].names == list(FINE)


@pytest.mark.parametrize("spec", ["superclass:zoo", "superclass:2"])
def test_superclass_split(dataset, data_dir, spec):
    raw = load(dataset, data_dir=data_dir)
    s = make_splits(dataset, spec, data_dir=data_dir)
    assert s.num_classes == 3 and s.info["label_key"] == "coarse_label"
    assert s.info["forget_spec"] == spec
    assert s.info["counts"] == {"train": 18, "forget": 6, "retain": 12, "test": 8,
                                "forget_test": 4}
    assert (s.forget["label"] == 2).all() and (s.forget_test["label"] == 2).all()
    assert set(s.retain["label"].tolist()) == {0, 1} and set(s.test["label"].tolist()) == {0, 1}
    # zoo = ant (0) + cat (2): each split holds exactly the images of its fine classes, in order
    fine_tr, fine_te = raw["train"]["label"], raw["test"]["label"]
    for split, fine, wanted in ((s.forget, fine_tr, [0, 2]), (s.retain, fine_tr, [1, 3, 4, 5]),
                                (s.forget_test, fine_te, [0, 2]), (s.test, fine_te, [1, 3, 4, 5])):
        raw_split = raw["train"] if fine is fine_tr else raw["test"]
        got = np.round(split["image"][:, 0, 0, 0] * s.info["normalization"][1][0] * 255
                       + s.info["normalization"][0][0] * 255)
        np.testing.assert_array_equal(got, raw_split["image"][np.isin(fine, wanted), 0, 0, 0])


@pytest.mark.parametrize("spec", ["subclass:cat", "subclass:2"])
def test_subclass_split_is_restricted_to_the_sibling_classes(dataset, data_dir, spec):
    """cat (fine 2) is in zoo with ant (fine 0) only: retain and test hold ant alone, with coarse
    labels; Retrain trains on everything but cat, as for CIFAR-100."""
    raw = load(dataset, data_dir=data_dir)
    s = make_splits(dataset, spec, data_dir=data_dir)
    assert s.num_classes == 3 and s.info["label_key"] == "coarse_label"
    assert s.info["counts"] == {"train": 18, "forget": 3, "retain": 3, "test": 2,
                                "forget_test": 2, "control_test": 8, "retrain_set": 15}
    for split in (s.forget, s.retain, s.test, s.forget_test):
        assert (split["label"] == 2).all()  # all of superclass zoo
    # the control split: every test image of the other superclasses, with its coarse label
    assert sorted(s.control_test["label"].tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(
        s.retrain_data["label"], np.array(COARSE_OF_FINE)[raw["train"]["label"]][
            raw["train"]["label"] != 2])
    scale, shift = s.info["normalization"][1][0] * 255, s.info["normalization"][0][0] * 255

    def fine_of(split):  # the red channel names the fine class (30 k + 5)
        return sorted(set(((np.round(split["image"][:, 0, 0, 0] * scale + shift) - 5) // 30)
                          .astype(int).tolist()))

    assert fine_of(s.forget) == [2] and fine_of(s.forget_test) == [2]
    assert fine_of(s.retain) == [0] and fine_of(s.test) == [0]
    assert fine_of(s.retrain_set) == [0, 1, 3, 4, 5]
    assert fine_of(s.control_test) == [1, 3, 4, 5]


def test_directory_and_zip_give_the_same_splits(folder, archive, data_dir):
    for spec in ("superclass:land", "subclass:elm"):
        a = make_splits(f"imagefolder:{folder}", spec, data_dir=data_dir)
        b = make_splits(f"imagefolder:{archive}", spec, data_dir=data_dir)
        assert a.info["counts"] == b.info["counts"]
        for name in ("forget", "retain", "test", "forget_test"):
            for key in ("image", "label"):
                np.testing.assert_array_equal(getattr(a, name)[key], getattr(b, name)[key])


def test_other_specs_keep_fine_labels(folder, data_dir):
    s = make_splits(f"imagefolder:{folder}", "class:4", data_dir=data_dir)
    assert s.num_classes == 6 and s.info["label_key"] == "label"
    assert (s.forget["label"] == 4).all() and s.info["counts"]["forget"] == 3


def test_the_fingerprint_is_the_path_and_the_content_and_the_map_enters_it(tmp_path):
    plain = make_folder(tmp_path / "plain", coarse=None)
    layout = image_folder.scan(str(plain))
    assert layout.coarse == () and layout.superclasses == ()
    key = f"{plain.resolve()}|{layout.content}"
    assert layout.fingerprint == hashlib.sha1(key.encode()).hexdigest()[:10]
    mapped = make_folder(tmp_path / "mapped")
    first = image_folder.scan(str(mapped)).fingerprint
    (mapped / "coarse_labels.json").write_text(json.dumps(COARSE, indent=4))  # same map
    assert image_folder.scan(str(mapped)).fingerprint == first
    (mapped / "coarse_labels.json").write_text(json.dumps({**COARSE, "fig": "zoo"}))
    changed = image_folder.scan(str(mapped))
    assert changed.fingerprint != first and changed.coarse_of_fine.tolist()[5] == 2
    assert image_folder.config_name(changed) == f"mapped_{changed.fingerprint}"


@pytest.mark.parametrize("as_zip", [False, True])
def test_superclass_spec_without_map_says_where_it_goes(tmp_path, as_zip):
    root = make_folder(tmp_path / "plain", coarse=None)
    path, where = root, f"at {str((root / 'coarse_labels.json').resolve())!r}"
    if as_zip:  # a map at the zip's top level is not beside wrapper/train and wrapper/test
        path = zip_folder(root, tmp_path / "plain.zip", extra={"coarse_labels.json": "{}"})
        where = "inside the zip at 'wrapper/coarse_labels.json'"
    for spec in ("superclass:0", "subclass:bee"):
        with pytest.raises(ValueError, match="needs coarse labels") as err:
            make_splits(f"imagefolder:{path}", spec, data_dir=tmp_path / "tfds")
        message = str(err.value)
        assert "has no coarse_labels.json" in message and where in message
        assert "beside train/ and test/" in message and "\n" not in message
        assert ("found ['coarse_labels.json'], which is not beside" in message) == as_zip
    assert not (tmp_path / "tfds").exists()  # failed before building anything


@pytest.mark.parametrize("as_zip", [False, True])
@pytest.mark.parametrize("text, match", [
    (json.dumps({k: v for k, v in COARSE.items() if k not in ("bee", "fig")}),
     r"is incomplete: no superclass for 2 of 6 fine classes: \['bee', 'fig'\]"),
    ("{}", r"no superclass for 6 of 6 fine classes: \['ant', 'bee', 'cat', 'dog', 'elm', \.\.\.\]"),
    (json.dumps({**COARSE, "emu": "air", "yak": "land"}),
     r"names fine classes that are not class folders of train/: \['emu', 'yak'\]; class folders: "
     r"\['ant', 'bee', 'cat', 'dog', 'elm', \.\.\.\] \(6 in all\)"),
    ("{'ant': 'zoo'", "is not valid JSON"),
    (json.dumps({**COARSE, "ant": 3}), r"superclass name \(a non-empty string\); bad entries: "
                                       r"\['ant'\]"),
    ("[1, 2]", r"must be a JSON object mapping each fine class .*; it is a JSON array\.$"),
    (json.dumps({**{k: v for k, v in COARSE.items() if k != "cat"}, "cta": "zoo"}),
     r"not class folders of train/: \['cta'\]; it lacks the class folders \['cat'\]; class "),
])
def test_bad_maps_are_one_line_errors(tmp_path, text, match, as_zip):
    root = make_folder(tmp_path / "bad", coarse=text)
    path = zip_folder(root, tmp_path / "bad.zip") if as_zip else root
    with pytest.raises(ValueError, match=match) as err:
        load(f"imagefolder:{path}", data_dir=tmp_path / "tfds")  # any use of the folder
    assert "coarse_labels.json'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec, match", [
    ("superclass:sky", r"unknown superclass 'sky' on .*; superclasses \(id name\): 0 air, 1 land, "
                       r"2 zoo\.$"),
    ("subclass:ca", r"unknown subclass \(fine class\) 'ca' .*did you mean 'cat'\? subclasses "
                    r"\(id name\): 0 ant, 1 bee, 2 cat, 3 dog, 4 elm, 5 fig\.$"),
    ("subclass:zoo", r"unknown subclass \(fine class\) 'zoo'"),  # a superclass is no fine class
    ("superclass:3", r"superclass \[3\] out of range \[0, 2\]"),
    ("subclass:6", r"subclass \[6\] out of range \[0, 5\]"),
    ("superclass:zoo,air", r"superclass takes one id or name; unknown superclass 'zoo,air'"),
])
def test_bad_names_and_ids(folder, tmp_path, spec, match):
    with pytest.raises(ValueError, match=match):
        make_splits(f"imagefolder:{folder}", spec, data_dir=tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()  # checked before the folder is built


def test_a_subclass_alone_in_its_superclass_is_an_error(tmp_path):
    root = make_folder(tmp_path / "solo", coarse={**COARSE, "fig": "sea"})
    with pytest.raises(ValueError, match=r"fine class 5 \(fig\) is the only one of its "
                                         r"superclass 'sea'"):
        make_splits(f"imagefolder:{root}", "subclass:fig", data_dir=tmp_path / "tfds")
    # superclasses air 0, land 1 (dog alone now too), sea 2, zoo 3; ant still has cat
    s = make_splits(f"imagefolder:{root}", "subclass:ant", data_dir=tmp_path / "tfds")
    assert s.num_classes == 4 and (s.retain["label"] == 3).all()
    assert s.info["counts"] == {"train": 18, "forget": 3, "retain": 3, "test": 2,
                                "forget_test": 2, "control_test": 8, "retrain_set": 15}
    assert sorted(set(s.control_test["label"].tolist())) == [0, 1, 2]  # air, land, sea


def _run_tiny(folder, tmp_path, spec: str, methods: str) -> pathlib.Path:
    """``imu-jax run`` of an MLP on the tiny folder, one epoch, seed 0; returns the output dir."""
    out = tmp_path / spec.replace(":", "_")
    assert cli.main(["run", "--dataset", f"imagefolder:{folder}", "--model", "mlp", "--forget",
                     spec, "--methods", methods, "--seeds", "0", "--train-option", "epochs=1",
                     "--train-option", "batch_size=6", "--no-progress", "--out", str(out),
                     "--data-dir", str(tmp_path / "tfds")]) == 0
    return out


def test_subclass_run_scores_the_other_superclasses_and_reads_the_siblings(folder, tmp_path):
    """``imu-jax run --forget subclass:cat``: the stopping rule is the subclass removal on the
    sibling (ant) validation images, every run reports ``cta`` (the accuracy on the other
    superclasses' test images, its own column) and a run is collapsed when that accuracy is."""
    out = _run_tiny(folder, tmp_path, "subclass:cat", "retrain,imu,ga")
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["retain_free_rule"]["removal"] == "subclass"
    assert results["config"]["held_out"]["control_test"] == 4  # 8 carved in halves
    assert results["config"]["held_out"]["control_validation"] == 4
    for run in results["runs"]:
        assert 0.0 <= run["metrics"]["cta"] <= 1.0
        # two labels (air, land) in equal numbers among the control images: bar 2 x 50 %
        assert run["collapsed"] == (run["metrics"]["cta"] < 1.0
                                    or run["metrics"]["ta"] < 2 / 3)
        if run["method"] in ("imu", "ga"):
            assert run["info"]["removal"] == "subclass"
    text = (out / "results.md").read_text()
    assert "Other classes acc." in text


def test_run_command_forgets_a_superclass_by_name(folder, tmp_path):
    """``imu-jax run --forget superclass:zoo`` on a folder: the models train on the 3 coarse
    labels and the run goes through (validation, stopping rule, metrics) with the name."""
    out = _run_tiny(folder, tmp_path, "superclass:zoo", "retrain,imu")
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["method"] for r in runs} == {"original", "retrain", "retrain_floor", "imu"}
    splits = json.loads((out / "models" / "original_seed0" / "metrics.json").read_text())["splits"]
    assert splits["forget_spec"] == "superclass:zoo" and splits["num_classes"] == 3
    assert splits["counts"]["forget"] == 6 and splits["label_key"] == "coarse_label"


def test_parse_names():
    spec = parse_forget_spec("superclass:vehicles_2")
    assert (spec.kind, spec.name, spec.classes) == ("superclass", "vehicles_2", ())
    assert parse_forget_spec("subclass:rocket").name == "rocket"
    assert parse_forget_spec("subclass:69").classes == (69,)
    assert parse_forget_spec("subclass:69").name is None
    with pytest.raises(ValueError, match="expected integer ids"):
        parse_forget_spec("class:rocket")  # names are for the hierarchy kinds only


def test_cifar100_names_match_the_official_ids():
    assert len(CIFAR100_FINE_NAMES) == 100 and len(CIFAR100_COARSE_NAMES) == 20
    assert list(CIFAR100_FINE_NAMES) == sorted(CIFAR100_FINE_NAMES)
    assert list(CIFAR100_COARSE_NAMES) == sorted(CIFAR100_COARSE_NAMES)
    assert resolve_coarse_spec(parse_forget_spec("superclass:vehicles_2"), "cifar100").classes \
        == (19,)
    assert resolve_coarse_spec(parse_forget_spec("subclass:rocket"), "cifar100").classes == (69,)
    assert CIFAR100_COARSE_OF_FINE[69] == 19
    vehicles_2 = [CIFAR100_FINE_NAMES[i] for i in np.flatnonzero(CIFAR100_COARSE_OF_FINE == 19)]
    assert vehicles_2 == ["lawn_mower", "rocket", "streetcar", "tank", "tractor"]
    with pytest.raises(ValueError, match=r"did you mean 'vehicles_\d', 'vehicles_\d'\? "
                                         r"superclasses.*0 aquatic_mammals.*19 vehicles_2\.$"):
        resolve_coarse_spec(parse_forget_spec("superclass:vehicles"), "cifar100")
    with pytest.raises(ValueError, match=r"0 apple, 1 aquarium_fish.*19 cattle, \.\.\. "
                                         r"\(100 in all\)\.$"):
        resolve_coarse_spec(parse_forget_spec("subclass:spaceship"), "cifar100")


def test_cifar100_catalogue_names_equal_ids(tmp_path):
    with tfds.testing.mock_data(num_examples=300, policy=tfds.testing.MockPolicy.USE_CODE):
        for by_name, by_id in (("superclass:vehicles_2", "superclass:19"),
                               ("subclass:rocket", "subclass:69")):
            a = make_splits("cifar100", by_name, data_dir=tmp_path)
            b = make_splits("cifar100", by_id, data_dir=tmp_path)
            assert a.info["counts"] == b.info["counts"] and a.num_classes == 20
            np.testing.assert_array_equal(a.forget["image"], b.forget["image"])
            np.testing.assert_array_equal(a.retain["label"], b.retain["label"])


def test_cifar100_configs_name_vehicles_2_and_rocket():
    configs = REPO / "experiments" / "configs"
    for name, want in (("superclass", (19,)), ("subclass", (69,))):
        config = runpy.run_path(str(configs / f"unlearn_cifar100_{name}.py"))["get_config"]()
        spec = parse_forget_spec(config["forget"])
        assert spec.kind == name and spec.name in ("vehicles_2", "rocket")
        assert resolve_coarse_spec(spec, config["dataset"]).classes == want


def shared_cifar100_zip() -> pathlib.Path | None:
    """``../shared/data/cifar100-jpeg.zip`` beside the repository (or its main checkout)."""
    for base in (REPO, *REPO.parents):
        candidate = base.parent / "shared" / "data" / "cifar100-jpeg.zip"
        if candidate.exists():
            return candidate
    return None


@pytest.mark.slow
def test_shared_cifar100_zip_hierarchy():
    """Lists the real zip (60,000 entries) and reads its map; no images are converted."""
    path = shared_cifar100_zip()
    if path is None:
        pytest.skip("../shared/data/cifar100-jpeg.zip not found beside the repository "
                    "(the shared CIFAR-100 JPEGs exist only on the project's machines and CI)")
    start = time.perf_counter()
    image_folder.scan.cache_clear()
    layout = image_folder.scan(str(path))
    if time.perf_counter() - start > 60:
        pytest.skip("listing the CIFAR-100 zip took over 60 s on this machine")
    assert layout.root == "cifar100" and layout.coarse_file == "cifar100/coarse_labels.json"
    assert len(layout.classes) == 100 and len(layout.superclasses) == 20
    assert {k: len(v) for k, v in layout.files.items()} == {"test": 10_000, "train": 50_000}
    # the folder's ids are CIFAR-100's (TFDS cifar100): same fine and superclass numbering
    assert layout.classes == CIFAR100_FINE_NAMES and layout.superclasses == CIFAR100_COARSE_NAMES
    np.testing.assert_array_equal(layout.coarse_of_fine, CIFAR100_COARSE_OF_FINE)
    assert dict(zip(layout.classes, layout.coarse))["rocket"] == "vehicles_2"
    dataset = f"imagefolder:{path}"
    for text, want in (("superclass:vehicles_2", 19), ("subclass:rocket", 69)):
        assert resolve_coarse_spec(parse_forget_spec(text), dataset).classes == (want,)
