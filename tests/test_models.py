"""Models: shapes, the head contract, pure apply/features, BatchNorm state, causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imu_jax.models import create, from_config, functional, model_config

TINY = {
    "mlp": dict(input_shape=(8, 8, 1), hidden=(16,)),
    "cnn": dict(input_shape=(8, 8, 1), channels=(4,), dense=8),
    "cnn1d": dict(input_shape=(12, 2), channels=4),
    "fastcnn": dict(input_shape=(8, 8, 3), stem=4, widths=(4, 8)),
    "resnet18": dict(input_shape=(8, 8, 3), width=4, stage_sizes=(1, 1)),
    "transformer": dict(input_shape=(6,), num_layers=2, width=16, num_heads=2),
}


def tiny(name, seed=0):
    return functional(create(name, num_classes=5, seed=seed, **TINY[name]))


def inputs(name, n=3):
    shape = TINY[name]["input_shape"]
    if name == "transformer":
        return jax.random.randint(jax.random.key(0), (n, *shape), 0, 5)
    return jax.random.normal(jax.random.key(0), (n, *shape))


@pytest.mark.parametrize("name", list(TINY))
def test_head_contract_and_pure_apply(name):
    fm = tiny(name)
    x = inputs(name)
    head = fm.params["head"]
    assert set(head) == {"kernel", "bias"} and head["bias"].shape == (5,)
    assert all(isinstance(k, str) for k in fm.params)
    logits, state = jax.jit(fm.apply)(fm.params, fm.state, x)
    feats = jax.jit(fm.features)(fm.params, fm.state, x)
    assert feats.shape[-1] == head["kernel"].shape[0]
    expected_shape = (3, 6, 5) if name == "transformer" else (3, 5)
    assert logits.shape == expected_shape
    # logits = head(features): the head subtree is all that follows the features.
    np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, atol=1e-5)
    # Changing the head changes the logits (params are really used, not closed over).
    params2 = jax.tree.map(lambda a: a, fm.params)
    params2["head"] = {"kernel": head["kernel"] * 0, "bias": head["bias"] * 0 + 1}
    logits2, _ = fm.apply(params2, fm.state, x)
    np.testing.assert_allclose(logits2, 1.0)
    assert jax.tree.structure(state) == jax.tree.structure(fm.state)


@pytest.mark.parametrize("name", list(TINY))
def test_config_round_trip_and_seed(name):
    fm = tiny(name)
    again = functional(from_config(fm.config))
    chex_equal = jax.tree.map(np.testing.assert_array_equal, fm.params, again.params)
    del chex_equal
    assert fm.config["name"] == name and fm.config["seed"] == 0
    other = tiny(name, seed=1)
    assert not np.array_equal(other.params["head"]["kernel"], fm.params["head"]["kernel"])


def test_batchnorm_state_updates_only_in_train_mode():
    fm = tiny("resnet18")
    assert "stem_bn" in fm.state and set(fm.state["stem_bn"]) == {"mean", "var"}
    x = inputs("resnet18", 8) + 3.0
    _, same = fm.apply(fm.params, fm.state, x, train=False)
    jax.tree.map(np.testing.assert_array_equal, same, fm.state)
    _, new = jax.jit(lambda p, s, x: fm.apply(p, s, x, train=True))(fm.params, fm.state, x)
    assert float(jnp.abs(new["stem_bn"]["mean"] - fm.state["stem_bn"]["mean"]).max()) > 0.01
    # Inference uses the running statistics: different state, different logits.
    a, _ = fm.apply(fm.params, fm.state, x)
    b, _ = fm.apply(fm.params, new, x)
    assert not np.allclose(a, b)


def test_models_without_batchnorm_have_empty_state():
    for name in ("mlp", "cnn", "transformer"):
        assert tiny(name).state == {}


def test_transformer_is_causal():
    fm = tiny("transformer")
    x = inputs("transformer", 2)
    y = x.at[:, 4].set((x[:, 4] + 1) % 5)
    a, _ = fm.apply(fm.params, fm.state, x)
    b, _ = fm.apply(fm.params, fm.state, y)
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_resnet18_default_size():
    abstract = nnx.eval_shape(lambda: create("resnet18", num_classes=10, input_shape=(32, 32, 3)))
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert 11_150_000 < n < 11_200_000  # ResNet-18 CIFAR: 11.17M


def test_transformer_defaults_follow_spec():
    cfg = model_config("transformer", num_classes=10, input_shape=(20,))
    assert (cfg["num_layers"], cfg["width"]) == (4, 128)


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="Unknown model 'vgg'.*mlp, cnn, resnet18, transformer"):
        create("vgg", num_classes=2, input_shape=(4,))
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['depth'\].*hidden"):
        create("mlp", num_classes=2, input_shape=(4,), depth=3)
