"""Influence scores and weights against the float64 one-example-at-a-time reference (spec §1–2)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imu_jax as imu
import reference_imu as ref
from _problem import batch, features, full_loss, head_loss_fn, make_problem, to_jax

RTOL = 1e-5


def assert_close(actual, expected, rtol=RTOL):
    """Relative agreement, measured against the scale of the expected vector."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


@pytest.fixture(scope="module")
def problem():
    params, xs, ys = make_problem()
    return params, xs, ys, to_jax(params), batch(xs, ys)


def test_per_example_grads_match_reference(problem):
    params, xs, ys, jparams, jbatch = problem
    grads = imu.per_example_grads(full_loss, jparams, jbatch)
    assert grads["body"]["kernel"].shape == (len(xs),) + params["body"]["kernel"].shape
    for i in (0, 5, len(xs) - 1):
        flat = np.concatenate([np.ravel(grads[m][k][i]) for m in ("body", "head")
                               for k in ("kernel", "bias")])
        assert_close(flat, ref.example_grad(params, xs[i], ys[i], head_only=False))


@pytest.mark.parametrize("chunk_size", [None, 7, 37, 64])
def test_scores_over_all_parameters_match_reference(problem, chunk_size):
    params, xs, ys, jparams, jbatch = problem
    expected = ref.influence(params, xs, ys, head_only=False)
    assert_close(imu.influence_scores(full_loss, jparams, jbatch, chunk_size=chunk_size), expected)


@pytest.mark.parametrize("chunk_size", [None, 5, 16])
def test_head_scores_match_reference(problem, chunk_size):
    params, xs, ys, jparams, jbatch = problem
    expected = ref.influence(params, xs, ys, head_only=True)
    loss = head_loss_fn(jparams["body"])
    assert_close(imu.influence_scores(loss, jparams["head"], jbatch, chunk_size=chunk_size), expected)


def test_chunking_does_not_change_scores(problem):
    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    whole = imu.influence_scores(loss, jparams["head"], jbatch)
    for chunk_size in (1, 3, 10, 36):
        np.testing.assert_allclose(
            imu.influence_scores(loss, jparams["head"], jbatch, chunk_size=chunk_size), whole,
            rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(whole))))


def test_auto_chunk_size_fits_the_budget():
    head = {"kernel": jnp.zeros((512, 10)), "bias": jnp.zeros(10)}  # 5,130 float32 = 20,520 B
    assert imu.auto_chunk_size(2048, head, chunk_bytes=8 * 2**20) == 256  # 408 fit -> 256
    assert imu.auto_chunk_size(2048, head, chunk_bytes=20_520 * 1024) == 1024  # exactly 1024 fit
    assert imu.auto_chunk_size(2048, head, chunk_bytes=20_520 * 1024 - 1) == 512
    assert imu.auto_chunk_size(100, head, chunk_bytes=8 * 2**20) == 100  # all at once
    assert imu.auto_chunk_size(2048, head, chunk_bytes=1) == 8  # the minimum chunk
    assert imu.auto_chunk_size(3, head, chunk_bytes=1) == 3
    half = jax.tree.map(lambda x: x.astype(jnp.bfloat16), head)  # half the bytes per example
    assert imu.auto_chunk_size(2048, half, chunk_bytes=8 * 2**20) == 512


def test_default_call_uses_the_automatic_chunk(problem):
    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    n = jbatch["x"].shape[0]
    args = imu.influence._scores_args(loss, jparams["head"], jbatch)
    chunk_size = args[5]  # (traced loss, its arrays, params, batch, damping, chunk_size, ...)
    assert chunk_size == imu.auto_chunk_size(n, jparams["head"])
    np.testing.assert_array_equal(
        imu.influence_scores(loss, jparams["head"], jbatch),
        imu.influence_scores(loss, jparams["head"], jbatch, chunk_size=chunk_size))


def test_damping_changes_scores(problem):
    _, _, _, jparams, jbatch = problem
    loss = head_loss_fn(jparams["body"])
    a = imu.influence_scores(loss, jparams["head"], jbatch, damping=0.01)
    b = imu.influence_scores(loss, jparams["head"], jbatch, damping=1.0)
    assert not np.allclose(a, b)


def test_classifier_closed_form_matches_reference_and_generic_path(problem):
    params, xs, ys, jparams, jbatch = problem
    feats = features(jparams["body"], jbatch["x"])
    closed = imu.classifier_influence(feats, jbatch["y"], jparams["head"])
    assert_close(closed, ref.influence(params, xs, ys, head_only=True))
    generic = imu.influence_scores(head_loss_fn(jparams["body"]), jparams["head"], jbatch)
    assert_close(closed, generic)


