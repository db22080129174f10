"""Speed of influence scoring and of an IMU step: imu-jax against PyTorch and plain baselines.

Run (a few minutes on a 2-core CPU; PyTorch from the optional ``bench`` extra):

    pip install -e ".[bench]"
    python experiments/bench_influence.py --out experiments/results/bench_influence

Network: MLP 64 → 512 → 512 → 10 (ReLU), N = 2048 forget examples. The head is the last dense
layer (``--head-layers 1``, 5,130 parameters: it has the closed form) or the last two
(``--head-layers 2``, a two-layer MLP head of 267,786 parameters: no closed form, the generic
path only). Every scoring contender computes the spec §1 influence of every example with
respect to the head:

* ``torch loop``   — the public code: batch of one, autograd, two passes (2N backward passes).
* ``torch vmap``   — ``torch.func.vmap(grad)`` per chunk, two passes (per-example grads twice).
  Both PyTorch contenders run on the GPU when JAX does (``--torch-device auto``).
* ``jax default``  — ``imu.influence_scores(loss, head, batch)``: no tuning argument (the chunk is
                     chosen by ``imu.auto_chunk_size``).
* ``jax chunk=C``  — the same with an explicit ``chunk_size`` (a sweep, and ``C = N``: all N × P
                     gradients at once): shows the default is the fastest setting.
* ``jax closed``   — backbone features + ``imu.classifier_influence`` (closed form), one jit
                     (one-layer head only).
* ``jax forward``  — one jitted forward pass of the same network over the same examples.

One unlearning step on a batch of 256 forget examples (head only, same model and batch):

* ``imu step``     — the jitted step of ``imu.unlearn`` (global mode: ``imu_sgd`` = weighted ascent,
                     L1, coupled weight decay, SGD with momentum).
* ``imu step per-batch`` — the same in per-batch mode (influence inside the step), for reference.
* ``sgd step``     — plain ``optax.sgd``: gradient of the mean loss, one update.
* ``per-batch: …`` — with ``--profile``: the per-batch step's per-example factors alone, and with
                     the influence statistics (what bounds the per-batch step).

Timing: the contenders run round-robin (one call each per round, ``--repeats`` rounds after a
warm-up round; the slow loop only in the first ``--loop-repeats`` rounds), so a change in machine
load hits them alike. Two ratios are printed: the median of the per-round ratios, and the ratio
of each contender's fastest run (its least-disturbed one on a shared machine). The machine's load
(``uptime``) is printed before and after. The script checks that all scoring contenders agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import imu_jax as imu
from imu_jax.unlearning import loop as unlearn_loop

SIZES = (64, 512, 512, 10)


def init_mlp(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"kernel": rng.normal(0, np.sqrt(2 / d_in), (d_in, d_out)).astype(np.float32),
             "bias": rng.normal(0, 0.1, d_out).astype(np.float32)}
            for d_in, d_out in zip(SIZES[:-1], SIZES[1:])]


def load() -> str:
    """The machine's load average (``uptime``): other jobs share the cores."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def round_robin(contenders: dict, repeats: int, slow: dict[str, int],
                settle: float = 0.2) -> dict[str, list[float]]:
    """Wall seconds per round of every contender, run one after the other in each round.

    One warm-up round first (compilation excluded). ``slow[name]`` limits that contender to its
    first rounds. ``settle`` seconds pass between calls (not timed), so one contender's
    lingering threads do not slow the next.
    """
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for round_index in range(repeats):
        for name, fn in contenders.items():
            if round_index >= slow.get(name, repeats):
                continue
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            time.sleep(settle)  # PyTorch's OpenMP threads spin for a while after returning
    return times


def paired_ratio(times, slow_name, fast_name) -> float:
    """Median over rounds of ``slow / fast`` measured in the same round."""
    pairs = [a / b for a, b in zip(times[slow_name], times[fast_name])]
    return statistics.median(pairs) if pairs else float("nan")


def min_ratio(times, slow_name, fast_name) -> float:
    """``min(slow) / min(fast)``: each contender's least-disturbed run (robust on a shared machine)."""
    return min(times[slow_name]) / min(times[fast_name])


