"""Bring your own model (issue 25): user NNX and Linen models defined here (not imu_jax.models),
heads not named ``head``, BatchNorm + Dropout in train mode, several inputs, the default head's
ambiguity error, and the report's head paths and influence path with its reason."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import imu_jax as imu
from imu_jax.models import adapters
from imu_jax.unlearning import losses, selection

import tiny_models


class NNXNet(nnx.Module):
    """Dense → ReLU → Dropout → BatchNorm → ``classifier`` (the head, not named head)."""

    def __init__(self, rngs: nnx.Rngs, dim: int = 8, width: int = 16, classes: int = 4):
        self.body = nnx.Linear(dim, width, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.classifier = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        return self.classifier(self.bn(self.drop(jax.nn.relu(self.body(x)))))


class LinenNet(nn.Module):
    """Dense_0 → Dropout → BatchNorm → Dense_1 → ``Dense_2`` (the head); mode: ``train``."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(16)(x))
        x = nn.Dropout(0.3, deterministic=not train)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(4)(x)


class MaskedNet(nnx.Module):
    """Two inputs: ``{"image", "mask"}``; the mask zeroes input features."""

    def __init__(self, rngs: nnx.Rngs):
        self.body = nnx.Linear(8, 16, rngs=rngs)
        self.classifier = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, inputs):
        return self.classifier(jax.nn.relu(self.body(inputs["image"] * inputs["mask"])))


class TwoHeads(nnx.Module):
    """``pre_head`` and ``head``: the old regex default ``"head"`` selected both."""

    def __init__(self, rngs: nnx.Rngs):
        self.pre_head = nnx.Linear(8, 16, rngs=rngs)
        self.head = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.head(jax.nn.relu(self.pre_head(x)))


class Tempered(NNXNet):
    """The classifier's output is scaled: it is not the logits, so no closed form."""

    def __call__(self, x):
        return 2.0 * super().__call__(x)


def _train(model, params, state, data, steps=150):
    tx = optax.adam(0.03)

    @jax.jit
    def step(params, opt_state):
        def loss(p):
            logits, _ = model.apply(p, state, data["image"], train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, data["label"]).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    return params


@functools.lru_cache(maxsize=None)
def _data():
    data = tiny_models.blobs()
    forget, retain = tiny_models.split_by_class(data, 3)
    return data, forget, retain


@pytest.fixture(scope="module")
def nnx_net():
    data, _, _ = _data()
    model, params, state = imu.from_nnx(NNXNet(nnx.Rngs(0)))
    return model.module(_train(model, params, state, data), state)


@pytest.fixture(scope="module")
def linen_net():
    data, _, _ = _data()
    net = LinenNet()
    model, params, state = imu.from_linen(net, net.init(jax.random.key(0), data["image"][:2]))
    return net, model.variables(_train(model, params, state, data), state)


def _accuracy(model, params, state, split) -> float:
    logits, _ = model.apply(params, state, split["image"])
    return float(np.mean(np.argmax(np.asarray(logits), -1) == split["label"]))


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


CONFIG = dict(epochs=5, batch_size=8, learning_rate=0.1)


def test_an_nnx_module_is_unlearned_directly_and_a_new_module_comes_back(nnx_net):
    _, forget, _ = _data()
    before = nnx.to_pure_dict(nnx.state(nnx_net, nnx.Param))
    new, report = imu.unlearn(nnx_net, forget, imu.UnlearnConfig(head="^classifier/", **CONFIG))
    assert isinstance(new, NNXNet) and new is not nnx_net
    after = nnx.to_pure_dict(nnx.state(new, nnx.Param))
    assert _equal(nnx.to_pure_dict(nnx.state(nnx_net, nnx.Param)), before)  # untouched
    assert _equal(after["body"], before["body"]) and _equal(after["bn"], before["bn"])
    assert not _equal(after["classifier"], before["classifier"])
    assert report.head_paths == ["classifier/bias", "classifier/kernel"]
    assert report.closed_form is True
    assert report.closed_form_reason == ("closed form: dense softmax top layer 'classifier' "
                                         "(kernel [16, 4], bias [4])")
    model, params, state = imu.from_nnx(new)
    old_model, old_params, old_state = imu.from_nnx(nnx_net)
    assert _accuracy(old_model, old_params, old_state, forget) == 1.0
    assert _accuracy(model, params, state, forget) < 0.5
    assert report.to_dict()["closed_form_reason"] == report.closed_form_reason


