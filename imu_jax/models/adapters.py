"""Your own Flax model in the protocol :func:`imu_jax.unlearn` uses (:func:`from_nnx`,
:func:`from_linen`).

The protocol (``imu_jax.unlearning.loop``): a model object with

* ``apply(params, state, x, *, train=False, rng=None) -> (logits, new_state)``: pure and
  jit-able; ``rng`` (a ``jax.random`` key) drives Dropout in train mode;
* ``head_input(params, state, x, layer) -> [N, D]`` (or ``[N, T, D]``): the input of the layer at
  the "/"-joined parameter path ``layer`` in inference mode, which lets influence use the dense
  softmax closed form on whatever layer is the head (``features(params, state, x)``, the input of
  ``head``, is the older form the library's own models have). The adapters also have
  ``head_input_and_logits(params, state, x, layer)``, both from one pass: the closed form then
  checks its condition on every example at no extra cost.

``x`` is what the data holds besides the labels: one array, or a dict when there are several
(``{"image", "mask", "label"}`` gives the model ``{"image": ..., "mask": ...}``).

How each adapter works:

* **NNX** (:func:`from_nnx`): ``nnx.split`` into params (``nnx.Param``), RNG streams
  (``nnx.RngState``, kept inside the adapter) and the rest (BatchNorm statistics: ``state``).
  ``apply`` merges a fresh copy, sets the mode with ``.train()``/``.eval()`` (and passes
  ``train=``/``deterministic=`` when ``__call__`` takes one), reseeds every RNG stream from
  ``rng``, and calls it. ``head_input`` wraps the layer in the copy with a recorder of its input.
* **Linen** (:func:`from_linen`): ``variables["params"]`` are the params, the other collections
  the state (mutable in train mode); ``rng`` becomes ``rngs={"dropout": ...}``. ``head_input``
  records the layer's input with ``flax.linen.intercept_methods``.

Neither adapter touches the module it was made from. Adapters compare by value (NNX: the graph
definition, the mode, the class name and the RNG streams' values; Linen: the module, which Linen
compares by its fields), so a second ``unlearn(module, ...)`` of the same architecture reuses the
compiled steps and closed form of the first instead of compiling them again.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> class Net(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.body = nnx.Linear(4, 8, rngs=rngs)
  ...     self.classifier = nnx.Linear(8, 3, rngs=rngs)
  ...   def __call__(self, x):
  ...     return self.classifier(jax.nn.relu(self.body(x)))
  >>> model, params, state = from_nnx(Net(nnx.Rngs(0)))
  >>> logits, state = model.apply(params, state, jnp.ones((2, 4)))
  >>> logits.shape, model.head_input(params, state, jnp.ones((2, 4)), "classifier").shape
  ((2, 3), (2, 8))
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, Callable, Mapping

import jax
from flax import nnx

from imu_jax.models.functional import _pure, reseed

PyTree = Any

TRAIN_KWARGS = ("train", "training", "is_training")
INVERTED_KWARGS = ("deterministic", "inference", "use_running_average")
_STATE = nnx.Not(nnx.Any(nnx.Param, nnx.RngState))


def _mode(fn: Callable, train_kwarg: str | None) -> tuple[str, bool] | None:
    """``(keyword, inverted)`` that switches ``fn`` between train and inference mode, or None."""
    if train_kwarg is None:
        return None
    if train_kwarg != "auto":
        return train_kwarg, train_kwarg in INVERTED_KWARGS
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    for name in TRAIN_KWARGS + INVERTED_KWARGS:
        if name in names:
            return name, name in INVERTED_KWARGS
    return None


def _mode_kwargs(mode: tuple[str, bool] | None, train: bool) -> dict:
    return {} if mode is None else {mode[0]: (not train) if mode[1] else train}


def _recorded(captured: list, layer: str) -> jax.Array:
    if not captured:
        raise ValueError(f"the layer {layer!r} was not called on the model's forward pass.")
    return captured[-1]


def _child(node, name: str):
    if isinstance(node, (list, tuple, nnx.List)) or (
            not isinstance(node, nnx.Module) and hasattr(node, "__getitem__")):
        return node[int(name) if isinstance(node, (list, tuple, nnx.List)) else name]
    return getattr(node, name)


def _set_child(node, name: str, value) -> None:
    if isinstance(node, (list, nnx.List)):
        node[int(name)] = value
    elif not isinstance(node, nnx.Module) and hasattr(node, "__setitem__"):
        node[name] = value
    else:
        setattr(node, name, value)


@dataclasses.dataclass(frozen=True)
class NNXModel:
    """An ``nnx.Module`` as the protocol (module docstring); made by :func:`from_nnx`.

    Equal (and equally hashed) when the graph definition, mode, name and the RNG streams' values
    are: compiled functions that take the model as a static argument are shared by equal
    adapters, which differ in nothing those functions read (the RNG streams are constants in
    them, hence part of the comparison, through ``rng_digest``).

    Attributes:
      graphdef: the module's static structure.
      rngs: its RNG streams (pure dict; reseeded from ``apply``'s ``rng`` in train mode).
      mode: ``(keyword, inverted)`` passed to ``__call__`` for the mode, or None.
      name: the module's class name.
      rng_digest: the RNG streams' values as bytes (:func:`_digest`), compared instead of
        ``rngs``.
    """

    graphdef: Any
    rngs: dict = dataclasses.field(compare=False)
    mode: tuple[str, bool] | None = None
    name: str = ""
    rng_digest: bytes = b""

    @property
    def config(self) -> dict:
        return {"name": f"nnx:{self.name}"}

    def module(self, params: PyTree, state: PyTree) -> nnx.Module:
        """A new ``nnx.Module`` holding ``params`` and ``state`` (and the original RNG streams)."""
        return nnx.merge(self.graphdef, params, self.rngs, state)

    def _run(self, params, state, x, train, rng, layer=None):
        module = self.module(params, state)
        module.train() if train else module.eval()
        if rng is not None:
            reseed(module, rng)
        captured = []
        if layer is not None:
            *parents, last = layer.split("/")
            parent = module
            for name in parents:
                parent = _child(parent, name)
            inner = _child(parent, last)

            class _Recorder(nnx.Module):
                def __init__(self, wrapped):
                    self.wrapped = wrapped

                def __call__(self, h, *args, **kwargs):
                    captured.append(h)
                    return self.wrapped(h, *args, **kwargs)

            _set_child(parent, last, _Recorder(inner))
        logits = module(x, **_mode_kwargs(self.mode, train))
        return module, logits, captured

    def apply(self, params: PyTree, state: PyTree, x: PyTree, *, train: bool = False,
              rng: jax.Array | None = None):
        """``(logits, new_state)``; ``train=True`` updates BatchNorm statistics and, with
        ``rng``, draws Dropout masks from it."""
        module, logits, _ = self._run(params, state, x, train, rng)
        return logits, _pure(nnx.state(module, _STATE))

    def head_input(self, params: PyTree, state: PyTree, x: PyTree, layer: str) -> jax.Array:
        """The input of the submodule at path ``layer`` (inference mode)."""
        return self.head_input_and_logits(params, state, x, layer)[0]

    def head_input_and_logits(self, params: PyTree, state: PyTree, x: PyTree, layer: str
                              ) -> tuple[jax.Array, jax.Array]:
        """``(input of the submodule at path layer, logits)`` from one inference-mode pass."""
        _, logits, captured = self._run(params, state, x, False, None, layer)
        return _recorded(captured, layer), logits


@dataclasses.dataclass(frozen=True)
class LinenModel:
    """A Linen module as the protocol (module docstring); made by :func:`from_linen`. Equal
    adapters (the same module fields, mode and streams) share compiled functions.

    Attributes:
      module: the ``flax.linen.Module``.
      mode: ``(keyword, inverted)`` passed to ``__call__`` for the mode, or None.
      rng_streams: names of the RNG streams seeded from ``apply``'s ``rng`` (``"dropout"``).
    """

    module: Any
    mode: tuple[str, bool] | None
    rng_streams: tuple[str, ...]

    @property
    def config(self) -> dict:
        return {"name": f"linen:{type(self.module).__name__}"}

    def variables(self, params: PyTree, state: PyTree) -> dict:
        """The Linen variables ``{"params": params, **state}``."""
        return {"params": params, **state}

    def apply(self, params: PyTree, state: PyTree, x: PyTree, *, train: bool = False,
              rng: jax.Array | None = None):
        """``(logits, new_state)``; in train mode the state collections are mutable and the
        ``rng_streams`` are drawn from ``rng``."""
        kwargs = _mode_kwargs(self.mode, train)
        if rng is not None:
            kwargs["rngs"] = {name: jax.random.fold_in(rng, i)
                              for i, name in enumerate(self.rng_streams)}
        variables = self.variables(params, state)
        if train and state:
            logits, mutated = self.module.apply(variables, x, mutable=list(state), **kwargs)
            return logits, {**state, **mutated}
        return self.module.apply(variables, x, **kwargs), state

    def head_input(self, params: PyTree, state: PyTree, x: PyTree, layer: str) -> jax.Array:
        """The input of the submodule at path ``layer`` (inference mode), recorded with
        ``flax.linen.intercept_methods``."""
        return self.head_input_and_logits(params, state, x, layer)[0]

    def head_input_and_logits(self, params: PyTree, state: PyTree, x: PyTree, layer: str
                              ) -> tuple[jax.Array, jax.Array]:
        """``(input of the submodule at path layer, logits)`` from one inference-mode pass."""
        import flax.linen as nn

        path, captured = tuple(layer.split("/")), []

        def record(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and tuple(context.module.path) == path and args:
                captured.append(args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            logits = self.module.apply(self.variables(params, state), x,
                                       **_mode_kwargs(self.mode, False))
        return _recorded(captured, layer), logits


def from_nnx(module: nnx.Module, *, train_kwarg: str | None = "auto"
             ) -> tuple[NNXModel, dict, dict]:
    """``(model, params, state)`` of an ``nnx.Module``, for :func:`imu_jax.unlearn`.

    Args:
      module: any NNX module whose ``__call__(x)`` returns logits (``x``: one array, or a dict
        when the data has several inputs).
      train_kwarg: the ``__call__`` keyword that sets the mode: ``"auto"`` finds ``train``,
        ``training``, ``is_training`` or (inverted) ``deterministic``, ``inference``,
        ``use_running_average`` in its signature; a name; or None (``.train()``/``.eval()``
        alone, which the adapter always calls).

    Returns:
      ``(model, params, state)``: the protocol object, the ``nnx.Param`` values and the other
      variables (BatchNorm statistics) as pure dicts. ``model.module(params, state)`` gives the
      module back.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model, params, state = from_nnx(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))
      >>> sorted(params), state
      (['bias', 'kernel'], {})
      >>> model.module(params, state)(jnp.ones((1, 4))).shape
      (1, 3)
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"from_nnx needs an nnx.Module, got {type(module).__name__}.")
    graphdef, params, rngs, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
    rngs = _pure(rngs)
    return (NNXModel(graphdef, rngs, _mode(type(module).__call__, train_kwarg),
                     type(module).__name__, _digest(rngs)), _pure(params), _pure(rest))


