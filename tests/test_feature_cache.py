"""Issue 28: a frozen body computed once (feature caching) gives today's run to float rounding,
and repeated runs with the same shapes reuse the compiled step."""

import jax
import numpy as np
import pytest
from flax import nnx

from imu_jax.models import create, functional
from imu_jax.unlearning import loop as unlearn_loop
from imu_jax.unlearning.config import UnlearnConfig
from imu_jax.unlearning.loop import unlearn
from imu_jax.unlearning.stopping import UTILITY_LABEL, StopRule


def _predicted(apply, x):
    return np.array(jax.numpy.argmax(apply(x), -1))


def _data(apply, dim_shape, seed=0, n_forget=48, n_held=96):
    """Forget examples labeled with the model's predictions (so forgetting takes steps), and
    held-out data labeled half by predictions, half at random."""
    rng = np.random.default_rng(seed)
    xf = rng.normal(size=(n_forget, *dim_shape)).astype(np.float32)
    xh = rng.normal(size=(n_held, *dim_shape)).astype(np.float32)
    yf, yh = _predicted(apply, xf), _predicted(apply, xh)
    yh[::2] = rng.integers(0, 4, len(yh[::2]))
    return {"image": xf, "label": yf}, {"image": xh, "label": yh}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _assert_same_run(old, new, old_head, new_head):
    (_, old_report), (_, new_report) = old, new
    assert not old_report.feature_cache and new_report.feature_cache
    assert old_report.feature_cache_reason == "not cached: cache_features='never'"
    assert new_report.feature_cache_reason.startswith("cached: the head")
    assert new_report.to_dict()["feature_cache"] is True
    assert new_report.stop_reason == old_report.stop_reason
    assert new_report.steps == old_report.steps
    for a, b in zip(jax.tree.leaves(new_head), jax.tree.leaves(old_head)):
        assert _rel(a, b) < 1e-5
    if old_report.stopping.get("curve") is not None:
        old_curve, new_curve = old_report.stopping["curve"], new_report.stopping["curve"]
        assert len(old_curve) == len(new_curve) > 1
        for p, q in zip(old_curve, new_curve):
            assert p.keys() == q.keys()
            for key in p:
                assert abs(p[key] - q[key]) <= 1e-5 * max(abs(p[key]), 1e-12), (key, p, q)


@pytest.fixture(scope="module")
def mlp():
    fm = functional(create("mlp", num_classes=4, input_shape=(8,), hidden=(16,)))
    forget, held = _data(lambda x: fm.apply(fm.params, fm.state, x)[0], (8,))
    return fm, forget, held


def _both(run):
    return run("never"), run("auto")


@pytest.mark.parametrize("held_kind", ["none", "class", "sample"])
def test_library_model_cached_run_equals_full_run(mlp, held_kind):
    fm, forget, held = mlp
    kwargs = {}
    if held_kind == "class":  # forget one class, the rule on the others, utility labels along
        keep = forget["label"] == forget["label"][0]
        forget = {k: v[keep] for k, v in forget.items()}
        held = {**held, UTILITY_LABEL: held["label"].copy()}
        kwargs = {"held_out": held, "stop_rule": StopRule(removal="class", eval_every=2)}
    elif held_kind == "sample":
        kwargs = {"held_out": held, "stop_rule": StopRule(removal="sample", eval_every=2,
                                                          auc_margin=0.0,
                                                          max_utility_drop=1.0)}

    def run(mode):
        config = UnlearnConfig(cache_features=mode, batch_size=8, epochs=4, learning_rate=0.05)
        return unlearn(fm, fm.params, forget, config, state=fm.state, **kwargs)

    old, new = _both(run)
    _assert_same_run(old, new, old[0]["head"], new[0]["head"])
    if held_kind == "none":
        assert old[1].stop_reason == "fixed" and old[1].steps > 1
    else:
        assert old[1].steps > 0
        assert "held-out" in new[1].feature_cache_reason


class UserNet(nnx.Module):  # a user's own NNX model, its head named "head"
    def __init__(self, rngs):
        self.body = nnx.Linear(8, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.head(self.drop(nnx.relu(self.body(x))))


@pytest.mark.parametrize("with_held_out", [False, True])
def test_user_nnx_model_cached_run_equals_full_run(with_held_out):
    net = UserNet(nnx.Rngs(0))
    net.eval()
    forget, held = _data(net, (8,), seed=1)
    kwargs = ({"held_out": held, "stop_rule": StopRule(removal="sample", eval_every=2,
                                                        auc_margin=0.0,
                                                          max_utility_drop=1.0)}
              if with_held_out else {})

    def run(mode):
        config = UnlearnConfig(cache_features=mode, batch_size=8, epochs=3, learning_rate=0.05)
        return unlearn(net, forget, config, **kwargs)

    old, new = _both(run)
    head = lambda module: nnx.to_pure_dict(nnx.state(module.head, nnx.Param))  # noqa: E731
    _assert_same_run(old, new, head(old[0]), head(new[0]))
    assert _rel(old[0].body.kernel[...], net.body.kernel[...]) == 0
    assert old[1].steps > 1


def test_not_cached_when_the_body_updates_or_the_head_is_not_one_dense_layer(mlp):
    fm, forget, _ = mlp
    base = UnlearnConfig(batch_size=16, epochs=1)
    _, report = unlearn(fm, fm.params, forget, UnlearnConfig(batch_size=16, epochs=1,
                                                            update_batch_stats=True),
                        state=fm.state)
    assert not report.feature_cache and "update_batch_stats" in report.feature_cache_reason
    two_layers = UnlearnConfig(batch_size=16, epochs=1, head=r"^(head|dense0)/")
    _, report = unlearn(fm, fm.params, forget, two_layers, state=fm.state)
    assert not report.feature_cache and report.feature_cache_reason.startswith("not cached")
    _, report = unlearn(fm, fm.params, forget, base, state=fm.state)
    assert report.feature_cache


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_a_second_run_with_the_same_shapes_does_not_recompile(mlp, mode):
    fm, forget, held = mlp
    config = UnlearnConfig(cache_features=mode, batch_size=8, epochs=2, learning_rate=0.02)
    kwargs = {"held_out": held, "stop_rule": StopRule(removal="sample", eval_every=2)}
    unlearn(fm, fm.params, forget, config, state=fm.state, **kwargs)
    traced = unlearn_loop.TRACES["step"]
    new_params = jax.tree.map(lambda a: a * 1.01, fm.params)  # other values, same shapes
    _, report = unlearn(fm, new_params, forget, config, state=fm.state, seed=1, **kwargs)
    assert report.steps > 0
    assert unlearn_loop.TRACES["step"] == traced
