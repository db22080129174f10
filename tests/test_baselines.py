"""The baselines of issue 14 against hand computations of their defining formulas.

Each test builds a linear classifier ``logits = x W + b`` (or an embedding → linear sequence
model), runs the method for one or two steps with plain SGD (no momentum, no decay, full batch)
and compares the parameters with the update written out in numpy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import methods
from imu_jax.methods import (base, graddiff, grids, jit_lipschitz, likelihood, phases, salun, scar,
                             scrub, simnpo)
from imu_jax.unlearning import monitor as monitor_lib
from imu_jax.unlearning import stopping

import tiny_models


PLAIN = {"momentum": 0.0, "weight_decay": 0.0}


class Linear:
    """``logits = x W + b``; features are the inputs."""

    def apply(self, params, state, x, *, train=False):
        return x @ params["head"]["kernel"] + params["head"]["bias"], state

    def features(self, params, state, x):
        return x


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _ce_grad(w, b, x, y):
    """Gradient of the mean softmax cross-entropy of a linear model, by hand."""
    g = (_softmax(x @ w + b) - np.eye(w.shape[1])[y]) / len(y)
    return x.T @ g, g.sum(0)


def _linear_task(seed=0, n_forget=6, n_retain=10, dim=4, classes=3, retain=True):
    rng = np.random.default_rng(seed)
    params = {"head": {"kernel": jnp.asarray(rng.normal(size=(dim, classes)), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=classes) * 0.1, jnp.float32)}}
    forget = {"image": rng.normal(size=(n_forget, dim)).astype(np.float32),
              "label": rng.integers(0, classes, n_forget).astype(np.int32)}
    kept = {"image": rng.normal(size=(n_retain, dim)).astype(np.float32),
            "label": rng.integers(0, classes, n_retain).astype(np.int32)}
    return methods.UnlearnTask(model=Linear(), params=params, state={}, forget=forget,
                               retain=kept if retain else None, num_classes=classes)


def _np(params):
    return np.asarray(params["head"]["kernel"], np.float64), np.asarray(params["head"]["bias"],
                                                                        np.float64)


def _assert_params(out, w, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(out["head"]["kernel"], w, rtol=rtol, atol=atol)
    np.testing.assert_allclose(out["head"]["bias"], b, rtol=rtol, atol=atol)


def _run(name, task, **overrides):
    method = methods.get_method(name)
    return method.run(task, method.hparams(overrides), 0)


def test_registry_has_the_new_baselines_with_their_data_needs():
    needs = {n: methods.get_method(n).needs for n in methods.available()}
    assert needs["salun"] == needs["scrub"] == needs["graddiff"] == needs["npo_rt"] == \
        base.FORGET_AND_RETAIN
    assert needs["l1_sparse"] == base.RETAIN_SET
    assert needs["jit"] == needs["simnpo"] == base.FORGET_ONLY
    assert needs["scar"] == base.FORGET_AND_AUXILIARY
    knobs = {"salun": "threshold", "scrub": "msteps", "l1_sparse": "gamma", "jit": "noise_std",
             "scar": "lambda_distill", "npo_rt": "beta", "simnpo": "beta", "graddiff": None}
    for name, knob in knobs.items():
        method = methods.get_method(name)
        grid = method.grid
        # issue 26: one grid for every method (lr × optimizer steps); the second knob stays at
        # the method's default in every configuration (it was tuned per method before)
        assert grid is grids.GRIDS[name] is grids.STEP_GRID, name
        assert sorted(grid) == ["learning_rate", "max_steps"], name
        assert set(grid) <= set(method.defaults), name
        if knob is not None:
            assert knob in method.defaults and knob not in grid, name
        assert method.defaults["milestones"] == () and method.defaults["bn_mode"] == "train", name


# --- SalUn -------------------------------------------------------------------------------

def test_salun_mask_is_the_top_half_of_the_summed_forget_gradient():
    task = _linear_task()
    w, b = _np(task.params)
    x, y = task.forget["image"].astype(np.float64), task.forget["label"]
    gw, gb = zip(*[_ce_grad(w, b, x[i:i + 4], y[i:i + 4]) for i in (0, 4)])  # two batches of 4
    saliency = np.abs(np.concatenate([-sum(gw).ravel(), -sum(gb)]))
    grad = salun.forget_gradient(task.model, task.params, {}, base.xy(task.forget), batch_size=4)
    mask = salun.saliency_mask(grad, 0.5)
    flat = np.concatenate([np.ravel(mask["head"]["bias"]), np.ravel(mask["head"]["kernel"])])
    expected = np.zeros(saliency.size)
    expected[np.argsort(-saliency, kind="stable")[:saliency.size // 2]] = 1
    # jax.tree order: bias before kernel; the numpy vector is kernel then bias.
    expected = np.concatenate([expected[w.size:], expected[:w.size]])
    np.testing.assert_array_equal(flat, expected)
    assert flat.sum() == saliency.size // 2


def test_salun_step_is_random_label_descent_on_the_union_restricted_to_the_mask():
    task = _linear_task()
    out = _run("salun", task, learning_rate=0.5, epochs=1, batch_size=64, **PLAIN)
    w, b = _np(task.params)
    f, r = base.xy(task.forget), base.xy(task.retain)
    grad = salun.forget_gradient(task.model, task.params, {}, f, batch_size=64)
    mask = salun.saliency_mask(grad, 0.5)
    mw, mb = np.asarray(mask["head"]["kernel"]), np.asarray(mask["head"]["bias"])
    labels = np.random.default_rng(0).integers(0, 3, size=f["y"].shape)
    gw, gb = _ce_grad(w, b, np.concatenate([f["x"], r["x"]]).astype(np.float64),
                      np.concatenate([labels, r["y"]]))
    _assert_params(out.params, w - 0.5 * mw * gw, b - 0.5 * mb * gb)
    assert out.info["masked_fraction"] == pytest.approx(0.5, abs=0.05)
    assert np.any(mw == 0) and np.any(mw == 1)


# --- SCRUB -------------------------------------------------------------------------------

def test_distill_kl_matches_its_definition_and_gradient():
    rng = np.random.default_rng(1)
    s, t, temp = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 4.0
    ps, pt = _softmax(s / temp), _softmax(t / temp)
    value = temp ** 2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    assert float(scrub.distill_kl(jnp.asarray(s), jnp.asarray(t), temperature=temp)) == \
        pytest.approx(value, rel=1e-5)
    grad = jax.grad(lambda z: scrub.distill_kl(z, jnp.asarray(t), temperature=temp))(
        jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(grad, temp * (ps - pt) / 5, rtol=1e-4, atol=1e-7)


def test_scrub_alternates_max_steps_on_forget_and_min_steps_on_retain():
    task = _linear_task()
    lr, gamma, alpha, temp = 0.3, 0.99, 0.5, 4.0
    out = _run("scrub", task, learning_rate=lr, epochs=2, msteps=2, max_steps=3, batch_size=64,
               forget_batch_size=64, gamma=gamma, alpha=alpha, temperature=temp, **PLAIN)
    w0, b0 = _np(task.params)
    xf, xr = task.forget["image"].astype(np.float64), task.retain["image"].astype(np.float64)
    # step 1 (epoch 1, max on D_f): student == teacher, the KL gradient is zero.
    # step 2 (epoch 1, min on D_r): γ CE + α KL, the KL gradient still zero at θ0.
    gw, gb = _ce_grad(w0, b0, xr, task.retain["label"])
    w2, b2 = w0 - lr * gamma * gw, b0 - lr * gamma * gb
    # step 3 (epoch 2, max on D_f): descend −KL_T(student θ2, teacher θ0).
    g = temp * (_softmax((xf @ w2 + b2) / temp) - _softmax((xf @ w0 + b0) / temp)) / len(xf)
    _assert_params(out.params, w2 + lr * xf.T @ g, b2 + lr * g.sum(0))
    assert out.info["steps"] == 3


def test_phased_loop_runs_phases_in_order_with_epoch_lr_decay():
    seen = []

    def record(tag):
        def loss(p, s, batch):
            jax.debug.callback(lambda e, st: seen.append((tag, int(e), int(st))), batch["epoch"],
                               batch["step"])
            return p["w"] * batch["x"].sum()
        return loss

    data = {"x": np.ones(2, np.float32)}
    params, steps = phases.phased_loop(
        {"w": jnp.zeros(())}, {},
        [phases.Phase(record("max"), phases.shuffled_batches(data, 2), first_epochs=1),
         phases.Phase(record("min"), phases.shuffled_batches(data, 2))],
        epochs=3, learning_rate=1.0, seed=0, momentum=0.0, weight_decay=0.0,
        lr_decay_epochs=(2,), lr_decay_rate=0.1)
    assert seen == [("max", 0, 0), ("min", 0, 1), ("min", 1, 2), ("min", 2, 3)]
    assert steps == 4 and float(params["w"]) == pytest.approx(-2 * (1 + 1 + 1 + 0.1))


# --- ℓ1-sparse ---------------------------------------------------------------------------

def test_l1_sparse_adds_a_linearly_decaying_l1_subgradient():
    task = _linear_task()
    lr, gamma = 0.2, 0.05
    out = _run("l1_sparse", task, learning_rate=lr, epochs=2, batch_size=64, gamma=gamma, **PLAIN)
    w, b = _np(task.params)
    xr, yr = task.retain["image"].astype(np.float64), task.retain["label"]
    for epoch in range(2):
        weight = gamma * (1 - epoch / 2)
        gw, gb = _ce_grad(w, b, xr, yr)
        w, b = w - lr * (gw + weight * np.sign(w)), b - lr * (gb + weight * np.sign(b))
    _assert_params(out.params, w, b)
    no_retain = _linear_task(retain=False)
    with pytest.raises(ValueError, match="l1_sparse.*task.retain"):
        _run("l1_sparse", no_retain)


# --- JiT ---------------------------------------------------------------------------------

def test_jit_step_descends_the_output_to_input_change_ratio():
    task = _linear_task(retain=False)
    lr, sigma, samples = 0.1, 0.5, 3
    out = _run("jit", task, learning_rate=lr, epochs=1, batch_size=64, noise_std=sigma,
               n_samples=samples)
    w, b = _np(task.params)
    x = task.forget["image"][np.random.default_rng(0).permutation(6)]  # the loop's batch order
    noisy = np.asarray(jit_lipschitz.perturb(jax.random.fold_in(jax.random.key(0), 0),
                                             jnp.asarray(x), noise_std=sigma,
                                             n_samples=samples), np.float64)
    assert noisy.min() >= x.min() - 1e-6 and noisy.max() <= x.max() + 1e-6
    x = x.astype(np.float64)
    z, g = x @ w + b, np.zeros((len(x), w.shape[1]))
    for s in range(samples):
        diff = z - (noisy[s] @ w + b)
        g += diff / (np.linalg.norm(diff, axis=1, keepdims=True)
                     * np.linalg.norm(x - noisy[s], axis=1, keepdims=True)) / samples
    _assert_params(out.params, w - lr * x.T @ g, b - lr * g.sum(0), rtol=1e-4, atol=1e-5)


# --- SCAR --------------------------------------------------------------------------------

def test_scar_statistics_distances_and_loss_match_their_definitions():
    rng = np.random.default_rng(3)
    feats = np.abs(rng.normal(size=(40, 3)))
    labels = np.repeat(np.arange(2), 20)
    means, inverses, valid = scar.class_statistics(feats, labels, 3, delta=0.5, gamma1=3.0,
                                                   gamma2=3.0)
    assert valid.tolist() == [True, True, False]
    phi = np.sqrt(feats)
    for c in range(2):
        cov = np.cov(phi[labels == c].T)
        for _ in range(2):  # shrunk twice, as the reference code's HR branch
            eye = np.eye(3)
            cov = cov + 3 * np.mean(np.diag(cov)) * eye + 3 * (1 - eye) * np.mean(
                cov[~np.eye(3, dtype=bool)])
        corr = cov / np.outer(np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov)))
        np.testing.assert_allclose(means[c], phi[labels == c].mean(0), rtol=1e-5)
        np.testing.assert_allclose(inverses[c], np.linalg.inv(corr), rtol=1e-4, atol=1e-5)
    h = np.abs(rng.normal(size=(4, 3)))
    u = np.sqrt(h) / np.linalg.norm(np.sqrt(h), axis=1, keepdims=True)
    v = means[0] / np.linalg.norm(means[0])
    d0 = np.einsum("nd,de,ne->n", u - v, inverses[0], u - v)
    got = scar.mahalanobis(jnp.asarray(h, jnp.float32), means, inverses, delta=0.5)
    np.testing.assert_allclose(got[:, 0], d0, rtol=1e-4)
    # the loss: λ₁ mean d_target + λ₂ KL(softmax(t/T) ‖ softmax(s)); for the linear model the
    # features are the inputs, so the head gradient is the distillation term's, by hand.
    task = _linear_task(dim=3)
    w, b = _np(task.params)
    xa, ta = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    batch = {"xf": jnp.asarray(h, jnp.float32), "target": jnp.array([1, 0, 1, 1]),
             "xa": jnp.asarray(xa, jnp.float32), "ta": jnp.asarray(ta, jnp.float32)}
    kw = dict(delta=0.5, temperature=2.0, lambda_forget=1.5, lambda_distill=5.0)
    dist = np.asarray(got)[np.arange(4), [1, 0, 1, 1]]
    pt, ps = _softmax(ta / 2.0), _softmax(xa @ w + b)
    value = 1.5 * dist.mean() + 5.0 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    loss = scar.scar_loss(task.model, task.params, {}, batch, means, inverses, **kw)
    assert float(loss) == pytest.approx(value, rel=1e-4)
    grad = jax.grad(lambda p: scar.scar_loss(task.model, p, {}, batch, means, inverses, **kw))(
        task.params)
    g = 5.0 * (ps - pt) / 5
    np.testing.assert_allclose(grad["head"]["kernel"], xa.T @ g, rtol=1e-4, atol=1e-6)


def test_scar_runs_retain_free_and_pulls_forget_features_to_their_target_class():
    model, params, state, data = tiny_models.trained_classifier(0, 40)
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               num_classes=4)
    out = _run("scar", task, epochs=2, num_auxiliary=500, batch_size=64, learning_rate=0.01)
    assert out.info["auxiliary"] == "gaussian_noise" and out.info["steps"] == 2 * 6
    aux = scar.gaussian_auxiliary(data["forget"]["image"].shape[1:], 500, 0)
    logits, _ = model.apply(params, state, aux)
    means, inverses, valid = scar.class_statistics(
        np.asarray(model.features(params, state, aux)), np.asarray(logits).argmax(-1), 4,
        delta=0.5, gamma1=3.0, gamma2=3.0)
    x, y = data["forget"]["image"], data["forget"]["label"]

    def distances(p):
        return np.asarray(scar.mahalanobis(model.features(p, state, x), means, inverses,
                                           delta=0.5))

    targets = scar.closest_wrong_class(distances(params), y, valid)
    before = distances(params)[np.arange(len(y)), targets].mean()
    after = distances(out.params)[np.arange(len(y)), targets].mean()
    assert np.all(targets != y) and after < 0.95 * before


# --- sequences: GradDiff, NPO+RT, SimNPO -------------------------------------------------

def test_graddiff_step_is_forget_ascent_plus_retain_descent():
    task = _linear_task()
    lr = 0.3
    out = _run("graddiff", task, learning_rate=lr, epochs=1, batch_size=64, milestones=(),
               **PLAIN)
    w, b = _np(task.params)
    pairs = graddiff.pair_with_retain(base.xy(task.forget), base.xy(task.retain), seed=0)
    fw, fb = _ce_grad(w, b, pairs["x"].astype(np.float64), pairs["y"])
    rw, rb = _ce_grad(w, b, pairs["rx"].astype(np.float64), pairs["ry"])
    _assert_params(out.params, w - lr * (rw - fw), b - lr * (rb - fb))


def _sequence_task(pad=True):
    model = tiny_models.TinySequenceModel(vocab=5, width=3)
    params, state = model.init(0)
    rng = np.random.default_rng(0)

    def split(n):
        tokens = rng.integers(0, 5, (n, 4)).astype(np.int32)
        labels = np.concatenate([tokens[:, 1:], rng.integers(0, 5, (n, 1))], 1).astype(np.int32)
        if pad:
            labels[0, 2:] = -1  # a shorter sequence
        return {"tokens": tokens, "label": labels}

    return methods.UnlearnTask(model=model, params=params, state=state, forget=split(3),
                               retain=split(4), num_classes=5)


def _seq_grads(params, tokens, labels, coef):
    """Gradient of ``Σ_{n,t} coef[n, t] · log p(labels[n, t])`` for embed → linear, by hand."""
    emb, w, b = (np.asarray(params["embed"], np.float64),
                 np.asarray(params["head"]["kernel"], np.float64),
                 np.asarray(params["head"]["bias"], np.float64))
    h = emb[tokens]
    mask = labels >= 0
    dz = (np.eye(5)[np.where(mask, labels, 0)] - _softmax(h @ w + b)) * (coef * mask)[..., None]
    g_emb = np.zeros_like(emb)
    np.add.at(g_emb, tokens, dz @ w.T)
    return {"embed": g_emb, "w": np.einsum("ntd,ntv->dv", h, dz), "b": dz.sum((0, 1))}


def _assert_seq_step(out, params, grad, lr):
    np.testing.assert_allclose(out["embed"], np.asarray(params["embed"]) - lr * grad["embed"],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["head"]["kernel"],
                               np.asarray(params["head"]["kernel"]) - lr * grad["w"],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["head"]["bias"],
                               np.asarray(params["head"]["bias"]) - lr * grad["b"],
                               rtol=1e-4, atol=1e-6)


def test_npo_rt_step_uses_the_summed_sequence_log_prob_and_the_retain_ce():
    task = _sequence_task()
    lr = 0.2
    out = _run("npo_rt", task, learning_rate=lr, epochs=1, batch_size=64, beta=0.1, **PLAIN)
    pairs = graddiff.pair_with_retain(base.xy(task.forget), base.xy(task.retain), seed=0)
    n = len(pairs["y"])
    # at θ = θ_ref, d/d(log π_i) of (2/β) mean softplus(β Δ_i) is 1/n: every forget token of
    # example i gets weight 1/n (the SUM of its log-probs), ascended; the retain CE is the mean
    # over its non-padding tokens, descended.
    forget = _seq_grads(task.params, pairs["x"], pairs["y"], np.full(pairs["y"].shape, 1 / n))
    retain = _seq_grads(task.params, pairs["rx"], pairs["ry"],
                        np.full(pairs["ry"].shape, -1 / np.sum(pairs["ry"] >= 0)))
    _assert_seq_step(out.params, task.params, {k: forget[k] + retain[k] for k in forget}, lr)


def test_simnpo_step_is_length_normalised_and_reference_free():
    task = _sequence_task()
    lr, beta, gamma = 0.2, 2.5, 0.3
    out = _run("simnpo", task, learning_rate=lr, epochs=1, batch_size=64, beta=beta, gamma=gamma,
               **PLAIN)
    x, y = task.forget["tokens"], task.forget["label"]
    params = task.params
    h = np.asarray(params["embed"], np.float64)[x]
    logp = np.log(_softmax(h @ np.asarray(params["head"]["kernel"], np.float64)
                           + np.asarray(params["head"]["bias"], np.float64)))
    mask = y >= 0
    lengths = mask.sum(1)
    log_pi = np.sum(np.take_along_axis(logp, np.where(mask, y, 0)[..., None], -1)[..., 0] * mask,
                    axis=1)
    sig = 1 / (1 + np.exp(-(beta * log_pi / lengths + gamma)))
    # d/d(log π_i) of (2/β) mean softplus(β log π_i / |y_i| + γ) = 2 σ(·) / (n |y_i|)
    coef = np.repeat((2 * sig / (len(y) * lengths))[:, None], y.shape[1], 1)
    grad = _seq_grads(params, x, y, -coef)   # we descend L, i.e. add −dL/dθ
    _assert_seq_step(out.params, params, {k: -v for k, v in grad.items()}, lr)
    assert lengths.tolist() == [2, 4, 4]


def test_likelihood_helpers_sum_and_normalise_tokens():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75]]]))
    labels = jnp.array([[1, 1]])
    assert float(likelihood.sequence_log_prob(logits, labels)[0]) == pytest.approx(
        np.log(0.5) + np.log(0.75), rel=1e-6)
    assert float(likelihood.num_tokens(labels)[0]) == 2.0
    assert float(simnpo.simnpo_loss(jnp.array([-4.0]), jnp.array([2.0]), beta=1.0, gamma=0.5)) \
        == pytest.approx(2 * np.log1p(np.exp(-2.0 + 0.5)), rel=1e-6)


@pytest.mark.parametrize("name", ["salun", "scrub", "jit", "graddiff", "npo_rt", "simnpo",
                                  "l1_sparse"])
def test_new_methods_run_on_a_trained_classifier(name):
    model, params, state, data = tiny_models.trained_classifier(0, 40)
    task = methods.UnlearnTask(model=model, params=params, state=state, forget=data["forget"],
                               retain=data["retain"], train=data["train"], num_classes=4)
    out = _run(name, task, epochs=1)
    assert out.seconds > 0 and out.info["steps"] > 0
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(out.params))


def test_classification_only_methods_reject_sequences():
    task = _sequence_task()
    for name in ("salun", "scrub", "jit", "scar"):
        with pytest.raises(ValueError, match=name):
            _run(name, task)


# --- every gradient method under issue 10's and issue 12's mechanisms --------------------

GRADIENT_METHODS = [n for n in methods.available() if "milestones" in methods.get_method(n).defaults]
BN_METHODS = [n for n in GRADIENT_METHODS if "bn_mode" in methods.get_method(n).defaults]
SMALL = {"scar": {"num_auxiliary": 200, "batch_size": 64}}  # keeps SCAR's set-up fast


@pytest.fixture(scope="module")
def trained_task():
    model, params, state, data = tiny_models.trained_classifier(0, 300)
    keep = data["test"]["label"] != 3
    held_out = {k: v[keep] for k, v in data["test"].items()}
    return model, params, state, data, held_out


def test_gradient_methods_are_the_expected_ones():
    assert {"ga", "npo", "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt",
            "simnpo", "imu", "finetune"} <= set(GRADIENT_METHODS)
    assert "ssd" not in GRADIENT_METHODS and "retrain" not in GRADIENT_METHODS


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_every_gradient_method_stops_at_step_zero_when_the_model_already_forgot(name,
                                                                               trained_task):
    """Issue 12's rule in every gradient loop (gradient_loop and phases.phased_loop)."""
    from imu_jax.unlearning import stopping

    model, params, state, data, held_out = trained_task
    forgot = {**params, "head": {**params["head"],
                                 "bias": params["head"]["bias"].at[3].set(-100.0)}}
    assert tiny_models.accuracy(model, forgot, state, data["forget"]) == 0.0
    seen = []
    task = methods.UnlearnTask(model=model, params=forgot, state=state, forget=data["forget"],
                               retain=data["retain"], train=data["train"], num_classes=4,
                               held_out=held_out, stop_rule=stopping.StopRule(),
                               on_step=lambda *a: seen.append(a[0]))
    out = _run(name, task, **SMALL.get(name, {}))
    assert out.info["stop_reason"] == "already-forgotten" and out.info["steps"] == 0, name
    assert [p["step"] for p in out.info["curve"]] == [0] and seen == []
    for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(forgot)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", BN_METHODS)
