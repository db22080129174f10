"""An image folder's label hierarchy file, ``coarse_labels.json``: fine class folder name ->
superclass name (read by :mod:`imu_jax.data.image_folder`), and the name helpers both use."""

from __future__ import annotations

import json
import unicodedata


def few(names, n: int = 5, *, count: bool = True) -> str:
    """The first ``n`` names, then (``count``) how many there are.

    >>> few(["a", "b", "c"], 2), few(["a", "b", "c"], 2, count=False), few(["a"], 2)
    ("['a', 'b', ...] (3 in all)", "['a', 'b', ...]", "['a']")
    """
    names = list(names)
    if len(names) <= n:
        return repr(names)
    return f"{repr(names[:n])[:-1]}, ...]" + (f" ({len(names)} in all)" if count else "")


def nfc(name: str) -> str:
    """A class or superclass name in Unicode NFC, so that a name typed on one system matches a
    folder or map written on another (macOS file systems give NFD: 'e' + combining accent).

    >>> nfc("cafe\u0301") == "caf\u00e9"
    True
    """
    return unicodedata.normalize("NFC", name)


class _Object(dict):
    """A JSON object read by :func:`_object`: ``twice`` lists the keys it gave more than once
    (before or after NFC); only the top level's matter (nested objects are bad values anyway)."""

    twice: list


def _object(pairs: list[tuple[str, object]]) -> dict:
    seen, twice = _Object(), []
    for key, value in pairs:
        if nfc(key) in seen:
            twice.append(key)
        seen[nfc(key)] = value
    seen.twice = twice
    return seen


def _hidden_characters(name: str) -> bool:
    """Control or invisible format characters (a line break, a zero-width space): a name with
    them prints on two lines or looks like another name."""
    return any(unicodedata.category(ch)[0] == "C" for ch in name)


def parse_coarse_map(data: bytes, classes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The superclass name of each of ``classes`` (NFC names) from the bytes of a
    ``coarse_labels.json``, checked; ``where`` names the file in errors.

    Names are compared in Unicode NFC; a UTF-8 byte-order mark is allowed; a fine class given
    twice, and a superclass name that is empty, starts or ends with white space (it could not
    be named on the command line) or holds a control or invisible character are errors.

    >>> parse_coarse_map(b'{"cat": "pets", "dog": "pets"}', ("cat", "dog"), "map")
    ('pets', 'pets')
    >>> parse_coarse_map(b'{"cat": "pets"}', ("cat", "dog"), "map")
    Traceback (most recent call last):
    ...
    ValueError: map is incomplete: no superclass for 1 of 2 fine classes: ['dog']; every class folder of train/ needs one.
    """
    try:
        table = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_object)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, a 5,000-digit number, ...
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        raise ValueError(f"{where} is not valid JSON ({reason}); it must map each fine class "
                         'folder name to its superclass name, e.g. {"apple": "fruit", ...}.'
                         ) from None
    if isinstance(table, _Object) and table.twice:
        raise ValueError(f"{where} gives a superclass twice for the fine classes "
                         f"{few(table.twice)}; give each class folder once.")
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a JSON object mapping each fine class folder name to "
                         f"its superclass name, e.g. {{\"apple\": \"fruit\", ...}}; it is a "
                         f"JSON {_JSON_TYPES.get(type(table), type(table).__name__)}.")
    bad = [k for k, v in table.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{where} must map each fine class folder name to a superclass name (a "
                         f"non-empty string); bad entries: {few(bad)}.")
    padded = sorted({v for v in table.values() if v != v.strip()})
    if padded:
        raise ValueError(f"{where}: superclass names must not start or end with white space "
                         f"(they could not be named in a forget spec): {few(padded)}.")
    hidden = sorted({ascii(v) for v in table.values() if _hidden_characters(v)})
    if hidden:
        raise ValueError(f"{where}: superclass names must not contain control or invisible "
                         f"characters (line breaks, zero-width spaces): {', '.join(hidden[:5])}.")
    unknown = sorted(set(table) - set(classes))
    missing = [c for c in classes if c not in table]
    if unknown:  # a misspelt class is both: name the folders it lacks too
        lacks = f"; it lacks the class folders {few(missing)}" if missing else ""
        raise ValueError(f"{where} names fine classes that are not class folders of train/: "
                         f"{few(unknown)}{lacks}; class folders: {few(classes)}.")
    if missing:
        raise ValueError(f"{where} is incomplete: no superclass for {len(missing)} of "
                         f"{len(classes)} fine classes: {few(missing, count=False)}; every class "
                         "folder of train/ needs one.")
    return tuple(nfc(table[c]) for c in classes)


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


__all__ = ["few", "nfc", "parse_coarse_map"]
