"""The generic influence path with dense kernels as outer products (imu_jax._factored): equal to
a float64 vmap(grad) reference, on a user's NNX MLP head, with fallbacks for non-dense layers,
and in the per-batch step; and the compile / run split of the unlearning's seconds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import imu_jax as imu
from imu_jax import _factored, _traced
from imu_jax.unlearning import loop as unlearn_loop
from imu_jax.unlearning.losses import make_example_loss

D_IN, HIDDEN, CLASSES, N = 7, 12, 5, 53


class MlpHead(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(HIDDEN, HIDDEN, rngs=rngs)
        self.out = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, h):
        return self.out(jax.nn.gelu(self.hidden(h)))


class UserNet(nnx.Module):
    """A user's model: a body and a two-layer MLP head (no closed form)."""

    def __init__(self, rngs):
        self.body = nnx.Linear(D_IN, HIDDEN, rngs=rngs)
        self.head = MlpHead(rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.body(x)))


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(n, D_IN)).astype(np.float32),
            "label": rng.integers(0, CLASSES, n).astype(np.int32)}


def _nnx_loss(model):
    graphdef, head, rest = nnx.split(model, nnx.All(nnx.Param, nnx.PathContains("head")), ...)

    def loss(head, example):
        logits = nnx.merge(graphdef, head, rest)(example["x"][None])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, example["y"])

    return loss, head


def _reference64(loss, head, batch, damping=0.01):
    """Spec §1 from materialized float64 per-example gradients (vmap of grad)."""
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(  # noqa: E731
            lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating)
            else jnp.asarray(a), t)
        grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(to64(head), to64(batch))
        leaves = jax.tree.leaves(grads)
        n = leaves[0].shape[0]
        mean = [g.sum(0) / n for g in leaves]
        fisher = [(g * g).sum(0) / n + damping for g in leaves]
        scores = -sum(jnp.tensordot(g, m / f, axes=m.ndim) for g, m, f in zip(leaves, mean, fisher))
        return np.asarray(scores)


def _close(a, b, rtol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b)), np.max(np.abs(a - b))


def test_nnx_mlp_head_kernels_are_outer_products_and_scores_match_float64():
    model = UserNet(nnx.Rngs(0))
    loss, head = _nnx_loss(model)
    data = _data()
    batch = {"x": jnp.asarray(data["image"]), "y": jnp.asarray(data["label"])}
    traced, consts = _traced.trace_example_loss(loss, head, batch)
    grads = _factored.per_example_grads(traced, consts, head, batch)
    kinds = {imu.param_paths(head)[i]: type(g).__name__
             for i, g in enumerate(_factored.leaves(grads))}
    assert kinds == {"head/hidden/bias": "ArrayImpl", "head/hidden/kernel": "OuterProducts",
                     "head/out/bias": "ArrayImpl", "head/out/kernel": "OuterProducts"}
    # each factored leaf is the materialized per-example gradient
    full = jax.vmap(jax.grad(loss), in_axes=(None, 0))(head, batch)
    for g, f in zip(_factored.leaves(grads), jax.tree.leaves(full)):
        g = g.materialize() if _factored.is_factored(g) else g
        np.testing.assert_allclose(g, f, rtol=1e-5, atol=1e-6)
    reference = _reference64(loss, head, batch)
    _close(imu.influence_scores(loss, head, batch), reference)           # one pass
    _close(imu.influence_scores(loss, head, batch, chunk_size=16), reference)  # padded chunks
    _close(imu.influence_from_grads(grads), reference)