def test_classifier_influence_under_jit(problem):
    _, _, _, jparams, jbatch = problem
    feats = features(jparams["body"], jbatch["x"])
    jitted = jax.jit(lambda f, y, h: imu.classifier_influence(f, y, h))(feats, jbatch["y"],
                                                                         jparams["head"])
    np.testing.assert_allclose(jitted, imu.classifier_influence(feats, jbatch["y"], jparams["head"]),
                               rtol=1e-6)


@pytest.mark.parametrize("top_fraction", [0.1, 0.3, 0.5, 1.0])
def test_weights_match_reference(problem, top_fraction):
    params, xs, ys, jparams, jbatch = problem
    scores = imu.influence_scores(full_loss, jparams, jbatch)
    ref_scores = ref.influence(params, xs, ys, head_only=False)
    expected_idx, expected_w = ref.weights(ref_scores, top_fraction=top_fraction)
    idx, w = imu.influence_weights(scores, top_fraction=top_fraction)
    np.testing.assert_array_equal(idx, expected_idx)
    assert_close(w, expected_w)


def test_weights_selection_rules_by_hand():
    scores = np.array([0.3, -4.0, -1.0, -9.0, -1.0, 2.0, -0.25])
    idx, w = imu.influence_weights(scores, top_fraction=1.0)
    assert idx.tolist() == [3, 1, 2, 4, 6]  # |I| descending, ties by index, positives dropped
    raw = np.sqrt([9.0, 4.0, 1.0, 1.0, 0.25])
    np.testing.assert_allclose(w, np.minimum(raw, np.quantile(raw, 0.93)), rtol=1e-6)
    assert w[0] < 3.0  # the largest weight is clipped
    idx, w = imu.influence_weights(scores, top_fraction=0.5)  # floor(5 * 0.5) = 2
    assert idx.tolist() == [3, 1]
    idx, w = imu.influence_weights(scores, top_fraction=0.1)  # max(1, floor(0.5)) = 1, no clipping
    assert idx.tolist() == [3] and w.tolist() == [3.0]


def test_keep_count_uses_exact_floor():
    # 10 negatives at 0.7 keep floor(7.000000000000001) = 7 in float64; float32 would risk 6.
    idx, _ = imu.influence_weights(-np.arange(1.0, 11.0), top_fraction=0.7)
    assert len(idx) == 7


def test_no_negative_influence_falls_back_to_uniform():
    with pytest.warns(imu.NoNegativeInfluenceWarning, match="uniform"):
        idx, w = imu.influence_weights(np.array([0.5, 0.0, 2.0]))
    assert idx.tolist() == [0, 1, 2]
    assert w.tolist() == [1.0, 1.0, 1.0]


def test_negative_influence_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imu.influence_weights(np.array([0.5, -1.0]))


# --- bad input -------------------------------------------------------------------------------


def test_empty_batch_is_rejected(problem):
    _, _, _, jparams, _ = problem
    empty = {"x": jnp.zeros((0, 6)), "y": jnp.zeros((0,), jnp.int32)}
    with pytest.raises(ValueError, match="empty"):
        imu.influence_scores(full_loss, jparams, empty)
    with pytest.raises(ValueError, match="empty"):
        imu.per_example_grads(full_loss, jparams, empty)
    with pytest.raises(ValueError, match="empty"):
        imu.classifier_influence(jnp.zeros((0, 8)), jnp.zeros((0,), jnp.int32), jparams["head"])
    with pytest.raises(ValueError, match="empty"):
        imu.influence_weights(np.zeros(0))