# --- JAX ---------------------------------------------------------------------------------------


def features_fn(body, x):
    for layer in body:
        x = jax.nn.relu(x @ layer["kernel"] + layer["bias"])
    return x


def head_fn(head, h):
    """The head: one dense layer (a dict) or a list of them with ReLU between."""
    layers = head if isinstance(head, list) else [head]
    for layer in layers[:-1]:
        h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
    return h @ layers[-1]["kernel"] + layers[-1]["bias"]


def split_layers(layers, head_layers):
    """``(body, head)``: the head is the last layer (a dict) or the last ``head_layers``."""
    body = layers[:-head_layers]
    return body, (layers[-1] if head_layers == 1 else list(layers[-head_layers:]))


def jax_contenders(layers, x, y, chunk_sizes, head_layers=1):
    layers = jax.tree.map(jnp.asarray, layers)
    body, head = split_layers(layers, head_layers)

    def example_loss(head, example):
        logits = head_fn(head, features_fn(body, example["x"]))
        return -jax.nn.log_softmax(logits)[example["y"]]

    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    forward = jax.jit(lambda layers, x: features_fn(layers[:-1], x) @ layers[-1]["kernel"]
                      + layers[-1]["bias"])
    closed = jax.jit(lambda layers, x, y: imu.classifier_influence(
        features_fn(layers[:-1], x), y, layers[-1]))

    contenders = {
        "jax default": lambda: imu.influence_scores(example_loss, head,
                                                    batch).block_until_ready(),
    }
    for chunk in chunk_sizes:
        contenders[f"jax chunk={chunk}"] = (
            lambda chunk=chunk: imu.influence_scores(example_loss, head, batch,
                                                     chunk_size=chunk).block_until_ready())
    if head_layers == 1:
        contenders["jax closed"] = lambda: closed(layers, batch["x"],
                                                  batch["y"]).block_until_ready()
    contenders["jax forward"] = lambda: forward(layers, batch["x"]).block_until_ready()
    return contenders


class MLP:
    """The benchmark network as an ``imu.unlearn`` model: ``apply`` and ``features``."""

    def apply(self, params, state, x, *, train=False):
        return head_fn(params["head"], features_fn(params["body"], x)), state

    def features(self, params, state, x):
        return features_fn(params["body"], x)


def step_contenders(layers, x, y, batch_size, head_layers=1, profile=False):
    """One jitted IMU step (as ``imu.unlearn`` runs it) and one plain optax.sgd step, same head."""
    model = MLP()
    body, head = split_layers(jax.tree.map(jnp.asarray, layers), head_layers)
    params = {"body": body, "head": head}
    xb, yb = jnp.asarray(x[:batch_size]), jnp.asarray(y[:batch_size])
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, batch_size), jnp.float32)
    contenders = {}
    for name, mode in (("imu step", "global"), ("imu step per-batch", "per_batch")):
        config = imu.UnlearnConfig(influence_mode=mode, batch_size=batch_size)
        head, rest = imu.split_head(params, config.head)
        optimizer = unlearn_loop.make_optimizer(config, 100)
        step = unlearn_loop.make_step(model, config, optimizer)
        opt_state = optimizer.init(head)
        contenders[name] = (lambda step=step, head=head, rest=rest, opt_state=opt_state:
                            jax.block_until_ready(step(head, opt_state, rest, {}, xb, yb, weights)))

    head, rest = imu.split_head(params, "head")
    sgd = optax.sgd(0.01)

    @jax.jit
    def sgd_step(head, opt_state, rest, x, y):
        def mean_loss(head):
            logits, _ = model.apply(imu.merge_head(head, rest), {}, x)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        updates, opt_state = sgd.update(jax.grad(mean_loss)(head), opt_state, head)
        return optax.apply_updates(head, updates), opt_state

    sgd_state = sgd.init(head)
    contenders["sgd step"] = lambda: jax.block_until_ready(sgd_step(head, sgd_state, rest, xb, yb))
    if profile:  # what the per-batch step is made of
        contenders.update(per_batch_parts(model, head, rest, xb, yb))
    return contenders


