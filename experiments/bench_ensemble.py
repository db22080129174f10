"""Many seeds at once: a Python loop over N seeds of the single-model trainer against the one
jitted, vmapped program of :mod:`imu_jax.lab.ensemble`, in one run, with the equality check.

Run (``--n 8 --steps 50`` on digits: about a minute on a loaded 2-core CPU)::

    python experiments/bench_ensemble.py --n 8 --steps 50                 # digits, its CNN recipe
    python experiments/bench_ensemble.py --dataset mnist1d --n 8 --steps 50 --retrain

Both sides train the dataset's recipe model (``imu_jax.train.recipe``) for ``--steps`` steps per
seed with ``train_model``'s batch order and optimizer. The loop is ``lab.ensemble.train_single``
(``train_model``'s loop without its per-epoch evaluation) with ONE compiled step reused for every
seed, i.e. the loop's best case (``train_model`` itself recompiles for each seed); its batches are
gathered on the host as in ``train_model``. The vmapped side is ``prepare_ensemble`` and its
program called once per step (``mode="host"``; ``--scan`` adds the single ``lax.scan`` call).
Compilation (ahead of time, ``lower().compile()``) is timed apart from the runs; the ratio is
loop run time / vmapped run time. ``os.getloadavg()`` is printed before and after: other
processes share the cores, so the timings are only as good as the load beside them.

Measured on this project's CPU machine (2 cores shared with four other jobs, jax 0.10.2; the
load average was 6.6–8.1 throughout, so every time is inflated ~3–4x and noisy), N = 8 seeds,
50 steps, float32; "run" = warm second run, compile apart:

    setting                               loop run  vmapped run  ratio  loop/vmapped compile
    digits CNN recipe (99k params, b 32)    3.86 s     10.12 s    0.38x   3.07 s / 4.36 s
    digits MLP (85k params, b 32)           0.61 s      0.19 s    3.22x   1.12 s / 2.02 s
    digits MLP, 400 steps                   1.96 s      1.54 s    1.28x   1.08 s / 1.46 s
    MNIST-1D CNN1D recipe, retrained        1.06 s      0.83 s    1.28x   1.24 s / 2.28 s
    MNIST-1D MLP (15k params, b 100)        0.33 s      0.10 s    3.26x   0.80 s / 0.93 s

Equality: float32 losses agree to 1e-5 for all 50 steps for the MLPs (max |dparam| 0 and 2.6e-5)
and for the first 38 (digits CNN, SGD) / 14 (MNIST-1D CNN1D, Adam) steps, after which training
amplifies the ~1e-7 rounding differences of batched vs unbatched kernels (max |dparam| 2.2e-3
and 6.4e-2 at step 50); with ``--x64`` the digits CNN agrees to 9.2e-16 over all 50 steps. On
CPU, vmapped convolutions become grouped convolutions, which XLA:CPU runs slower than separate
ones (hence 0.38x for the digits CNN; ``train_ensemble(mode="loop")`` is the faster choice there);
``--scan`` (one ``lax.scan`` call) matches "host" for the MLP and is far slower for convnets on
CPU. No GPU was available to this task: the GPU ratio is unmeasured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from imu_jax.data import batches, make_splits  # noqa: E402
from imu_jax.lab.ensemble import (make_single_step, prepare_ensemble, train_single,  # noqa: E402
                                  unstack)
from imu_jax.train import TrainConfig, build_model, make_optimizer, recipe  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max((float(jnp.max(jnp.abs(x - y))) for x, y in pairs), default=0.0)


def _first_divergence(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> int:
    """Number of leading steps whose losses agree within ``tol`` for every model."""
    bad = np.nonzero(np.max(np.abs(a - b), axis=0) > tol)[0]
    return int(bad[0]) if len(bad) else a.shape[1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits", choices=["digits", "mnist1d"])
    ap.add_argument("--model", default=None, help="recipe model (default: the dataset's)")
    ap.add_argument("--n", type=int, default=8, help="number of seeds (models)")
    ap.add_argument("--steps", type=int, default=50, help="training steps per model")
    ap.add_argument("--forget", default="random:0.1")
    ap.add_argument("--retrain", action="store_true", help="train on the retain split")
    ap.add_argument("--scan", action="store_true",
                    help="also time mode='scan' (one lax.scan call; slow for convnets on CPU)")
    ap.add_argument("--x64", action="store_true",
                    help="train both paths in float64 (equality to ~1e-12 instead of float32 "
                         "rounding amplified by training)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = "float64" if args.x64 else None

    load_start = _load()
    splits = make_splits(args.dataset, args.forget, data_dir=args.data_dir or tempfile.mkdtemp())
    cfg = TrainConfig.from_dict(recipe(args.dataset, args.model))
    seeds = list(range(args.n))
    data = splits.retrain_data if args.retrain else splits.train
    n = len(data["label"])
    drop = n >= cfg.batch_size
    per_epoch = n // cfg.batch_size if drop else 1
    cfg = dataclasses.replace(cfg, epochs=max(cfg.epochs, -(-args.steps // per_epoch)))

    # --- loop over seeds of the single-model path, one compiled step for all seeds
    step = make_single_step(cfg, splits, retrain=args.retrain)
    fm0 = build_model(cfg, splits, seed=0)
    params0 = jax.tree.map(jnp.copy, fm0.params)
    example = next(batches(data, cfg.batch_size, seed=0, drop_remainder=drop))
    if dtype:
        params0 = jax.tree.map(lambda x: x.astype(dtype), params0)
        example = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in example.items()}
    opt0 = make_optimizer(cfg, per_epoch).init(params0)
    t = time.perf_counter()
    compiled_step = step.lower(params0, fm0.state, opt0, example).compile()
    loop_compile = time.perf_counter() - t
    loop_times = []
    for _ in range(2):  # cold (first use of the loop's small eager ops), then warm
        t = time.perf_counter()
        loop_params, loop_losses = [], []
        for s in seeds:
            _, p, _, losses = train_single(cfg, splits, s, retrain=args.retrain,
                                           max_steps=args.steps, step_fn=compiled_step,
                                           dtype=dtype)
            jax.block_until_ready(p)
            loop_params.append(p)
            loop_losses.append(np.asarray(losses))
        loop_times.append(time.perf_counter() - t)
    loop_cold, loop_run = loop_times
    loop_losses = np.stack(loop_losses)

    # --- the vmapped program: one call per step ("host"), optionally one lax.scan ("scan")
    t = time.perf_counter()
    plan = prepare_ensemble(cfg, splits, seeds, retrain=args.retrain, max_steps=args.steps,
                            dtype=dtype)
    setup = time.perf_counter() - t
    out = {}
    for mode in ("host", "scan") if args.scan else ("host",):
        fresh = plan.fresh_args()
        t = time.perf_counter()
        if mode == "host":
            compiled = plan.step.lower(*fresh[:4], plan.indices[0]).compile()
        else:
            compiled = plan.scan.lower(*fresh).compile()
        compile_s = time.perf_counter() - t
        times = []
        for _ in range(2):  # cold, warm
            t = time.perf_counter()
            params, _, _, vlosses = plan.execute(mode, compiled)
            jax.block_until_ready(params)
            times.append(time.perf_counter() - t)
        cold_s, run_s = times
        vlosses = np.asarray(vlosses).T  # [models, steps]
        out[mode] = {
            "compile_s": compile_s, "run_cold_s": cold_s, "run_s": run_s,
            "run_ratio": loop_run / run_s,
            "total_ratio": (loop_compile + loop_run) / (setup + compile_s + run_s),
            "max_abs_param_diff": max(_max_diff(unstack(params, i), loop_params[i])
                                      for i in range(args.n)),
            "max_abs_loss_diff": float(np.max(np.abs(vlosses - loop_losses))),
            "steps_with_loss_diff_le_1e-5": _first_divergence(vlosses, loop_losses),
        }

    result = {
        "dataset": args.dataset, "model": cfg.model, "model_options": cfg.model_options,
        "retrain": args.retrain, "n": args.n, "steps": args.steps, "batch_size": cfg.batch_size,
        "dtype": dtype or "float32", "num_params": fm0.num_params(),
        "device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "loop_compile_s": loop_compile, "loop_run_cold_s": loop_cold,
        "loop_run_s": loop_run,
        "vmap_setup_s": setup, "vmapped": out, "loadavg_start": load_start,
        "loadavg_end": _load(), "final_loss_mean": float(loop_losses[:, -1].mean()),
    }
    print(f"{args.dataset} {cfg.model} ({result['num_params']:,} params), batch {cfg.batch_size}, "
          f"N={args.n} seeds x {args.steps} steps{' (retrained)' if args.retrain else ''}, "
          f"{result['dtype']}, {result['device']}, final loss {result['final_loss_mean']:.3f}")
    print(f"  loop over seeds : compile {loop_compile:6.2f} s   run {loop_run:7.2f} s warm "
          f"({loop_cold:.2f} s cold)")
    for mode, r in out.items():
        print(f"  vmapped ({mode:4s}) : compile {r['compile_s']:6.2f} s   "
              f"run {r['run_s']:7.2f} s warm "
              f"({r['run_cold_s']:.2f} s cold; setup {setup:.2f} s)")
        print(f"      ratio loop/vmapped: warm run {r['run_ratio']:.2f}x, "
              f"total (setup+compile+run) {r['total_ratio']:.2f}x")
        print(f"      equality: max |dparam| {r['max_abs_param_diff']:.2e}, max |dloss| "
              f"{r['max_abs_loss_diff']:.2e}; losses agree within 1e-5 for the first "
              f"{r['steps_with_loss_diff_le_1e-5']} of {args.steps} steps")
    print(f"  os.getloadavg(): start {load_start}, end {result['loadavg_end']} "
          f"({os.cpu_count()} CPUs)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2, default=str)
    return result


if __name__ == "__main__":
    main()
