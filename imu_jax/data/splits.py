"""Forget / retain / test splits of a dataset for a forget specification.

Image splits are ``{"image": f32 [N,H,W,C] normalised, "label": i32 [N]}``; sequence splits are
``{"tokens": i32 [N,T], "label": i32 [N,T]}`` with ``label[:, t] = tokens[:, t+1]`` and -1 at the
last position (ignored).

``superclass:K`` and ``subclass:K`` need a label hierarchy: CIFAR-100's (the catalogue dataset,
official fine/coarse names and ids below), or an image folder's ``coarse_labels.json`` (see
:mod:`imu_jax.data.image_folder`; superclass ids = indices of the sorted superclass names, fine
ids = of the sorted class folders; on the shared CIFAR-100 zip both equal CIFAR-100's). ``K`` is an
id or a name: ``superclass:vehicles_2`` = ``superclass:19``, ``subclass:rocket`` = ``subclass:69``.
Labels are then the coarse ones; ``subclass:K`` forgets fine class K, and retain and test are
restricted to the other fine classes of its superclass (the paper's setting), while Retrain
trains on everything but K (``Splits.retrain_set``).

Examples:
  >>> import tempfile
  >>> s = make_splits("digits", "class:3", data_dir=tempfile.mkdtemp())
  >>> s.info["counts"]
  {'train': 1437, 'forget': 146, 'retain': 1291, 'test': 323, 'forget_test': 37}
  >>> s.num_classes, s.input_shape
  (10, (8, 8, 1))
  >>> resolve_coarse_spec(parse_forget_spec("subclass:rocket"), "cifar100").classes
  (69,)

With ``validation=0.5`` (what ``imu-jax run`` asks for) half of the test split becomes a
validation split (:mod:`imu_jax.data.validation`):

  >>> v = make_splits("digits", "class:3", data_dir=tempfile.mkdtemp(), validation=0.5)
  >>> {k: v.info["counts"][k] for k in ("validation", "test", "forget_validation", "forget_test")}
  {'validation': 162, 'test': 161, 'forget_validation': 18, 'forget_test': 19}
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from imu_jax.data import markov as markov_lib
from imu_jax.data.forget_spec import ForgetSpec, ForgetSpecError, check_ids, parse_forget_spec
from imu_jax.data.hierarchy import hierarchy, resolve_coarse_spec
from imu_jax.data import image_folder
from imu_jax.data.sources import FOLDER, canonical_name, load
from imu_jax.data.validation import carve_validation

Arrays = dict[str, np.ndarray]

# (mean, std) per channel of images scaled to [0, 1]; digits are scaled by 1/16.
NORMALIZATION = {
    "digits": ((0.3050,), (0.3750,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"digits": 10, "mnist1d": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
NUM_COARSE = 20


@dataclasses.dataclass
class Splits:
    """Everything an unlearning run needs; see ``docs/CONTRACTS.md``.

    ``retrain_set`` is what the Retrain reference trains on when it differs from ``retain``
    (``subclass:K``: retain is restricted to the sibling classes, Retrain sees all but K);
    use :attr:`retrain_data`.

    ``control_test`` holds data whose predictions the forgetting should leave alone and that no
    other split measures: Markov, the never-seen chain ``forget2``; ``subclass:K`` on images, the
    test images of the other superclasses (retain and test hold only K's siblings, so without it
    damage done to the rest of the task would show in no metric).

    ``validation`` / ``forget_validation`` / ``control_validation``: held-out data disjoint from
    ``test`` / ``forget_test`` / ``control_test``, when carved (:func:`carve_validation`).
    """

    train: Arrays
    forget: Arrays
    retain: Arrays
    test: Arrays
    num_classes: int
    input_shape: tuple[int, ...]
    info: dict
    forget_test: Arrays | None = None
    control: Arrays | None = None
    control_test: Arrays | None = None
    transition: np.ndarray | None = None
    transitions: dict[str, np.ndarray] | None = None
    retrain_set: Arrays | None = None
    validation: Arrays | None = None
    forget_validation: Arrays | None = None
    control_validation: Arrays | None = None

    @property
    def retrain_data(self) -> Arrays:
        """The training set of the Retrain reference."""
        return self.retain if self.retrain_set is None else self.retrain_set


def take(arrays: Arrays, index) -> Arrays:
    """Rows ``index`` (bool mask or int array) of every array.

    >>> take({"x": np.arange(4)}, np.array([True, False, True, False]))["x"].tolist()
    [0, 2]
    """
    return {k: v[index] for k, v in arrays.items()}


def concat(*parts: Arrays) -> Arrays:
    """Concatenates splits along the example axis."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def normalize_images(images: np.ndarray, dataset: str, stats=None) -> np.ndarray:
    """uint8 (or 0..16 for digits) images -> float32, standardised per channel.

    ``stats`` = ``(mean, std)`` per channel of the [0, 1]-scaled images (default: the dataset's
    entry in ``NORMALIZATION``). Float images (MNIST-1D) are already standardised: returned as is.

    >>> normalize_images(np.full((1, 1, 1, 1), 255, np.uint8), "x", ((0.5,), (0.5,))).item()
    1.0
    """
    if images.dtype.kind == "f":
        return images.astype(np.float32)
    scale = 16.0 if dataset == "digits" else 255.0
    mean, std = (np.asarray(v, np.float32) for v in (stats or NORMALIZATION[dataset]))
    return ((images.astype(np.float32) / scale) - mean) / std


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1] (image folders' normalisation,
    computed on the training split).

    >>> channel_stats(np.array([[[[0]], [[255]]]], np.uint8))
    ((0.5,), (0.5,))
    """
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    std = np.maximum(x.std(axis=0), 1e-6)
    return tuple(float(v) for v in x.mean(axis=0)), tuple(float(v) for v in std)


def _class_count(dataset: str) -> int:
    base, config = canonical_name(dataset)
    if base == FOLDER:
        return len(image_folder.scan(config).classes)
    return NUM_CLASSES[base]


def next_token_arrays(tokens: np.ndarray) -> Arrays:
    """``{"tokens", "label"}`` with the next-token shift, -1 at the last position.

    >>> next_token_arrays(np.array([[1, 2, 3]]))["label"].tolist()
    [[2, 3, -1]]
    """
    tokens = tokens.astype(np.int32)
    label = np.concatenate([tokens[:, 1:], np.full((len(tokens), 1), -1, np.int32)], axis=1)
    return {"tokens": tokens, "label": label}


def _counts(**splits) -> dict[str, int]:
    return {k: int(len(next(iter(v.values())))) for k, v in splits.items() if v is not None}


def _read_indices(path: str, n: int) -> np.ndarray:
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise ForgetSpecError(f"indices file {str(p)!r} does not exist.")
    if p.suffix == ".npy":
        idx = np.asarray(np.load(p)).ravel()
        bad = [] if np.issubdtype(idx.dtype, np.integer) else [str(v) for v in idx[:3]]
    else:
        words = p.read_text().replace(",", " ").split()
        bad = [w for w in words if not w.lstrip("+-").isdigit()][:3]
        idx = np.array([int(w) for w in words] if not bad else [], np.int64)
    if bad:
        raise ForgetSpecError(
            f"indices file {str(p)!r}: indices must be integers (.npy of an integer "
            f"dtype, or integers separated by commas or spaces); found {bad}.")
    idx = np.unique(idx.astype(np.int64))
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ForgetSpecError(f"indices in {str(p)!r} must lie in [0, {n - 1}].")
    return idx


def _image_splits(dataset: str, spec: ForgetSpec | None, seed: int, raw
                  ) -> tuple[Splits, dict[str, np.ndarray] | None]:
    """The splits, and for coarse-label specs the fine label of every held-out row (``test``,
    ``forget_test``): the strata of a validation carve."""
    base, config = canonical_name(dataset)
    kind = spec.kind if spec else None
    has_coarse = "coarse_label" in raw["train"]
    if kind in ("superclass", "subclass") and not has_coarse:
        if base == FOLDER:
            raise ForgetSpecError(f"Forget spec {spec.text!r} needs coarse labels: "
                             + image_folder.missing_coarse_message(image_folder.scan(config)))
        raise ForgetSpecError(
            f"Forget spec {spec.text!r} needs coarse labels (CIFAR-100, or an image folder with "
            f"{image_folder.COARSE_FILE}); {dataset!r} has none."
        )
    if kind == "chain":
        raise ForgetSpecError(f"Forget spec {spec.text!r} applies to the Markov data only.")
    coarse = kind in ("superclass", "subclass")
    if coarse:
        spec = resolve_coarse_spec(spec, dataset)
        fine_names, coarse_names, coarse_of_fine = hierarchy(dataset)
    label_key = "coarse_label" if coarse else "label"
    num_classes = len(coarse_names) if coarse else _class_count(dataset)
    stats = channel_stats(raw["train"]["image"]) if base == FOLDER else None

    def arrays(split):
        return {
            "image": normalize_images(raw[split]["image"], base, stats),
            "label": raw[split][label_key].astype(np.int32),
        }

    train, test = arrays("train"), arrays("test")
    fine_tr, fine_te = raw["train"]["label"], raw["test"]["label"]
    n = len(train["label"])
    rng = np.random.default_rng(seed)
    extra, fine = {}, None
    if kind is None:
        mask = np.zeros(n, bool)
    elif kind in ("class", "classes"):
        check_ids(spec, num_classes, "class")
        mask = np.isin(train["label"], spec.classes)
        in_test = np.isin(test["label"], spec.classes)
        extra["forget_test"], test = take(test, in_test), take(test, ~in_test)
    elif kind == "superclass":
        mask = train["label"] == spec.classes[0]
        in_test = test["label"] == spec.classes[0]
        extra["forget_test"], test = take(test, in_test), take(test, ~in_test)
        fine = {"forget_test": fine_te[in_test], "test": fine_te[~in_test]}
    elif kind == "subclass":
        k = spec.classes[0]
        siblings = np.flatnonzero(coarse_of_fine == coarse_of_fine[k])
        others = siblings[siblings != k]
        mask = fine_tr == k
        elsewhere = coarse_of_fine[fine_te] != coarse_of_fine[k]  # the other superclasses
        extra["forget_test"] = take(test, fine_te == k)
        extra["control_test"] = take(test, elsewhere)
        extra["retrain_set"] = take(train, ~mask)
        test = take(test, np.isin(fine_te, others))
        fine = {"forget_test": fine_te[fine_te == k], "test": fine_te[np.isin(fine_te, others)],
                "control_test": fine_te[elsewhere]}
    elif kind in ("random", "mislabeled"):
        chosen = rng.choice(n, size=int(round(spec.fraction * n)), replace=False)
        mask = np.zeros(n, bool)
        mask[chosen] = True
        if kind == "mislabeled":
            shift = rng.integers(1, num_classes, size=chosen.size)
            train["label"] = train["label"].copy()
            train["label"][chosen] = (train["label"][chosen] + shift) % num_classes
    elif kind == "indices":
        mask = np.zeros(n, bool)
        mask[_read_indices(spec.path, n)] = True
    else:  # pragma: no cover - parse_forget_spec rejects unknown kinds
        raise ForgetSpecError(f"Unsupported forget spec {spec.text!r}.")
    if spec is not None and (not mask.any() or mask.all()):  # nothing to forget, or to keep
        empty = "forget set empty" if not mask.any() else "retain set empty (forget less)"
        raise ForgetSpecError(f"Forget spec {spec.text!r} leaves the {empty} on {dataset!r}.")
    forget, retain = take(train, mask), take(train, ~mask)
    if kind == "subclass":
        retain = take(train, np.isin(fine_tr, others))
    if spec is not None and not len(test["label"]):  # no TA, no membership-attack non-members
        lacking = (f": its sibling classes {[fine_names[c] for c in others]} have no "
                   "test images" if kind == "subclass" else "")
        raise ForgetSpecError(f"Forget spec {spec.text!r} leaves the test split of {dataset!r} "
                              f"empty{lacking}; add test images.")
    info = {
        "dataset": dataset,
        **({"data_content": image_folder.scan(config).content} if base == FOLDER else {}),
        "forget_spec": spec.text if spec else None,
        "seed": seed,
        "label_key": label_key,
        "num_classes": num_classes,
        # per-channel (mean, std) of the standardisation of [0, 1] pixels (Boundary Shrink's ε);
        # None for inputs that are not pixels (MNIST-1D signals, Markov tokens)
        "normalization": ([list(v) for v in stats] if stats else
                          [list(v) for v in NORMALIZATION[base]] if base in NORMALIZATION
                          else None),
        "counts": _counts(train=train, forget=forget, retain=retain, test=test,
                          forget_test=extra.get("forget_test"),
                          control_test=extra.get("control_test"),
                          retrain_set=extra.get("retrain_set")),
    }
    return Splits(train=train, forget=forget, retain=retain, test=test, num_classes=num_classes,
                  input_shape=tuple(train["image"].shape[1:]), info=info, **extra), fine


def _markov_splits(dataset: str, spec: ForgetSpec | None, seed: int, raw, cfg) -> Splits:
    """``chain:K``: the model is trained on retain + chain K, which is forgotten; the other chain
    is an unseen control. ``chain:1,2`` (the paper's setting): trained on retain + forget1, the
    forget set is forget1 + forget2, forget2 (never seen) is also reported alone as ``control``."""
    spec = spec or parse_forget_spec("chain:1")
    if spec.kind != "chain":
        raise ForgetSpecError(
            f"Forget spec {spec.text!r} does not apply to Markov data; use 'chain:1', 'chain:2' "
            "or 'chain:1,2'."
        )
    check_ids(spec, 3, "chain")
    k = spec.classes[0]
    if k == 0:
        raise ForgetSpecError(
            f"Forget spec {spec.text!r}: chain 0 is the retain chain; use 1 or 2.")
    paper = spec.classes == (1, 2)
    other = 2 if paper else 3 - k
    tr, te = raw["train"], raw["test"]

    def chain(split, *chains):
        return next_token_arrays(split["tokens"][np.isin(split["chain"], chains)])

    retain, control = chain(tr, 0), chain(tr, other)
    test, control_test = chain(te, 0), chain(te, other)
    forget, forget_test = chain(tr, *spec.classes), chain(te, *spec.classes)
    train = concat(retain, chain(tr, k))
    transitions = {
        name: markov_lib.transition_matrix(c, cfg.num_states, cfg.leak)
        for name, c in (("retain", 0), ("forget", k), ("control", other))
    }
    if paper:  # the forget sequences come from two chains: no single true matrix
        del transitions["forget"]
    info = {
        "dataset": dataset,
        "forget_spec": spec.text,
        "trained_on": f"retain+chain{k}",  # chain:1 and chain:1,2 share original/Retrain models
        "seed": seed,
        "num_classes": cfg.num_states,
        "markov_config": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                          if f.name not in ("name", "description", "version", "release_notes",
                                            "supported_versions", "tags")},
        "counts": _counts(train=train, forget=forget, retain=retain, test=test,
                          forget_test=forget_test, control=control, control_test=control_test),
    }
    return Splits(train=train, forget=forget, retain=retain, test=test,
                  num_classes=cfg.num_states, input_shape=(cfg.length,), info=info,
                  forget_test=forget_test, control=control, control_test=control_test,
                  transition=transitions["retain"], transitions=transitions)


def make_splits(dataset: str, forget: str | ForgetSpec | None = None, *, seed: int = 0,
                data_dir=None, download: bool = True,
                validation: float | None = None) -> Splits:
    """Loads ``dataset`` and splits it for the forget spec (``None``: nothing forgotten;
    Markov data defaults to ``chain:1``). ``seed`` drives ``random:`` and ``mislabeled:``.

    ``validation`` (e.g. :data:`VALIDATION_FRACTION`): carve that fraction of the released test
    split into ``validation`` (and of the forgotten classes' test examples into
    ``forget_validation``), stratified by label — by fine label where the labels are coarse —
    and seeded by ``seed`` (:func:`carve_validation`); ``test`` keeps the rest. ``None``
    (default): no validation split, ``test`` is the released one.

    Raises:
      ValueError: bad spec (kind, range, fraction, empty forget set, wrong dataset, unknown
        superclass/subclass name, ``superclass:``/``subclass:`` on an image folder without
        ``coarse_labels.json``).
      DataDirError: missing/corrupt data, with a rebuild hint.
    """
    spec = parse_forget_spec(forget) if isinstance(forget, str) else forget
    base, config = canonical_name(dataset)
    coarse = spec is not None and spec.kind in ("superclass", "subclass")
    if coarse and base in (FOLDER, "cifar100"):
        # fail before a (possibly long) build or load: no map, unknown name, id out of range
        if base == FOLDER and not image_folder.scan(config).coarse:
            raise ForgetSpecError(f"Forget spec {spec.text!r} needs coarse labels: "
                             + image_folder.missing_coarse_message(image_folder.scan(config)))
        resolve_coarse_spec(spec, dataset)
    raw = load(dataset, data_dir=data_dir, download=download)
    if base == "markov":
        from imu_jax.data.sources import local_builder

        cfg = local_builder(dataset, data_dir).builder_config
        splits = _markov_splits(dataset, spec, seed, raw, cfg)
        return splits if validation is None else carve_validation(splits, validation, seed)
    splits, fine = _image_splits(dataset, spec, seed, raw)
    if validation is None:
        return splits
    return carve_validation(splits, validation, seed, strata=fine)