def per_batch_parts(model, head, rest, xb, yb):
    """The per-batch step's parts, timed alone: the per-example gradients as the step forms them
    (dense kernels as input and output-gradient factors, ``imu_jax._factored``), and those plus
    the influence statistics (Σg, Σg², g·t, the weighted mean) without selection and update."""
    from imu_jax import _factored
    from imu_jax.influence import influence_from_grads
    from imu_jax.unlearning.losses import make_example_loss

    def factors(head, rest, x, y):
        grads = _factored.per_example_grads_of(make_example_loss(model, rest, {}), head,
                                               {"x": x, "y": y})
        return jax.tree.leaves(grads)

    def statistics(head, rest, x, y):
        grads = _factored.per_example_grads_of(make_example_loss(model, rest, {}), head,
                                               {"x": x, "y": y})
        scores = influence_from_grads(grads)
        weights = jnp.abs(scores)
        return _factored.tree_map(lambda g: _factored.weighted_sum(g, weights), grads)

    factors, statistics = jax.jit(factors), jax.jit(statistics)
    return {"per-batch: factors": lambda: jax.block_until_ready(factors(head, rest, xb, yb)),
            "per-batch: + statistics": lambda: jax.block_until_ready(
                statistics(head, rest, xb, yb))}


# --- PyTorch -----------------------------------------------------------------------------------