def test_every_bn_method_honours_bn_mode_and_calls_on_step(name, trained_task):
    """Issue 10: bn_mode="train" updates the BatchNorm-like running mean, "frozen" keeps it; the
    per-step hook sees every step."""
    model, params, state, data, _ = trained_task
    moved = {}
    for mode in ("train", "frozen"):
        seen = []
        task = methods.UnlearnTask(model=model, params=params, state=state,
                                   forget=data["forget"], retain=data["retain"],
                                   train=data["train"], num_classes=4,
                                   on_step=lambda step, p, s: seen.append(step))
        out = _run(name, task, bn_mode=mode, epochs=3, max_steps=2, **SMALL.get(name, {}))
        assert out.info["bn_mode"] == mode and out.info["steps"] == 2, (name, mode)
        assert seen == [1, 2], (name, mode)
        moved[mode] = not np.allclose(out.state["mean"], state["mean"])
    assert moved == {"train": True, "frozen": False}, name


def test_phased_loop_follows_the_monitor_protocol(trained_task):
    """phased_loop stops when the rule is reached, caps at the rule's max_epochs passes of its
    first epoch, rolls back on divergence, and applies ``milestones`` as gradient_loop does."""
    from imu_jax.unlearning.losses import batch_loss

    model, params, state, data, held_out = trained_task
    arrays = base.xy(data["forget"])

    def ascent(p, s, batch):
        return -jnp.mean(batch_loss(model.apply(p, s, batch["x"])[0], batch["y"]))

    phase = [phases.Phase(ascent, phases.shuffled_batches(arrays, 16))]
    monitor = monitor_lib.Monitor(model, data["forget"], held_out, stopping.StopRule(max_epochs=30))
    new, steps = phases.phased_loop(params, state, phase, epochs=1, learning_rate=0.05, seed=0,
                                    monitor=monitor)
    result = monitor.result()
    assert result["stop_reason"] == "reached" and steps == result["stopped_at"] > 1
    assert tiny_models.accuracy(model, new, state, data["forget"]) <= 0.25
    per_epoch = -(-len(arrays["y"]) // 16)
    never = monitor_lib.Monitor(model, data["forget"], held_out, stopping.StopRule(max_epochs=2))
    _, steps = phases.phased_loop(params, state, phase, epochs=1, learning_rate=0.0, seed=0,
                                  monitor=never)
    assert never.result()["stop_reason"] == "cap" and steps == 2 * per_epoch
    with pytest.warns(stopping.DivergenceWarning):
        new, steps = phases.phased_loop(params, state, phase, epochs=20, learning_rate=1e6,
                                        seed=0)
    assert steps < 20 * per_epoch
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(new))
    # milestones: lr × 0.1 from step round(0.5 · 4) = 2 on, for w ← w − lr · 1 (loss = w)
    lin = [phases.Phase(lambda p, s, b: p["w"], phases.shuffled_batches({"x": np.ones(2)}, 1))]
    p, _ = phases.phased_loop({"w": jnp.zeros(())}, {}, lin, epochs=2, learning_rate=1.0, seed=0,
                              milestones=(0.5,), **PLAIN)
    assert float(p["w"]) == pytest.approx(-(1 + 1 + 0.1 + 0.1))
