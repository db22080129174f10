"""Speed of influence scoring: imu-jax against the PyTorch ways of computing the same numbers.

Run (about 2 minutes on a 2-core CPU; PyTorch from the optional ``bench`` extra):

    pip install -e ".[bench]"
    python experiments/bench_influence.py --out experiments/results/bench_influence

Network: MLP 64 → 512 → 512 → 10 (ReLU), head = the last dense layer, N = 2048 forget examples.
Every contender computes the spec §1 influence of every example with respect to the head:

* ``torch loop``   — the public code: batch of one, autograd, two passes (2N backward passes).
* ``torch vmap``   — ``torch.func.vmap(grad)`` per chunk, two passes (per-example grads twice).
* ``jax scores``   — ``imu.influence_scores`` with the same chunk as torch vmap (jitted, streaming;
                     pass 2 is a JVP).
* ``jax unchunked``— ``imu.influence_scores`` with ``chunk_size=None``: one pass, all N × P gradients
                     at once (the default; fine for small heads).
* ``jax closed``   — backbone features + ``imu.classifier_influence`` (closed form).
* ``jax forward``  — one jitted forward pass of the same network over the same examples.

All times are medians of repeated runs after warm-up (compilation excluded), measured in this one
process on the same inputs; the script checks that all contenders agree on the scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import imu_jax as imu

SIZES = (64, 512, 512, 10)


def init_mlp(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"kernel": rng.normal(0, np.sqrt(2 / d_in), (d_in, d_out)).astype(np.float32),
             "bias": rng.normal(0, 0.1, d_out).astype(np.float32)}
            for d_in, d_out in zip(SIZES[:-1], SIZES[1:])]


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- JAX ---------------------------------------------------------------------------------------


def jax_contenders(layers, x, y, chunk_size):
    layers = jax.tree.map(jnp.asarray, layers)
    body, head = layers[:-1], layers[-1]

    def features(body, x):
        for layer in body:
            x = jax.nn.relu(x @ layer["kernel"] + layer["bias"])
        return x

    def example_loss(head, example):
        logits = features(body, example["x"]) @ head["kernel"] + head["bias"]
        return -jax.nn.log_softmax(logits)[example["y"]]

    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    forward = jax.jit(lambda layers, x: features(layers[:-1], x) @ layers[-1]["kernel"]
                      + layers[-1]["bias"])
    closed = jax.jit(lambda layers, x, y: imu.classifier_influence(
        features(layers[:-1], x), y, layers[-1]))

    return {
        "jax scores": lambda: imu.influence_scores(example_loss, head, batch,
                                                   chunk_size=chunk_size).block_until_ready(),
        "jax unchunked": lambda: imu.influence_scores(example_loss, head,
                                                      batch).block_until_ready(),
        "jax closed": lambda: closed(layers, batch["x"], batch["y"]).block_until_ready(),
        "jax forward": lambda: forward(layers, batch["x"]).block_until_ready(),
    }


# --- PyTorch -----------------------------------------------------------------------------------


def torch_contenders(layers, x, y, chunk_size, damping=0.01):
    import torch
    from torch.func import functional_call, grad, vmap

    torch.set_num_threads(os.cpu_count() or 1)
    net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                              torch.nn.ReLU(), torch.nn.Linear(512, 10))
    with torch.no_grad():
        for module, layer in zip([net[0], net[2], net[4]], layers):
            module.weight.copy_(torch.from_numpy(layer["kernel"].T))
            module.bias.copy_(torch.from_numpy(layer["bias"]))
    net.eval()
    head = [net[4].weight, net[4].bias]
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()
    ce = torch.nn.functional.cross_entropy

    def loop():
        """The public code: one example at a time, autograd, two passes."""
        total = [torch.zeros_like(p) for p in head]
        total_sq = [torch.zeros_like(p) for p in head]
        for i in range(len(xt)):
            g = torch.autograd.grad(ce(net(xt[i:i + 1]), yt[i:i + 1]), head)
            for t, s, gi in zip(total, total_sq, g):
                t += gi
                s += gi * gi
        n = len(xt)
        direction = [(t / n) / (s / n + damping) for t, s in zip(total, total_sq)]
        scores = torch.empty(n)
        for i in range(n):
            g = torch.autograd.grad(ce(net(xt[i:i + 1]), yt[i:i + 1]), head)
            scores[i] = -sum((gi * d).sum() for gi, d in zip(g, direction))
        return scores.numpy()

    params = {k: v.detach() for k, v in net.named_parameters()}
    head_names = ["4.weight", "4.bias"]

    def example_loss(head_params, xi, yi):
        full = {**params, **dict(zip(head_names, head_params))}
        return ce(functional_call(net, full, (xi[None],)), yi[None])

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    head_params = tuple(params[k] for k in head_names)

    def vmapped():
        """torch.func.vmap(grad), chunk by chunk, two passes."""
        with torch.no_grad():
            total = [torch.zeros_like(p) for p in head_params]
            total_sq = [torch.zeros_like(p) for p in head_params]
            for start in range(0, len(xt), chunk_size):
                g = per_example(head_params, xt[start:start + chunk_size], yt[start:start + chunk_size])
                for t, s, gi in zip(total, total_sq, g):
                    t += gi.sum(0)
                    s += (gi * gi).sum(0)
            n = len(xt)
            direction = [(t / n) / (s / n + damping) for t, s in zip(total, total_sq)]
            scores = []
            for start in range(0, len(xt), chunk_size):
                g = per_example(head_params, xt[start:start + chunk_size], yt[start:start + chunk_size])
                scores.append(-sum((gi * d).flatten(1).sum(1) for gi, d in zip(g, direction)))
            return torch.cat(scores).numpy()

    return {"torch loop": loop, "torch vmap": vmapped}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-examples", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=256,
                        help="chunk of jax scores and torch vmap (both get the same)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=1,
                        help="repeats of the slow batch-of-one loop")
    parser.add_argument("--out", default=None, help="folder for results.json and results.md")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(1)
    layers = init_mlp()
    x = rng.normal(0, 1, (args.num_examples, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], args.num_examples).astype(np.int32)

    contenders = jax_contenders(layers, x, y, args.chunk_size)
    try:
        contenders.update(torch_contenders(layers, x, y, args.chunk_size))
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): timing JAX only.")

    # The contenders compute the same numbers (the forward pass computes logits, not scores).
    reference = np.asarray(contenders["jax scores"]())
    agreement = {}
    for name, fn in contenders.items():
        if name != "jax forward":
            scores = np.asarray(fn())
            agreement[name] = float(np.max(np.abs(scores - reference)) / np.max(np.abs(reference)))
            print(f"{name:13s} max relative difference to jax scores: {agreement[name]:.1e}")
            assert agreement[name] < 1e-3, f"{name} disagrees with jax scores"

    seconds = {}
    for name, fn in contenders.items():
        repeats = args.loop_repeats if name == "torch loop" else args.repeats
        seconds[name] = timed(fn, repeats)
        print(f"{name:13s} {seconds[name] * 1e3:10.2f} ms")

    ratios = {
        "torch loop / jax scores": seconds.get("torch loop", np.nan) / seconds["jax scores"],
        "torch vmap / jax scores": seconds.get("torch vmap", np.nan) / seconds["jax scores"],
        "torch vmap / jax unchunked": seconds.get("torch vmap", np.nan) / seconds["jax unchunked"],
        "jax closed / jax forward": seconds["jax closed"] / seconds["jax forward"],
    }
    for name, value in ratios.items():
        print(f"{name:28s} {value:8.2f}x")

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        record = {"num_examples": args.num_examples, "chunk_size": args.chunk_size,
                  "seconds": seconds, "ratios": ratios, "max_relative_difference": agreement, "jax": jax.__version__,
                  "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
                  "machine": platform.processor() or platform.machine()}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(record, f, indent=2)
    return seconds, ratios


if __name__ == "__main__":
    main()
