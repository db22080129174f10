"""Orbax checkpoints: round trip (with BatchNorm state), metadata, architecture mismatch."""

import jax
import numpy as np
import pytest

from imu_jax import checkpoint
from imu_jax.models import create, functional


def tiny_resnet(**kw):
    return functional(create("resnet18", num_classes=3, input_shape=(8, 8, 3), width=4,
                             stage_sizes=(1,), **kw))


def test_round_trip_with_batchnorm_state(tmp_path):
    fm = tiny_resnet()
    params = jax.tree.map(lambda a: a + 1.0, fm.params)
    state = jax.tree.map(lambda a: a + 2.0, fm.state)
    checkpoint.save(tmp_path / "ck", fm, params, state, metadata={"note": "hi", "epochs": 3})
    fm2, p2, s2, meta = checkpoint.restore(tmp_path / "ck", expected=fm)
    jax.tree.map(np.testing.assert_array_equal, p2, params)
    jax.tree.map(np.testing.assert_array_equal, s2, state)
    assert meta["note"] == "hi" and meta["model"]["name"] == "resnet18"
    assert fm2.config == fm.config
    x = np.ones((2, 8, 8, 3), np.float32)
    np.testing.assert_allclose(fm2.apply(p2, s2, x)[0], fm.apply(params, state, x)[0], rtol=1e-6)


def test_restore_without_expected_rebuilds_from_metadata(tmp_path):
    fm = functional(create("transformer", num_classes=7, input_shape=(5,), num_layers=1, width=8,
                           num_heads=2))
    checkpoint.save(tmp_path, fm, fm.params, fm.state)
    fm2, p2, s2, meta = checkpoint.restore(tmp_path)
    assert fm2.name == "transformer" and fm2.config["input_shape"] == (5,) and s2 == {}
    assert checkpoint.load_metadata(tmp_path)["model"]["width"] == 8


def test_seed_does_not_count_as_architecture(tmp_path):
    fm = tiny_resnet(seed=0)
    checkpoint.save(tmp_path, fm, fm.params, fm.state)
    checkpoint.restore(tmp_path, expected=tiny_resnet(seed=5))


def test_restore_into_other_architecture_names_both(tmp_path):
    fm = tiny_resnet()
    checkpoint.save(tmp_path, fm, fm.params, fm.state)
    other = functional(create("mlp", num_classes=3, input_shape=(8, 8, 3), hidden=(4,)))
    with pytest.raises(ValueError, match=r"holds architecture resnet18\(.*requested architecture "
                                         r"mlp\(.*hidden=\[4\]"):
        checkpoint.restore(tmp_path, expected=other)
    wider = tiny_resnet().config | {"width": 8}
    with pytest.raises(ValueError, match=r"width=4.*width=8"):
        checkpoint.restore(tmp_path, expected=wider)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.restore(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="No checkpoint found"):
        checkpoint.restore(tmp_path)
