"""Issue 25: the closed form on a user's own model costs about one forward pass.

Run (about a minute on a 2-core CPU; ``--profile`` adds the closed form's stages)::

    python experiments/bench_user_model.py [--profile]

Two bodies, each written as a user would in Flax NNX (top layer named ``classifier``, not
``head``) and in Linen (top layer ``Dense_2`` / ``Dense_0``), N = 2048 forget examples, as in
``bench_influence.py``:

* ``mlp``: 64 → 512 → 512 → 10, a body whose matmuls are only ~50× the head's: the closed form's
  three extra [N, D] × [D, C] contractions are a visible share of the forward pass;
* ``cnn``: 32×32×3 images → conv 3×3, 32 → conv 3×3 stride 2, 64 → conv 3×3 stride 2, 128 →
  global mean → 10, the shape of a small image classifier, where the body dominates.

For each, in one run:

* ``forward``  — one jitted forward pass of the model over the N examples (the floor), the
  parameters passed as arguments (as a compiled step takes them, and as ``bench_influence.py``'s
  forward does);
* ``forward (closed over)`` — the same with the parameters closed over (XLA sees them as
  constants), for reference;
* ``forward (chunked)`` — the same pass in the chunks the closed form uses (``jax.lax.map`` over
  as many rows as fit its activation budget, ``closed_form.PASS_CHUNK_BYTES``): on a conv body
  this is faster than one batch of N (the activations stay in cache), so the ratio that counts
  is the closed form over the *faster* of the two forwards;
* ``closed``   — ``forget_influence``, the influence step of ``imu.unlearn``, on the model as the
  user passes it (the closed form engages by structure; the script asserts it did);
* ``generic``  — the same with ``closed_form="never"`` (the streaming per-example path), for scale.

Timing: round-robin (one call each per round after a warm-up round), ``--repeats`` rounds; the
ratio of medians and of fastest runs (wall clock) and the ratio of median CPU times (the
process's, all threads: less sensitive to other jobs on a shared machine) are printed with
``os.getloadavg()`` before and after. The goal of issue 25 is closed / forward ≤ 1.1× on an
idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import imu_jax as imu
from imu_jax.unlearning.closed_form import _in_chunks, _rows_per_chunk
from imu_jax.unlearning.selection import forget_influence

SIZES = (64, 512, 512, 10)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.body1 = nnx.Linear(SIZES[0], SIZES[1], rngs=rngs)
        self.body2 = nnx.Linear(SIZES[1], SIZES[2], rngs=rngs)
        self.classifier = nnx.Linear(SIZES[2], SIZES[3], rngs=rngs)

    def __call__(self, x):
        return self.classifier(jax.nn.relu(self.body2(jax.nn.relu(self.body1(x)))))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jax.nn.relu(nn.Dense(SIZES[1])(x))
        x = jax.nn.relu(nn.Dense(SIZES[2])(x))
        return nn.Dense(SIZES[3])(x)


IMAGE, CONV = (32, 32, 3), ((32, 1), (64, 2), (128, 2))  # (channels, stride) of each conv


class NnxCnn(nnx.Module):
    def __init__(self, rngs):
        channels = [IMAGE[-1]] + [c for c, _ in CONV]
        self.convs = nnx.List([nnx.Conv(channels[i], c, (3, 3), strides=stride, rngs=rngs)
                               for i, (c, stride) in enumerate(CONV)])
        self.classifier = nnx.Linear(channels[-1], SIZES[-1], rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.classifier(x.mean(axis=(1, 2)))


class LinenCnn(nn.Module):
    @nn.compact
    def __call__(self, x):
        for c, stride in CONV:
            x = jax.nn.relu(nn.Conv(c, (3, 3), strides=stride)(x))
        return nn.Dense(SIZES[-1])(x.mean(axis=(1, 2)))  # Dense_0: the head


def _time_round_robin(contenders: dict, repeats: int):
    """``(wall seconds, CPU seconds)`` per contender and round; the first round warms up."""
    times = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, fn in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if round_:  # the first round warms up (compiles)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return times, cpu


def bench(name, model, params, state, x, y, head, repeats):
    """Times forward / closed / generic for one user model; returns the record."""
    fm, p, s = (model, params, state)
    forward = jax.jit(lambda params, state, xb: fm.apply(params, state, xb, train=False)[0])
    forward_closed_over = jax.jit(lambda xb: fm.apply(p, s, xb, train=False)[0])
    logits_of = lambda params, state, xb: fm.apply(params, state, xb, train=False)[0]  # noqa: E731
    rows = _rows_per_chunk(logits_of, p, s, x)  # the closed form's chunks of the same pass
    forward_chunked = jax.jit(lambda params, state, xb: _in_chunks(
        lambda c: logits_of(params, state, c), xb, rows))
    closed_cfg = imu.UnlearnConfig(head=head)
    generic_cfg = imu.UnlearnConfig(head=head, closed_form="never")
    check = forget_influence(fm, p, s, x, y, closed_cfg)
    assert check[1], f"{name}: the closed form did not engage ({check.reason})"
    contenders = {
        "forward": lambda: forward(p, s, jnp.asarray(x)).block_until_ready(),
        "forward (closed over)": lambda: forward_closed_over(jnp.asarray(x)).block_until_ready(),
        "forward (chunked)": lambda: forward_chunked(p, s, jnp.asarray(x)).block_until_ready(),
        "closed": lambda: forget_influence(fm, p, s, x, y, closed_cfg),
        "generic": lambda: forget_influence(fm, p, s, x, y, generic_cfg),
    }
    times, cpu = _time_round_robin(contenders, repeats)
    scores_closed = np.asarray(forget_influence(fm, p, s, x, y, closed_cfg)[0])
    scores_generic = np.asarray(forget_influence(fm, p, s, x, y, generic_cfg)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    floor = min(("forward", "forward (chunked)"), key=lambda k: med[k])  # the faster forward
    return {"model": name, "reason": check.reason, "rows_per_chunk": rows, "floor": floor,
            "closed/fastest forward (median)": med["closed"] / med[floor],
            "closed/fastest forward (median CPU time)": med_cpu["closed"] / med_cpu[floor],
            "median_s": med, "fastest_s": best, "median_cpu_s": med_cpu,
            "closed/forward (median)": med["closed"] / med["forward"],
            "closed/forward (fastest)": best["closed"] / best["forward"],
            "closed/forward (median CPU time)": med_cpu["closed"] / med_cpu["forward"],
            "closed/forward closed over (median)": med["closed"] / med["forward (closed over)"],
            "generic/closed (median)": med["generic"] / med["closed"],
            "max_rel_diff_closed_vs_generic": float(
                np.max(np.abs(scores_closed - scores_generic))
                / (np.max(np.abs(scores_generic)) + 1e-30))}


def stage_profile(model, params, state, x, y, layer, repeats) -> dict:
    """Where the closed form's time goes beyond a forward pass: jitted programs that stop after
    each stage of the closed-form program (``imu_jax.unlearning.closed_form``), timed round-robin
    (median CPU time, ms), and each stage's cost over the one before it.

    Stages: the model's forward pass (logits only); the pass giving the head's input and the
    logits (``head_input_and_logits``, the features [N, D] kept); + the errors ``E`` and the sums
    ``Eᵀ H``, ``(E∘E)ᵀ (H∘H)``; + the scores ``rowsum((H dirᵀ) ∘ E)`` (the closed form); + the
    rest of ``forget_influence`` (the head check, the check on device, moving x and y to the
    device and the scores back). Stopping after a stage changes what XLA fuses, so the costs are
    indicative.
    """
    from imu_jax.influence import closed_form_errors, closed_form_scores, closed_form_sums

    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def both(p, s, xb):
        return model.head_input_and_logits(p, s, xb, layer)

    def sums(p, s, xb, yb):
        h, logits = both(p, s, xb)
        return h, closed_form_sums(h, closed_form_errors(logits, yb))

    def scores(p, s, xb, yb):
        h, logits = both(p, s, xb)
        e = closed_form_errors(logits, yb)
        return h, closed_form_scores(h, e, closed_form_sums(h, e), h.shape[0], 0.01)

    config = imu.UnlearnConfig(head=f"^{layer}/")
    stages = {
        "forward (logits)": (jax.jit(lambda p, s, xb: model.apply(p, s, xb)[0]), (xj,)),
        "+ head input kept": (jax.jit(both), (xj,)),
        "+ errors and sums": (jax.jit(sums), (xj, yj)),
        "+ scores": (jax.jit(scores), (xj, yj)),
    }
    contenders = {name: (lambda fn=fn, args=args: jax.block_until_ready(fn(params, state, *args)))
                  for name, (fn, args) in stages.items()}
    contenders["+ rest of forget_influence"] = lambda: forget_influence(model, params, state, x,
                                                                        y, config)
    _, cpu = _time_round_robin(contenders, repeats)
    med = {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
    names = list(med)
    return {"median_cpu_ms": med,
            "stage_cost_ms": {n: med[n] - med[names[i - 1]] for i, n in enumerate(names) if i},
            "of_forward": {n: med[n] / med[names[0]] for n in names}}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true",
                        help="also time the closed form's stages (stage_profile)")
    parser.add_argument("--bodies", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    y = rng.integers(0, SIZES[-1], args.num_examples).astype(np.int32)
    load_before = os.getloadavg()
    records = []
    for body in args.bodies:
        shape, nnx_net, linen_net, linen_head = ((SIZES[:1], NnxNet, LinenNet, "Dense_2")
                                                 if body == "mlp" else
                                                 (IMAGE, NnxCnn, LinenCnn, "Dense_0"))
        x = rng.normal(size=(args.num_examples, *shape)).astype(np.float32)
        linen = linen_net()
        for name, (model, params, state), layer in (
                (f"{body}, nnx (classifier)", imu.from_nnx(nnx_net(nnx.Rngs(0))), "classifier"),
                (f"{body}, linen ({linen_head})",
                 imu.from_linen(linen, linen.init(jax.random.key(0), x[:1])), linen_head)):
            records.append(bench(name, model, params, state, x, y, f"^{layer}/", args.repeats))
            if args.profile:
                records[-1]["stages"] = stage_profile(model, params, state, x, y, layer,
                                                      args.repeats)
    load_after = os.getloadavg()
    for record in records:
        record["loadavg_before"], record["loadavg_after"] = load_before, load_after
        print(json.dumps(record, indent=1))
    for record in records:
        print(f"{record['model']}: closed / forward {record['closed/forward (median)']:.2f}x "
              f"median, {record['closed/forward (fastest)']:.2f}x fastest runs, "
              f"{record['closed/forward (median CPU time)']:.2f}x median CPU time; closed / "
              f"the faster forward ({record['floor']}, chunks of {record['rows_per_chunk']} "
              f"rows) {record['closed/fastest forward (median)']:.2f}x median, "
              f"{record['closed/fastest forward (median CPU time)']:.2f}x median CPU time")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    return records


if __name__ == "__main__":
    main()