def torch_device(choice: str) -> str:
    """``auto``: PyTorch on the GPU when JAX runs on one and PyTorch sees it (like against like)."""
    if choice != "auto":
        return choice
    import torch
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_contenders(layers, x, y, chunk_size, device="cpu", damping=0.01, head_layers=1):
    import torch
    from torch.func import functional_call, grad, vmap

    torch.set_num_threads(os.cpu_count() or 1)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                              torch.nn.ReLU(), torch.nn.Linear(512, 10))
    with torch.no_grad():
        for module, layer in zip([net[0], net[2], net[4]], layers):
            module.weight.copy_(torch.from_numpy(layer["kernel"].T))
            module.bias.copy_(torch.from_numpy(layer["bias"]))
    net.eval().to(device)
    head_modules = [net[2], net[4]][-head_layers:]
    head_names = [f"{i}.{kind}" for i in (2, 4)[-head_layers:] for kind in ("weight", "bias")]
    head = [p for m in head_modules for p in (m.weight, m.bias)]
    xt = torch.from_numpy(np.asarray(x)).to(device)
    yt = torch.from_numpy(np.asarray(y)).long().to(device)
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
        scores = torch.empty(n, device=device)
        for i in range(n):
            g = torch.autograd.grad(ce(net(xt[i:i + 1]), yt[i:i + 1]), head)
            scores[i] = -sum((gi * d).sum() for gi, d in zip(g, direction))
        synchronize()
        return scores.cpu().numpy()

    params = {k: v.detach() for k, v in net.named_parameters()}

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
            scores = torch.cat(scores)
            synchronize()
            return scores.cpu().numpy()

    return {"torch loop": loop, "torch vmap": vmapped}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-examples", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=256, help="chunk of torch vmap")
    parser.add_argument("--chunk-sweep", default="64,128,256,512,1024,2048",
                        help="explicit chunk sizes of jax scores to compare with the default")
    parser.add_argument("--batch-size", type=int, default=256, help="of the unlearning steps")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--loop-repeats", type=int, default=3,
                        help="rounds that also run the slow batch-of-one loop")
    parser.add_argument("--torch-device", default="auto",
                        help="cpu, cuda, or auto: cuda when JAX runs on a GPU and PyTorch sees one")
    parser.add_argument("--head-layers", type=int, default=1, choices=(1, 2),
                        help="1: the last dense layer (closed form exists); 2: a two-layer MLP "
                             "head (generic path only)")
    parser.add_argument("--profile", action="store_true",
                        help="also time the per-batch step's parts (this library's version)")
    parser.add_argument("--out", default=None, help="folder for results.json")
    args = parser.parse_args(argv)
    load_before = load()
    print(f"load before: {load_before}")

    rng = np.random.default_rng(1)
    layers = init_mlp()
    x = rng.normal(0, 1, (args.num_examples, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], args.num_examples).astype(np.int32)

    sweep = [int(c) for c in args.chunk_sweep.split(",") if c]
    contenders = jax_contenders(layers, x, y, sweep, args.head_layers)
    print(f"head: the last {args.head_layers} dense layer(s), "
          f"{sum(np.size(a) for l in layers[-args.head_layers:] for a in l.values()):,} "
          "parameters")
    device = None
    try:
        device = torch_device(args.torch_device)
        contenders.update(torch_contenders(layers, x, y, args.chunk_size, device,
                                           head_layers=args.head_layers))
        print(f"PyTorch runs on {device}")
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): timing JAX only.")

    # The contenders compute the same numbers (the forward pass computes logits, not scores).
    reference = np.asarray(contenders["jax default"]())
    agreement = {}
    for name, fn in contenders.items():
        if name != "jax forward":
            scores = np.asarray(fn())
            agreement[name] = float(np.max(np.abs(scores - reference)) / np.max(np.abs(reference)))
            print(f"{name:18s} max relative difference to jax default: {agreement[name]:.1e}")
            assert agreement[name] < 1e-3, f"{name} disagrees with jax default"
    contenders.update(step_contenders(layers, x, y, args.batch_size, args.head_layers,
                                      args.profile))

    times = round_robin(contenders, args.repeats, {"torch loop": args.loop_repeats})
    seconds = {name: statistics.median(t) for name, t in times.items()}
    for name, value in seconds.items():
        print(f"{name:18s} {value * 1e3:10.2f} ms  (median of {len(times[name])})")

    fastest_explicit = min((n for n in seconds if n.startswith("jax chunk=")), key=seconds.get)
    pairs = {"torch loop / jax default": ("torch loop", "jax default"),
             "torch vmap / jax default": ("torch vmap", "jax default"),
             "jax default / fastest explicit chunk": ("jax default", fastest_explicit),
             "jax closed / jax forward": ("jax closed", "jax forward"),
             "jax default / jax forward": ("jax default", "jax forward"),
             "imu step / sgd step": ("imu step", "sgd step"),
             "imu step per-batch / sgd step": ("imu step per-batch", "sgd step"),
             "per-batch factors / sgd step": ("per-batch: factors", "sgd step"),
             "per-batch + statistics / sgd step": ("per-batch: + statistics", "sgd step")}
    pairs = {name: pair for name, pair in pairs.items() if all(p in times for p in pair)}
    ratios = {name: paired_ratio(times, *pair) for name, pair in pairs.items()}
    ratios_of_minimums = {name: min_ratio(times, *pair) for name, pair in pairs.items()}
    print(f"fastest explicit chunk: {fastest_explicit}")
    print(f"{'ratio':38s} {'paired median':>14s} {'of minimums':>12s}")
    for name in pairs:
        print(f"{name:38s} {ratios[name]:13.2f}x {ratios_of_minimums[name]:11.2f}x")
    load_after = load()
    print(f"load after: {load_after}")

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        record = {"num_examples": args.num_examples, "torch_chunk_size": args.chunk_size,
                  "head_layers": args.head_layers, "batch_size": args.batch_size,
                  "seconds": seconds, "rounds": {k: len(v) for k, v in times.items()},
                  "ratios": ratios, "ratios_of_minimums": ratios_of_minimums,
                  "min_seconds": {k: min(v) for k, v in times.items()},
                  "fastest_explicit_chunk": fastest_explicit,
                  "max_relative_difference": agreement, "load": [load_before, load_after],
                  "jax": jax.__version__, "backend": jax.default_backend(),
                  "device": str(jax.devices()[0].device_kind), "torch_device": device,
                  "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(record, f, indent=2)
    return seconds, ratios


if __name__ == "__main__":
    main()
