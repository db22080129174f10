"""Parsing forget specifications (one parser for the CLI and the API).

A spec is ``KIND:ARG``:

=================  ==========================================================================
``class:K``        every training example of class K
``classes:K1,K2``  every training example of these classes
``random:F``       a seeded fraction F in (0, 1) of the training examples
``superclass:K``   coarse class K, an id or a name (``superclass:vehicles_2``): labels are the
                   coarse classes (CIFAR-100's 20, or an image folder's ``coarse_labels.json``)
``subclass:K``     fine class K, an id or a name (``subclass:rocket``): labels are coarse;
                   retain/test = the other fine classes of its superclass
``indices:FILE``   training indices listed in FILE (.npy, or integers separated by , or spaces)
``mislabeled:F``   a seeded fraction F of training examples relabelled to a random other class
``chain:K``        Markov data: forget chain K (1 = forget1, 2 = forget2), the model trained on it
``chain:1,2``      Markov, the paper's setting: forget forget1 + forget2, the model trained on
                   retain + forget1 only (forget2 never seen; reported apart as ``control``)
=================  ==========================================================================

Examples:
  >>> parse_forget_spec("classes:1,3")
  ForgetSpec(kind='classes', classes=(1, 3), fraction=None, path=None, text='classes:1,3',
             name=None)
  >>> parse_forget_spec("random:0.1").fraction
  0.1
  >>> parse_forget_spec("superclass:vehicles_2").name, parse_forget_spec("subclass:69").classes
  ('vehicles_2', (69,))
  >>> parse_forget_spec("colour:3")
  Traceback (most recent call last):
  ...
  imu_jax.data.forget_spec.ForgetSpecError: Unknown forget spec kind 'colour' in 'colour:3'; valid kinds: class, classes, ..., chain.
"""

from __future__ import annotations

import dataclasses

KINDS = ("class", "classes", "random", "superclass", "subclass", "indices", "mislabeled", "chain")
_INT_KINDS = ("class", "classes", "superclass", "subclass", "chain")
_FRACTION_KINDS = ("random", "mislabeled")
_NAMED_KINDS = ("superclass", "subclass")  # the argument may be a class name instead of an id


class ForgetSpecError(ValueError):
    """A forget spec that is malformed or does not fit the dataset; ``imu-jax`` names the flag
    (``flag``) in its one-line message."""

    flag = "--forget"


@dataclasses.dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget specification; ``classes`` also holds superclass/subclass/chain ids.

    ``name``: the class named instead of numbered (``superclass:NAME`` / ``subclass:NAME``;
    ``classes`` is then empty until :func:`imu_jax.data.splits.make_splits` resolves it against
    the dataset's class names).
    """

    kind: str
    classes: tuple[int, ...] = ()
    fraction: float | None = None
    path: str | None = None
    text: str = ""
    name: str | None = None


def parse_forget_spec(spec: str) -> ForgetSpec:
    """Parses ``KIND:ARG`` into a :class:`ForgetSpec`; raises ``ValueError`` with the valid kinds.

    >>> parse_forget_spec("random:1.5")
    Traceback (most recent call last):
    ...
    imu_jax.data.forget_spec.ForgetSpecError: Fraction in 'random:1.5' must lie strictly between 0 and 1, got 1.5.
    """
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ForgetSpecError(
            f"Unknown forget spec kind {kind!r} in {spec!r}; valid kinds: {', '.join(KINDS)}."
        )
    if not sep or not arg.strip():
        raise ForgetSpecError(f"Forget spec {spec!r} needs an argument, e.g. '{kind}:...'.")
    arg = arg.strip()
    if kind in _NAMED_KINDS and not is_number(arg):
        return ForgetSpec(kind, text=spec, name=arg)  # one name, commas and all
    if kind in _INT_KINDS:
        try:
            ids = tuple(int(a) for a in arg.split(",") if a.strip())
        except ValueError:
            raise ForgetSpecError(f"Forget spec {spec!r}: expected integer ids, got {arg!r}.") from None
        if kind == "chain" and ids == (1, 2):
            return ForgetSpec(kind, classes=ids, text=spec)
        if kind != "classes" and len(ids) != 1:
            raise ForgetSpecError(f"Forget spec {spec!r}: {kind} takes exactly one id.")
        if not ids:
            raise ForgetSpecError(f"Forget spec {spec!r}: no class ids given.")
        return ForgetSpec(kind, classes=ids, text=spec)
    if kind in _FRACTION_KINDS:
        try:
            fraction = float(arg)
        except ValueError:
            raise ForgetSpecError(f"Forget spec {spec!r}: expected a fraction, got {arg!r}.") from None
        if not 0.0 < fraction < 1.0:
            raise ForgetSpecError(
                f"Fraction in {spec!r} must lie strictly between 0 and 1, got {fraction}."
            )
        return ForgetSpec(kind, fraction=fraction, text=spec)
    return ForgetSpec(kind, path=arg, text=spec)


def is_number(text: str) -> bool:
    """An id as typed: ASCII digits with an optional sign ('²' or '١' are names, not ids).

    >>> is_number("+12"), is_number("01"), is_number("\u00b2"), is_number("1,2")
    (True, True, False, False)
    """
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isascii() and digits.isdigit()


def check_ids(spec: ForgetSpec, upper: int, what: str) -> None:
    """Raises :class:`ForgetSpecError` when an id of ``spec`` is outside [0, upper)."""
    bad = [k for k in spec.classes if not 0 <= k < upper]
    if bad:
        raise ForgetSpecError(
            f"Forget spec {spec.text!r}: {what} {bad} out of range [0, {upper - 1}].")
