"""The label hierarchy of a dataset with coarse labels (CIFAR-100, or an image folder with
``coarse_labels.json``), and the naming of ``superclass:K`` / ``subclass:K`` against it.

Examples:
  >>> from imu_jax.data.forget_spec import parse_forget_spec
  >>> resolve_coarse_spec(parse_forget_spec("superclass:vehicles_2"), "cifar100").classes
  (19,)
  >>> fine, coarse, coarse_of = hierarchy("cifar100")
  >>> fine[69], coarse[coarse_of[69]]
  ('rocket', 'vehicles_2')
"""

from __future__ import annotations

import dataclasses
import difflib

import numpy as np

from imu_jax.data import image_folder
from imu_jax.data.coarse_map import nfc
from imu_jax.data.cifar100_labels import (CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE,
                                          CIFAR100_FINE_NAMES)
from imu_jax.data.forget_spec import ForgetSpec, ForgetSpecError, check_ids, is_number
from imu_jax.data.sources import FOLDER, canonical_name


def hierarchy(dataset: str) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """``(fine names, superclass names, superclass id of each fine class)`` of a dataset with
    coarse labels (CIFAR-100, or an image folder with ``coarse_labels.json``)."""
    base, config = canonical_name(dataset)
    if base == FOLDER:
        layout = image_folder.scan(config)
        return layout.classes, layout.superclasses, layout.coarse_of_fine
    return CIFAR100_FINE_NAMES, CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE


def _listing(names, limit: int = 20) -> str:
    """``names`` with their ids, the first ``limit`` of them, then how many there are."""
    shown = ", ".join(f"{i} {n}" for i, n in enumerate(names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def resolve_coarse_spec(spec: ForgetSpec, dataset: str) -> ForgetSpec:
    """``superclass:NAME`` / ``subclass:NAME`` with ``classes`` set to the named class's id on
    ``dataset``; ids are checked against the dataset's range. Other specs are returned as is.

    Names are compared in Unicode NFC. A number is an id, or the name of the one class whose
    name spells it when it is no id; a number that is an id and also spells another class's
    name ('1', '01') is refused as ambiguous (give the id of the one meant).

    Raises:
      ValueError: unknown name (the message lists the names), an id out of range, an ambiguous
        number, fewer than two superclasses, or a subclass that is the only fine class of its
        superclass.
    """
    if spec.kind not in ("superclass", "subclass"):
        return spec
    fine, coarse, coarse_of = hierarchy(dataset)
    if len(coarse) < 2:
        where = (" (give coarse_labels.json at least two superclass names)"
                 if canonical_name(dataset)[0] == FOLDER else "")
        raise ForgetSpecError(f"Forget spec {spec.text!r} needs at least two superclasses (its "
                              f"models are trained on them); {dataset!r} has {len(coarse)}: "
                              f"{_listing(coarse)}{where}.")
    names = coarse if spec.kind == "superclass" else fine
    what = "superclass" if spec.kind == "superclass" else "subclass (fine class)"
    listing = f"{spec.kind}es (id name): {_listing(names)}"
    normal = [nfc(n) for n in names]
    if spec.name is None:  # a number: an id, or the name of a class named by digits
        typed = spec.text.partition(":")[2].strip()
        named = [i for i, n in enumerate(normal)
                 if n == typed or (is_number(n) and int(n) == int(typed))]
        in_range = 0 <= spec.classes[0] < len(names)
        if in_range and any(i != spec.classes[0] for i in named):
            raise ForgetSpecError(
                f"Forget spec {spec.text!r} is ambiguous on {dataset!r}: {spec.kind} id "
                f"{spec.classes[0]} is {names[spec.classes[0]]!r}, and "
                f"{', '.join(repr(names[i]) for i in named)} has id(s) "
                f"{', '.join(map(str, named))}; give the id of the one you mean ({listing}).")
        if not in_range and len(named) == 1:
            spec = dataclasses.replace(spec, classes=(named[0],))
        check_ids(spec, len(names), spec.kind)
    elif nfc(spec.name) not in normal:
        close = difflib.get_close_matches(spec.name, names, n=3, cutoff=0.7)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        one = f"{spec.kind} takes one id or name; " if "," in spec.name else ""
        raise ForgetSpecError(f"Forget spec {spec.text!r}: {one}unknown {what} {spec.name!r} on "
                              f"{dataset!r}; {hint}{listing}.")
    else:
        spec = dataclasses.replace(spec, classes=(normal.index(nfc(spec.name)),))
    k = spec.classes[0]
    if spec.kind == "subclass" and np.sum(coarse_of == coarse_of[k]) < 2:
        raise ForgetSpecError(  # retain and test (its superclass's other fine classes) would be empty
            f"Forget spec {spec.text!r}: fine class {k} ({fine[k]}) is the only one of its "
            f"superclass {coarse[coarse_of[k]]!r} on {dataset!r}; subclass forgetting keeps that "
            "superclass's other fine classes as retain and test data.")
    return spec


__all__ = ["hierarchy", "resolve_coarse_spec"]