@pytest.mark.parametrize("which", ["nnx", "linen"])
def test_a_second_unlearn_of_an_equal_module_compiles_nothing_and_gives_the_same(
        which, nnx_net, linen_net, caplog):
    """The adapters compare by value, so the compiled step and closed form of the first call
    serve the second (a fresh adapter each call used to recompile both)."""
    _, forget, _ = _data()
    head = "^classifier/" if which == "nnx" else "^Dense_2/"
    config = imu.UnlearnConfig(head=head, **CONFIG)
    user = nnx_net if which == "nnx" else linen_net
    again = nnx.clone(nnx_net) if which == "nnx" else (LinenNet(), linen_net[1])  # equal copies
    first, _ = imu.unlearn(user, forget, config)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        second, _ = imu.unlearn(again, forget, config)
    compiled = [r.getMessage() for r in caplog.records if "Compiling jit(" in r.getMessage()]
    assert not [m for m in compiled if "jit(step)" in m or "jit(program)" in m], compiled
    if which == "nnx":  # a new module; Linen: new variables
        first, second = nnx.state(first, nnx.Param), nnx.state(second, nnx.Param)
    assert _equal(first, second)
    model = imu.from_nnx(nnx_net)[0] if which == "nnx" else imu.from_linen(*linen_net)[0]
    assert model == (imu.from_nnx(again)[0] if which == "nnx" else imu.from_linen(*again)[0])
    if which == "nnx":  # other RNG values are other constants of the programs: not equal
        assert imu.from_nnx(NNXNet(nnx.Rngs(1)))[0] != imu.from_nnx(NNXNet(nnx.Rngs(0)))[0]


def test_a_linen_module_with_its_variables_gives_new_variables(linen_net):
    net, variables = linen_net
    _, forget, _ = _data()
    new, report = imu.unlearn((net, variables), forget, imu.UnlearnConfig(head="^Dense_2/",
                                                                          **CONFIG))
    assert set(new) == {"params", "batch_stats"}
    for layer in ("Dense_0", "Dense_1", "BatchNorm_0"):
        assert _equal(new["params"][layer], variables["params"][layer])
    assert not _equal(new["params"]["Dense_2"], variables["params"]["Dense_2"])
    assert _equal(new["batch_stats"], variables["batch_stats"])  # update_batch_stats is off
    assert report.head_paths == ["Dense_2/bias", "Dense_2/kernel"]
    assert report.closed_form_reason == ("closed form: dense softmax top layer 'Dense_2' "
                                         "(kernel [16, 4], bias [4])")
    model, params, state = imu.from_linen(net, new)
    assert _accuracy(model, params, state, forget) < 0.5


