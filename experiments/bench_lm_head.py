"""Per-sequence influence of a language-model output layer: time against one forward pass, memory.

Run (full size: about 15 minutes on an idle 2-core CPU; ``--quick``: seconds):

    python experiments/bench_lm_head.py --out experiments/results/bench_lm_head
    python experiments/bench_lm_head.py --quick

Workload (defaults): an output layer of width D = 1024 and vocabulary V = 32,000 (a dense
softmax head, 32.8 M parameters), N = 1,024 sequences of T = 128 tokens (features ``[N, T, D]``,
random, float32; next-token labels with ~5% padding). Contenders, each compiled first and then run
``--repeats`` times (median wall time; compilation excluded; the default 1 is one run):

* ``forward``   — one jitted forward pass of the layer: logits and the mean token cross-entropy of
                  every sequence, streamed over chunks of sequences (the ``N × T × V`` logits,
                  16 GiB in float32, never exist at once).
* ``influence`` — ``imu.sequence_influence`` (closed form, streamed over vocabulary chunks).
* ``influence bf16`` — the same with ``compute_dtype=bfloat16``; its error against float32 is
                  printed (max |difference| / max |score|, and whether the selected set changes).

Memory: the process's peak resident memory (``ru_maxrss``) after each contender, and XLA's
compiled plan (arguments + temporaries + outputs) of ``sequence_influence`` for a sweep of
vocabulary sizes at the same N, T, D (compiled only, never run): the temporaries stay flat as V
grows, while materialized per-sequence gradients would take ``N × D × V × 4`` bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

import imu_jax as imu
from imu_jax import lm_head as seq

GIB = 1024**3


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def make_problem(n, t, d, v, seed=0):
    key_h, key_w, key_y, key_p = jax.random.split(jax.random.key(seed), 4)
    features = jax.random.normal(key_h, (n, t, d), jnp.float32)
    head = {"kernel": jax.random.normal(key_w, (d, v), jnp.float32) / np.sqrt(d),
            "bias": jnp.zeros(v, jnp.float32)}
    labels = jax.random.randint(key_y, (n, t), 0, v)
    labels = jnp.where(jax.random.uniform(key_p, (n, t)) < 0.05, -1, labels)
    return features, labels.astype(jnp.int32), head


def forward_fn(sequences_per_chunk):
    """Mean token cross-entropy of every sequence, streamed over chunks of sequences."""

    def one_chunk(args, kernel, bias):
        h, y = args
        logits = jnp.einsum("ntd,dv->ntv", h, kernel) + bias
        logz = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, jnp.maximum(y, 0)[..., None], -1)[..., 0]
        mask = y >= 0
        return jnp.sum((logz - picked) * mask, 1) / jnp.maximum(jnp.sum(mask, 1), 1)

    @jax.jit
    def forward(features, labels, head):
        n = features.shape[0]
        s = sequences_per_chunk
        chunks = (features.reshape((n // s, s) + features.shape[1:]),
                  labels.reshape((n // s, s) + labels.shape[1:]))
        losses = jax.lax.map(lambda a: one_chunk(a, head["kernel"], head["bias"]), chunks)
        return losses.reshape(n)

    return forward


def compiled_influence(features, labels, head, vocab_chunk, compute_dtype):
    """``sequence_influence``'s jitted core, compiled (compile time kept out of the timing)."""
    d_type = jnp.dtype(compute_dtype)
    return seq._sequence_influence.lower(features, labels, head["kernel"], head["bias"],
                                         imu.DEFAULT_DAMPING, vocab_chunk, d_type).compile()


def plan_bytes(compiled) -> dict:
    stats = compiled.memory_analysis()
    return {"temp_gib": stats.temp_size_in_bytes / GIB,
            "total_gib": (stats.temp_size_in_bytes + stats.argument_size_in_bytes
                          + stats.output_size_in_bytes - stats.alias_size_in_bytes) / GIB}