def test_factored_path_is_what_the_default_chunk_counts():
    model = UserNet(nnx.Rngs(0))
    loss, head = _nnx_loss(model)
    data = _data()
    batch = {"x": jnp.asarray(data["image"]), "y": jnp.asarray(data["label"])}
    traced, _ = _traced.trace_example_loss(loss, head, batch)
    # two kernels as D + C numbers each, biases in full
    expected = 4 * ((HIDDEN + HIDDEN) + HIDDEN + (HIDDEN + CLASSES) + CLASSES)
    assert _factored.per_example_bytes(traced, head, batch) == expected
    dense_bytes = 4 * sum(np.size(x) for x in jax.tree.leaves(head))
    assert imu.auto_chunk_size(10**6, head, chunk_bytes=2**20, per_example_bytes=expected) > \
        imu.auto_chunk_size(10**6, head, chunk_bytes=2**20) * (dense_bytes // expected) // 2


def _layers(seed=1):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32)  # noqa: E731
    return f


def test_non_dense_layers_fall_back_and_the_rest_still_factors():
    """A layer-norm scale (elementwise), a kernel used twice (tied), a kernel over a sequence of
    inputs and a kernel in torch's [C, D] layout: the first three keep materialized gradients,
    the last factors (transposed); every score equals the float64 reference."""
    f = _layers()
    head = {"scale": f(6), "tied": f(6, 6), "seq": f(6, 4), "torch": f(CLASSES, 4),
            "bias": f(CLASSES)}

    def loss(head, ex):
        h = ex["x"] * head["scale"]                              # elementwise: materialized
        h = jnp.tanh(h @ head["tied"]) @ head["tied"]            # used twice: materialized
        tokens = jnp.tanh(h.reshape(2, 3) @ head["seq"][:3])     # sliced first: materialized
        pooled = jnp.mean(tokens, axis=0)
        logits = pooled @ head["torch"].T + head["bias"]         # [C, D] kernel: factored
        return optax.softmax_cross_entropy_with_integer_labels(logits, ex["y"])

    rng = np.random.default_rng(3)
    batch = {"x": jnp.asarray(rng.normal(size=(40, 6)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, CLASSES, 40))}
    traced, consts = _traced.trace_example_loss(loss, head, batch)
    grads = _factored.per_example_grads(traced, consts, head, batch)
    factored = {k for k, g in grads.items() if _factored.is_factored(g)}
    assert factored == {"torch"}
    assert grads["torch"].transposed and grads["torch"].shape == (40, CLASSES, 4)
    _close(imu.influence_scores(loss, head, batch), _reference64(loss, head, batch))
    _close(imu.influence_scores(loss, head, batch, chunk_size=8), _reference64(loss, head, batch))


def test_a_dense_kernel_over_a_sequence_falls_back():
    """Per-token inputs make the per-example gradient a sum of outer products: materialized."""
    f = _layers(2)
    head = {"kernel": f(4, CLASSES), "bias": f(CLASSES)}

    def loss(head, ex):  # ex["x"]: [T, D]; mean token cross-entropy
        logits = ex["x"] @ head["kernel"] + head["bias"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, ex["y"]))

    rng = np.random.default_rng(4)
    batch = {"x": jnp.asarray(rng.normal(size=(20, 3, 4)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, CLASSES, (20, 3)))}
    traced, consts = _traced.trace_example_loss(loss, head, batch)
    assert _factored.dense_taps(traced.jaxpr, 2) == {}
    _close(imu.influence_scores(loss, head, batch), _reference64(loss, head, batch))