def test_ragged_batch_is_rejected(problem):
    _, _, _, jparams, _ = problem
    with pytest.raises(ValueError, match="leading"):
        imu.influence_scores(full_loss, jparams, {"x": jnp.zeros((4, 6)), "y": jnp.zeros(3, int)})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_rejected(problem, bad):
    _, xs, ys, jparams, _ = problem
    xs = xs.copy()
    xs[3, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        imu.influence_scores(full_loss, jparams, batch(xs, ys))
    with pytest.raises(ValueError, match="NaN or inf"):
        imu.classifier_influence(jnp.asarray(xs), jnp.asarray(ys), {
            "kernel": jnp.zeros((6, 4)), "bias": jnp.zeros(4)})
    with pytest.raises(ValueError, match="NaN or inf"):
        imu.influence_weights(np.array([-1.0, bad]))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_top_fraction_out_of_range(fraction):
    with pytest.raises(ValueError, match="top_fraction"):
        imu.influence_weights(np.array([-1.0, -2.0]), top_fraction=fraction)
    with pytest.raises(ValueError, match="top_fraction"):
        imu.influence_weighted_ascent(top_fraction=fraction)


@pytest.mark.parametrize("damping", [0.0, -0.01])
def test_damping_must_be_positive(problem, damping):
    _, _, _, jparams, jbatch = problem
    with pytest.raises(ValueError, match="damping"):
        imu.influence_scores(full_loss, jparams, jbatch, damping=damping)
    with pytest.raises(ValueError, match="damping"):
        imu.classifier_influence(jnp.ones((3, 8)), jnp.zeros(3, jnp.int32), jparams["head"],
                                 damping=damping)


@pytest.mark.parametrize("label", [-1, 4, 10])
def test_labels_out_of_range(problem, label):
    _, _, _, jparams, _ = problem
    labels = jnp.array([0, 1, label])
    with pytest.raises(ValueError, match="labels out of range"):
        imu.classifier_influence(jnp.ones((3, 8)), labels, jparams["head"])


def test_head_of_wrong_shape(problem):
    _, _, _, jparams, _ = problem
    with pytest.raises(ValueError, match="do not fit"):
        imu.classifier_influence(jnp.ones((3, 5)), jnp.zeros(3, jnp.int32), jparams["head"])
    with pytest.raises(ValueError, match="kernel"):
        imu.classifier_influence(jnp.ones((3, 8)), jnp.zeros(3, jnp.int32), {"w": jnp.ones(3)})


# --- no silent staleness: what the loss closes over is read on every call ----------------------


def test_reassigned_closure_gives_new_scores_without_recompiling(problem):
    """A loss closing over the body: reassigning the body changes the scores (to the float64
    reference for the new body), and does not compile again (the closure's arrays are arguments
    of one compiled program); a changed Python constant does compile again."""
    params, xs, ys, jparams, jbatch = problem
    body = jparams["body"]
    scale = 1.0

    def loss(head, example):  # reads `body` and `scale` when traced
        logits = features(body, example["x"]) @ head["kernel"] + head["bias"]
        return -jax.nn.log_softmax(scale * logits)[example["y"]]

    compiled = imu.influence._influence_scores._cache_size
    for chunk_size in (None, 8):  # materialized and streaming (scan + JVP) paths
        first = imu.influence_scores(loss, jparams["head"], jbatch, chunk_size=chunk_size)
        assert_close(first, ref.influence(params, xs, ys, head_only=True))
        before = compiled()
        new_params = {**params, "body": {k: 2.0 * v for k, v in params["body"].items()}}
        body = to_jax(new_params)["body"]
        second = imu.influence_scores(loss, jparams["head"], jbatch, chunk_size=chunk_size)
        assert_close(second, ref.influence(new_params, xs, ys, head_only=True))
        assert np.max(np.abs(second - first)) > 1e-2 * np.max(np.abs(first))
        assert compiled() == before  # same program, new arrays: no recompilation
        body = jparams["body"]  # back, for the next chunk size

    scale = 2.0  # a Python constant is part of the program: compiled anew, never stale
    before = compiled()
    scaled = imu.influence_scores(loss, jparams["head"], jbatch)
    assert compiled() == before + 1
    unscaled = imu.influence_scores(lambda h, e: full_loss({"body": body, "head": h}, e),
                                    jparams["head"], jbatch)
    assert not np.allclose(scaled, unscaled, rtol=1e-3)


def test_loss_closing_over_an_nnx_module_updated_in_place(problem):
    """The NNX pattern: the loss closes over a module whose parameters an optimizer updates in
    place (``nnx.update``); the scores follow the module, equal to a fresh vmap(grad) reference."""
    from flax import nnx

    _, _, _, jparams, jbatch = problem

    class Body(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(6, 8, rngs=rngs)

        def __call__(self, x):
            return jnp.tanh(self.dense(x))

    body = Body(nnx.Rngs(0))

    def loss(classifier, example):
        logits = body(example["x"]) @ classifier["kernel"] + classifier["bias"]
        return -jax.nn.log_softmax(logits)[example["y"]]

    def reference(classifier):  # per-example gradients materialized, float32, spec §1 by hand
        g = jax.vmap(jax.grad(loss), in_axes=(None, 0))(classifier, jbatch)
        flat = jnp.concatenate([g["kernel"].reshape(len(jbatch["y"]), -1), g["bias"]], axis=1)
        direction = flat.mean(0) / ((flat * flat).mean(0) + imu.DEFAULT_DAMPING)
        return -(flat @ direction)

    head = jparams["head"]
    before = imu.influence_scores(loss, head, jbatch, chunk_size=8)
    np.testing.assert_allclose(before, reference(head), rtol=2e-5, atol=1e-6)
    state = nnx.state(body, nnx.Param)
    nnx.update(body, jax.tree.map(lambda p: p * -1.5, state))
    after = imu.influence_scores(loss, head, jbatch, chunk_size=8)
    np.testing.assert_allclose(after, reference(head), rtol=2e-5, atol=1e-6)
    assert not np.allclose(after, before, rtol=1e-2)


def test_scores_of_a_loss_that_is_not_a_scalar_are_refused(problem):
    _, _, _, jparams, jbatch = problem
    with pytest.raises(ValueError, match="must return a scalar"):
        imu.influence_scores(lambda h, e: h["bias"] * e["x"][0], jparams["head"], jbatch)