@pytest.mark.parametrize("which", ["nnx", "linen"])
def test_closed_form_equals_the_generic_path(which, nnx_net, linen_net):
    _, forget, _ = _data()
    user_model, head = ((nnx_net, "^classifier/") if which == "nnx"
                        else (linen_net, "^Dense_2/"))
    x, y = forget["image"], forget["label"]
    closed = selection.forget_influence(user_model, None, None, x, y,
                                        imu.UnlearnConfig(head=head))
    generic = selection.forget_influence(user_model, None, None, x, y,
                                         imu.UnlearnConfig(head=head, closed_form="never"))
    assert closed.closed_form and not generic.closed_form
    assert generic.reason == "generic: closed_form='never'"
    assert np.any(generic.scores < 0) and np.max(np.abs(generic.scores)) > 1e-4
    np.testing.assert_allclose(closed.scores, generic.scores, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("which", ["nnx", "linen"])
def test_batchnorm_and_dropout_in_train_mode_get_a_seeded_rng(which, nnx_net, linen_net):
    """update_batch_stats runs the train-mode forward pass: Dropout draws from a key derived
    from ``seed`` (same seed, same statistics; another seed, other masks, other statistics)."""
    _, forget, _ = _data()
    if which == "nnx":
        user_model, head = nnx_net, "^classifier/"
        stats = lambda s: s["bn"]  # noqa: E731
        _, _, initial = imu.from_nnx(nnx_net)
    else:
        user_model, head = linen_net, "^Dense_2/"
        stats = lambda s: s["batch_stats"]["BatchNorm_0"]  # noqa: E731
        initial = {"batch_stats": linen_net[1]["batch_stats"]}
    config = imu.UnlearnConfig(head=head, epochs=1, batch_size=8, update_batch_stats=True)
    states = [imu.unlearn(user_model, forget, config, seed=seed)[1].state for seed in (0, 0, 1)]
    assert not np.allclose(stats(states[0])["mean"], stats(initial)["mean"])
    assert _equal(states[0], states[1])
    assert not np.allclose(stats(states[0])["mean"], stats(states[2])["mean"])
    if which == "nnx":  # the RNG streams stay inside the adapter: the state is BatchNorm's
        assert sorted(states[0]) == ["bn"]


def test_every_input_key_reaches_the_model():
    _, forget, _ = _data()
    rng = np.random.default_rng(0)
    net = MaskedNet(nnx.Rngs(1))
    ones = {**forget, "mask": np.ones_like(forget["image"])}
    masked = {**forget, "mask": (rng.random(forget["image"].shape) > 0.5).astype(np.float32)}
    config = imu.UnlearnConfig(head="^classifier/", epochs=1, batch_size=8)
    new_ones, report = imu.unlearn(net, ones, config)
    new_masked, _ = imu.unlearn(net, masked, config)
    assert report.closed_form is True
    kernel = lambda m: np.asarray(m.classifier.kernel[...])  # noqa: E731
    assert not np.allclose(kernel(new_ones), kernel(new_masked))
    x, y = losses.input_and_labels(masked)
    assert sorted(x) == ["image", "mask"]
    scores = selection.forget_influence(net, None, None, x, y, config).scores
    plain = selection.forget_influence(net, None, None, {"image": x["image"],
                                                         "mask": np.ones_like(x["mask"])}, y,
                                       config).scores
    assert not np.allclose(scores, plain)
    generic = selection.forget_influence(net, None, None, x, y, imu.UnlearnConfig(
        head="^classifier/", closed_form="never")).scores
    np.testing.assert_allclose(scores, generic, rtol=1e-5, atol=1e-8)


def test_an_input_the_model_does_not_take_is_a_loud_error(nnx_net):
    _, forget, _ = _data()
    with pytest.raises(ValueError, match=r"forget: inputs \{'image': float32\[8\], 'group': int64"
                                         r"\[\]\} per example do not fit the model \(the data has "
                                         r"2 input keys, so the model receives them as one dict "
                                         r"\{'image', 'group'\}"):
        imu.unlearn(nnx_net, {**forget, "group": np.arange(len(forget["label"]))},
                    imu.UnlearnConfig(head="^classifier/"))


def test_the_ambiguous_default_head_is_an_error_listing_the_candidates():
    _, forget, _ = _data()
    net = TwoHeads(nnx.Rngs(0))
    with pytest.raises(ValueError) as err:
        imu.unlearn(net, forget)
    message = str(err.value)
    assert "head selector 'head' is ambiguous: it matches 2 layers, head, pre_head" in message
    assert "  head: head/bias, head/kernel\n" in message
    assert "  pre_head: pre_head/bias, pre_head/kernel\n" in message
    assert "UnlearnConfig(head='^head/')" in message and "predicate" in message
    for head in ("^head/", lambda path, leaf: path.startswith("head/")):
        _, report = imu.unlearn(net, forget, imu.UnlearnConfig(head=head, epochs=1))
        assert report.head_paths == ["head/bias", "head/kernel"]
        assert report.closed_form_reason.startswith("closed form: dense softmax top layer 'head'")


def test_a_default_head_that_matches_nothing_suggests_the_dense_layer_of_the_logits(linen_net):
    _, forget, _ = _data()
    with pytest.raises(ValueError, match=r"head selector 'head' matches no parameter") as err:
        imu.unlearn(linen_net, forget)
    message = str(err.value)
    assert "  Dense_2: kernel [16, 4], bias [4]\n" in message
    assert "  Dense_0: kernel [8, 16], bias [16]" in message
    assert "UnlearnConfig(head='^Dense_2/')" in message


def _core_and_loop_errors(user_model, selector):
    """The error of the core's head check and of ``imu.unlearn`` for one selector."""
    _, forget, _ = _data()
    _, params, _, _ = adapters.resolve(user_model)
    errors = []
    for call in (lambda: imu.check_head_selector(params, selector),
                 lambda: imu.unlearn(user_model, forget, imu.UnlearnConfig(head=selector,
                                                                           epochs=1)),
                 lambda: selection.forget_influence(user_model, None, None, forget["image"],
                                                    forget["label"],
                                                    imu.UnlearnConfig(head=selector))):
        with pytest.raises(ValueError) as err:
            call()
        errors.append((type(err.value), str(err.value)))
    return errors


class LinenTwoHeads(nn.Module):
    """Linen layers named ``pre_head`` and ``head``."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(4, name="head")(nn.relu(nn.Dense(16, name="pre_head")(x)))


@pytest.mark.parametrize("which", ["nnx", "linen"])
def test_one_head_check_gives_the_same_error_in_the_core_and_in_unlearn(which, linen_net):
    """The default ``"head"`` picking ``head`` and ``pre_head``, and a selector matching nothing:
    the core's check, ``imu.unlearn`` and the influence step raise the same class and text."""
    if which == "nnx":
        ambiguous, plain = TwoHeads(nnx.Rngs(0)), NNXNet(nnx.Rngs(0))
    else:
        two = LinenTwoHeads()
        ambiguous = (two, two.init(jax.random.key(0), jnp.ones((1, 8))))
        plain = linen_net
    errors = _core_and_loop_errors(ambiguous, "head")
    assert len(set(errors)) == 1
    kind, message = errors[0]
    assert kind is ValueError
    assert message.startswith("head selector 'head' is ambiguous: it matches 2 layers, head, "
                              "pre_head")
    assert "imu_jax.path_prefix('head')" in message
    errors = _core_and_loop_errors(plain, "^fc/")
    assert len(set(errors)) == 1
    message = errors[0][1]
    assert message.startswith("head selector '^fc/' matches no parameter. Its parameter paths")
    top = "classifier" if which == "nnx" else "Dense_2"
    assert f"  {top}: kernel [16, 4], bias [4]\n" in message
    assert f"imu_jax.path_prefix('{top}')" in message
    # the core's selectors (split_head, head_mask) fail with the same text
    _, params, _, _ = adapters.resolve(plain)
    with pytest.raises(ValueError) as err:
        imu.split_head(params, "^fc/")
    assert str(err.value) == message
    # an exact selector passes everywhere
    imu.check_head_selector(params, imu.path_prefix(top))


def test_the_report_says_why_the_generic_path_ran(nnx_net, linen_net):
    _, forget, _ = _data()
    _, report = imu.unlearn(linen_net, forget,
                            imu.UnlearnConfig(head="^Dense_[12]/", epochs=1, batch_size=8))
    assert report.closed_form is False
    assert report.head_paths == ["Dense_1/bias", "Dense_1/kernel", "Dense_2/bias",
                                 "Dense_2/kernel"]
    assert report.closed_form_reason == ("generic: the head has 2 layers (Dense_1, Dense_2); the "
                                         "closed form needs one dense layer")
    tempered = Tempered(nnx.Rngs(0))
    nnx.update(tempered, nnx.state(nnx_net))
    _, report = imu.unlearn(tempered, forget, imu.UnlearnConfig(head="^classifier/", epochs=1))
    assert report.closed_form is False
    assert "generic: the input of 'classifier' times its kernel plus bias is not the model's " \
           "logits" in report.closed_form_reason
    _, report = imu.unlearn(nnx_net, forget, imu.UnlearnConfig(head="^classifier/", epochs=1,
                                                               weighting="uniform"))
    assert report.closed_form is None and "weighting='uniform'" in report.closed_form_reason


def test_a_protocol_model_without_head_input_runs_the_generic_path_and_says_so():
    class Linear:
        def apply(self, params, state, x, *, train=False):
            return x @ params["out"]["kernel"] + params["out"]["bias"], state

    _, forget, _ = _data()
    params = {"out": {"kernel": jnp.ones((8, 4)) * 0.1, "bias": jnp.zeros(4)}}
    _, report = imu.unlearn(Linear(), params, forget, imu.UnlearnConfig(head="^out/", epochs=1))
    assert report.closed_form is False
    assert report.closed_form_reason.startswith("generic: the model gives no head input")


def test_what_is_not_a_model_is_named():
    _, forget, _ = _data()
    with pytest.raises(TypeError, match=r"a Linen module \(LinenNet\) holds no parameters: pass "
                                        r"it with its variables"):
        imu.unlearn(LinenNet(), forget)
    with pytest.raises(TypeError, match=r"the model \(object\) has no apply\("):
        imu.unlearn(object(), {}, forget)
    with pytest.raises(TypeError, match=r"call unlearn\(module, forget, config\)"):
        imu.unlearn(NNXNet(nnx.Rngs(0)), {}, forget)


@pytest.mark.eight_devices
@pytest.mark.parametrize("closed_form", ["auto", "never"])
def test_a_user_model_with_two_inputs_on_a_mesh_matches_one_device(closed_form):
    from imu_jax import sharding

    _, forget, _ = _data()
    rng = np.random.default_rng(0)
    masked = {**forget, "mask": (rng.random(forget["image"].shape) > 0.5).astype(np.float32)}
    net = MaskedNet(nnx.Rngs(1))
    config = imu.UnlearnConfig(head="^classifier/", epochs=2, batch_size=8,
                               closed_form=closed_form)
    one, report = imu.unlearn(net, masked, config)
    with sharding.use_mesh(sharding.make_mesh("data=4,model=2", axis_types="explicit")):
        many, report_mesh = imu.unlearn(net, masked, config)
    assert report_mesh.closed_form_reason == report.closed_form_reason
    assert report.closed_form is (closed_form == "auto")
    for a, b in zip(jax.tree.leaves(nnx.state(one, nnx.Param)),
                    jax.tree.leaves(nnx.state(many, nnx.Param))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert not np.allclose(np.asarray(one.classifier.kernel[...]),
                           np.asarray(net.classifier.kernel[...]))