def test_unlearn_on_the_user_mlp_head_equals_the_materialized_path(monkeypatch):
    """imu.unlearn on the NNX model (generic path, global and per-batch modes) gives the same
    scores, selection and head as with every per-example gradient materialized."""
    data = _data(5, n=64)
    results = {}
    for factored in (True, False):
        if not factored:
            monkeypatch.setattr(_factored, "dense_taps", lambda jaxpr, n: {})
        for mode in ("global", "per_batch"):
            config = imu.UnlearnConfig(influence_mode=mode, epochs=2, batch_size=16)
            new, report = imu.unlearn(UserNet(nnx.Rngs(0)), data, config)
            assert report.closed_form in (False, None)
            results[factored, mode] = (nnx.state(new, nnx.Param), report)
    for mode in ("global", "per_batch"):
        (a, ra), (b, rb) = results[True, mode], results[False, mode]
        assert ra.num_kept == rb.num_kept and ra.steps == rb.steps
        if mode == "global":
            assert ra.closed_form is False and "generic" in ra.closed_form_reason
            np.testing.assert_allclose(ra.influence["mean"], rb.influence["mean"], rtol=1e-5)
        assert ra.num_fallback_batches == rb.num_fallback_batches
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_per_batch_step_with_factored_grads_equals_materialized_update():
    model = UserNet(nnx.Rngs(1))
    protocol, params, state = imu.from_nnx(model)
    config = imu.UnlearnConfig(influence_mode="per_batch", batch_size=32)
    head, rest = imu.split_head(params, "head")
    optimizer = unlearn_loop.make_optimizer(config, 10)
    step = unlearn_loop.make_step(protocol, config, optimizer)
    data = _data(6, n=32)
    x, y = jnp.asarray(data["image"]), jnp.asarray(data["label"])
    opt_state = optimizer.init(head)
    new_head, new_state, _ = step(head, opt_state, rest, state, x, y, jnp.ones(32))
    grads = imu.per_example_grads(make_example_loss(protocol, rest, state), head,
                                  {"x": x, "y": y})
    updates, expected_state = optimizer.update(grads, opt_state, head)
    expected = optax.apply_updates(head, updates)
    for a, b in zip(jax.tree.leaves(new_head), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(new_state[0].last_num_kept) == int(expected_state[0].last_num_kept) > 0


def test_report_splits_compile_and_run_time():
    data = _data(7, n=48)
    config = imu.UnlearnConfig(epochs=1, batch_size=16)
    # a fresh shape: the first call compiles its programs
    _, first = imu.unlearn(UserNet(nnx.Rngs(3)), data, config)
    _, second = imu.unlearn(UserNet(nnx.Rngs(3)), data, config)
    for report in (first, second):
        assert 0 <= report.compile_seconds <= report.seconds
        assert report.compile_seconds + report.run_seconds == pytest.approx(report.seconds)
        record = report.to_dict()
        assert record["run_seconds"] == pytest.approx(report.run_seconds)
        assert record["compile_seconds"] == report.compile_seconds
    assert first.compile_seconds > 0
    assert second.compile_seconds < first.compile_seconds


def test_methods_record_compile_seconds_and_the_table_shows_the_split():
    from imu_jax.lab.report import tables
    from imu_jax.methods import base

    def fn():
        x = jax.jit(lambda a: jnp.cos(a) * 7.5 + 0.25)(jnp.ones(17))  # a fresh program
        return {"w": x}, {}, {}

    output = base.timed(fn)
    assert 0 < output.compile_seconds <= output.seconds
    runs = [{"method": "imu", "seed": s, "role": "eval", "metrics": {"ua": 1.0, "ra": 1.0,
             "ta": 1.0, "mia_efficacy": 1.0}, "avg_gap": 0.0, "seconds": total,
             "compile_seconds": compiling, "needs": "forget set only", "hparams": {}}
            for s, (total, compiling) in enumerate(((3.0, 1.0), (5.0, 1.0)))]
    runs.append({**runs[0], "method": "old", "seed": 0})  # stored before the split
    del runs[-1]["compile_seconds"]
    text = tables.table({"runs": runs}, tables.CLASSIFICATION_COLUMNS)
    header, _, imu_row, old_row = text.splitlines()
    cells = dict(zip(header.split(" | "), imu_row.split(" | ")))
    assert cells["RTE (s)"] == "3.00 ± 1.41" and cells["compile (s)"] == "1.00 ± 0.00"
    old = dict(zip(header.split(" | "), old_row.split(" | ")))
    assert old["RTE (s)"] == "3.00" and old["compile (s)"] == "–"
    assert "corresponds to our RTE" in tables.results_markdown({"runs": runs})