def _digest(tree) -> bytes:
    """The paths, dtypes, shapes and bytes of ``tree``'s leaves (typed PRNG keys by their key
    data): equal for equal values.

    >>> import jax.numpy as jnp
    >>> _digest({"a": jnp.arange(2)}) == _digest({"a": jnp.arange(2)}) != _digest({"a": jnp.ones(2)})
    True
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        value = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.digest()


def from_linen(module, variables: Mapping[str, PyTree], *, train_kwarg: str | None = "auto",
               rng_streams: tuple[str, ...] = ("dropout",)) -> tuple[LinenModel, PyTree, dict]:
    """``(model, params, state)`` of a Linen module and its variables, for :func:`imu_jax.unlearn`.

    Args:
      module: a ``flax.linen.Module`` whose ``__call__(x, ...)`` returns logits.
      variables: its variables (``module.init(...)`` or trained): ``{"params": ..., ...}``.
      train_kwarg: as in :func:`from_nnx` (Linen modules take the mode as a call argument).
      rng_streams: RNG names seeded in train mode (``self.make_rng`` names; Dropout's is
        ``"dropout"``).

    Returns:
      ``(model, params, state)``: ``variables["params"]`` and the other collections
      (``batch_stats``); ``model.variables(params, state)`` gives the variables back.

    Examples:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> net = nn.Dense(3)
      >>> model, params, state = from_linen(net, net.init(jax.random.key(0), jnp.ones((1, 4))))
      >>> model.apply(params, state, jnp.ones((2, 4)))[0].shape
      (2, 3)
    """
    if not (isinstance(variables, Mapping) and "params" in variables):
        got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(f"from_linen needs the module's variables {{'params': ..., ...}} (from "
                         f"module.init or training); got {got}.")
    state = {k: v for k, v in variables.items() if k != "params"}
    return (LinenModel(module, _mode(type(module).__call__, train_kwarg), tuple(rng_streams)),
            variables["params"], state)


def _linen_module(obj) -> bool:
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(obj, linen.Module)


def is_user_module(obj) -> bool:
    """True for an ``nnx.Module``, a Linen module, or a ``(linen_module, variables)`` pair:
    the forms :func:`imu_jax.unlearn` takes without separate ``params``.

    >>> from flax import nnx
    >>> is_user_module(nnx.Linear(2, 2, rngs=nnx.Rngs(0))), is_user_module(object())
    (True, False)
    """
    return (isinstance(obj, nnx.Module) or _linen_module(obj)
            or (isinstance(obj, tuple) and len(obj) == 2 and _linen_module(obj[0])))


def resolve(model, params: PyTree = None, state: PyTree = None):
    """``(protocol_model, params, state, hand_back)`` for what a user passed as the model.

    An ``nnx.Module`` or ``(linen_module, variables)`` carries its params and state (``params``
    and ``state`` must then be None); ``hand_back(params, state)`` turns results into a new
    module / new variables. A protocol object is returned as it is, ``hand_back`` giving the
    params back unchanged.

    >>> from flax import nnx
    >>> model, params, state, hand_back = resolve(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    >>> type(model).__name__, type(hand_back(params, state)).__name__
    ('NNXModel', 'Linear')
    """
    if is_user_module(model):
        if params is not None or state:
            raise TypeError(
                "an nnx.Module or (linen module, variables) pair carries its own parameters and "
                "state: call unlearn(module, forget, config), or split it first with "
                "imu.from_nnx(module) / imu.from_linen(module, variables) and pass "
                "unlearn(model, params, forget, config, state=state).")
        if isinstance(model, nnx.Module):
            adapter, params, state = from_nnx(model)
            return adapter, params, state, adapter.module
        if _linen_module(model):
            raise TypeError(
                f"a Linen module ({type(model).__name__}) holds no parameters: pass it with its "
                "variables, unlearn((module, variables), forget, config), or use "
                "imu.from_linen(module, variables).")
        adapter, params, state = from_linen(*model)
        return adapter, params, state, adapter.variables
    if not callable(getattr(model, "apply", None)):
        raise TypeError(
            f"the model ({type(model).__name__}) has no apply(params, state, x, *, train) "
            "method: pass an nnx.Module, a (linen module, variables) pair, or an object with "
            "apply (imu.from_nnx / imu.from_linen make one).")
    return model, params, {} if state is None else state, lambda p, s: p