def timed_runs(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-sequences", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--sweep", default="8000,16000,32000,64000,128000,256000",
                        help="vocabulary sizes of the memory sweep (compiled only)")
    parser.add_argument("--sweep-sequences", type=int, default=None,
                        help="N of the memory sweep (default: --num-sequences)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sequences-per-chunk", type=int, default=8, help="of the forward pass")
    parser.add_argument("--vocab-chunk", type=int, default=None,
                        help="default: sequence_influence's automatic choice")
    parser.add_argument("--quick", action="store_true", help="N=32, T=16, D=64, V=2000")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_sequences, args.seq_len, args.width, args.vocab = 32, 16, 64, 2000
        args.sweep = "1000,2000,4000,8000"
    n, t, d, v = args.num_sequences, args.seq_len, args.width, args.vocab
    load_before = load()
    print(f"load before: {load_before}")
    features, labels, head = make_problem(n, t, d, v)
    jax.block_until_ready((features, labels, head))
    chunk = args.vocab_chunk or seq._vocab_chunk(n, t, d, v, 4, seq.SEQUENCE_CHUNK_BYTES)
    print(f"N={n} T={t} D={d} V={v}: vocabulary chunk {chunk}, inputs "
          f"{(features.nbytes + head['kernel'].nbytes) / GIB:.2f} GiB, "
          f"per-sequence gradients if materialized {n * d * v * 4 / GIB:.1f} GiB")

    forward = forward_fn(args.sequences_per_chunk).lower(features, labels, head).compile()
    influence = compiled_influence(features, labels, head, chunk, jnp.float32)
    influence_bf16 = compiled_influence(features, labels, head, chunk, jnp.bfloat16)
    damping = jnp.asarray(imu.DEFAULT_DAMPING, jnp.float32)
    runs = {"forward": lambda: forward(features, labels, head),
            "influence": lambda: influence(features, labels, head["kernel"], head["bias"], damping),
            "influence bf16": lambda: influence_bf16(features, labels, head["kernel"],
                                                     head["bias"], damping)}
    seconds, rss, outputs = {}, {}, {}
    for name, fn in runs.items():
        start = time.perf_counter()  # compiled already: the first run is timed too
        outputs[name] = np.asarray(jax.block_until_ready(fn()))
        first = time.perf_counter() - start
        seconds[name] = statistics.median([first] + timed_runs(fn, args.repeats - 1))
        rss[name] = peak_rss_gib()
        print(f"{name:15s} {seconds[name]:9.2f} s   peak RSS so far {rss[name]:.2f} GiB")
    exact, low = outputs["influence"], outputs["influence bf16"]
    bf16_error = float(np.max(np.abs(low - exact)) / np.max(np.abs(exact)))
    selected = lambda s: set(imu.influence_weights(s)[0].tolist())
    overlap = len(selected(low) & selected(exact)) / max(1, len(selected(exact)))
    ratios = {"influence / forward": seconds["influence"] / seconds["forward"],
              "influence bf16 / forward": seconds["influence bf16"] / seconds["forward"]}
    for name, value in ratios.items():
        print(f"{name:26s} {value:6.2f}x")
    print(f"bf16 vs float32: max relative error {bf16_error:.2e}, selected set overlap "
          f"{overlap:.3f}")

    sweep, n_sweep = [], args.sweep_sequences or n
    for vocab in [int(x) for x in args.sweep.split(",") if x]:
        shapes = (jax.ShapeDtypeStruct((n_sweep, t, d), jnp.float32),
                  jax.ShapeDtypeStruct((n_sweep, t), jnp.int32),
                  {"kernel": jax.ShapeDtypeStruct((d, vocab), jnp.float32),
                   "bias": jax.ShapeDtypeStruct((vocab,), jnp.float32)})
        c = seq._vocab_chunk(n_sweep, t, d, vocab, 4, seq.SEQUENCE_CHUNK_BYTES)
        plan = plan_bytes(compiled_influence(*shapes, c, jnp.float32))
        row = {"num_sequences": n_sweep, "vocab": vocab, "vocab_chunk": c, **plan,
               "head_gib": d * vocab * 4 / GIB,
               "materialized_grads_gib": n_sweep * d * vocab * 4 / GIB}
        sweep.append(row)
        print(f"N={n_sweep} V={vocab:7d} chunk {c:4d}: XLA temporaries {plan['temp_gib']:.3f} GiB, "
              f"with inputs {plan['total_gib']:.2f} GiB (head {row['head_gib']:.2f} GiB; "
              f"materialized gradients would be {row['materialized_grads_gib']:.0f} GiB)")
    load_after = load()
    print(f"load after: {load_after}")

    record = {"num_sequences": n, "seq_len": t, "width": d, "vocab": v, "vocab_chunk": chunk,
              "seconds": seconds, "ratios": ratios, "peak_rss_gib": rss,
              "bf16_max_relative_error": bf16_error, "bf16_selected_overlap": overlap,
              "memory_sweep": sweep, "load": [load_before, load_after], "jax": jax.__version__,
              "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
