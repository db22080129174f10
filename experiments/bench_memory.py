"""Peak memory of streaming influence scoring on a large head.

Run (about 30 seconds on a 2-core CPU):

    python experiments/bench_memory.py                 # prints the measurement
    python experiments/bench_memory.py --check 2.0     # exits 1 if peak RSS >= 2.0 GiB

A 512 × 1000 dense head (513,000 parameters) and N = 4096 forget examples: materialized, their
per-example gradients would take N × P × 4 bytes = 7.8 GiB. ``imu.influence_scores`` with its
default chunking (``imu.auto_chunk_size``: 8 examples here on CPU, 8 × P × 4 bytes = 0.02 GiB;
``--chunk-size`` sets another) holds one chunk at a time. The script reports the
process's peak resident memory (``ru_maxrss``, everything included: Python, JAX, XLA buffers)
before and after scoring. Run it in a fresh process: the peak is process-wide.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import imu_jax as imu

GIB = 1024**3


def peak_rss_bytes() -> int:
    """Peak resident set size of this process: Linux's ``VmHWM`` (this program's own memory),
    else ``ru_maxrss``. On Linux ``ru_maxrss`` survives ``exec``: a process started by a big
    parent (a pytest worker of 2 GiB) would report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-examples", type=int, default=4096)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="default: the library's automatic choice (imu.auto_chunk_size)")
    parser.add_argument("--check", type=float, default=None, metavar="GIB",
                        help="exit with status 1 unless the peak stays below this many GiB")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n, d, c = args.num_examples, args.features, args.classes
    head = {"kernel": jnp.asarray(rng.normal(0, 0.05, (d, c)), jnp.float32),
            "bias": jnp.zeros(c, jnp.float32)}
    batch = {"h": jnp.asarray(rng.normal(0, 1, (n, d)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, c, n), jnp.int32)}

    def example_loss(head, example):
        logits = example["h"] @ head["kernel"] + head["bias"]
        return -jax.nn.log_softmax(logits)[example["y"]]

    before = peak_rss_bytes()
    start = time.perf_counter()
    scores = imu.influence_scores(example_loss, head, batch, chunk_size=args.chunk_size)
    scores.block_until_ready()
    seconds = time.perf_counter() - start
    after = peak_rss_bytes()

    num_params = d * c + c
    chunk_size = args.chunk_size or imu.auto_chunk_size(n, head)
    # XLA's own plan for the temporary buffers, chunked and not (compiled only, never run).
    from imu_jax import influence
    planned = {}
    for name, chunk in (("chunked", args.chunk_size), ("unchunked", n)):  # n: all at once
        compiled = influence._influence_scores.lower(
            *influence._scores_args(example_loss, head, batch, chunk_size=chunk)).compile()
        planned[name] = compiled.memory_analysis().temp_size_in_bytes / GIB
    record = {
        "num_examples": n, "head": [d, c], "num_params": num_params, "chunk_size": chunk_size,
        "materialized_gib": n * num_params * 4 / GIB,
        "chunk_gib": chunk_size * num_params * 4 / GIB,
        "peak_rss_before_gib": before / GIB, "peak_rss_gib": after / GIB, "seconds": seconds,
        "scores_finite": bool(jnp.all(jnp.isfinite(scores))),
        "xla_temp_gib_chunked": planned["chunked"],
        "xla_temp_gib_unchunked": planned["unchunked"],
    }
    print(json.dumps(record, indent=2))
    if args.check is not None and not (record["peak_rss_gib"] < args.check and
                                       record["scores_finite"]):
        print(f"FAILED: peak RSS {record['peak_rss_gib']:.2f} GiB is not below {args.check} GiB",
              file=sys.stderr)
        sys.exit(1)
    return record


if __name__ == "__main__":
    main()
