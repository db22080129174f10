"""Scaling of sharded influence scoring: time and per-device memory against N and devices.

Run (about 2 minutes on a 2-core CPU; ``--quick`` about 20 seconds):

    python experiments/bench_scaling.py                      # writes experiments/results/scaling/
    python experiments/bench_scaling.py --quick --out /tmp/scaling

Workload: ``imu.influence_scores`` (the generic path, per-example gradients by ``vmap(grad)``) on a
dense softmax head of P = (128 + 1) × 32 = 4,128 parameters, forget batch sharded over a ``data``
mesh axis, head replicated. Two settings: ``materialized`` (``chunk_size=N``: all N × P
gradients exist, sharded) and ``chunked`` (``chunk_size=1024``: two streaming passes).

* against N (1k … 64k) on 1 device and on an 8-device ``data`` mesh;
* against the number of devices (1, 2, 4, 8) at N = 16k.

Per-device memory is XLA's compiled plan (``jitted.lower(...).compile().memory_analysis()``:
arguments + outputs + temporaries − aliased, per device). Time is the median wall time of 3 runs
after a warm-up.

Honest caveat: the devices are FAKE CPU devices (``--xla_force_host_platform_device_count=8``)
sharing the machine's cores (2 here), so wall time does not drop with more devices — it shows
the cost is linear in N and what partitioning overhead costs. Per-device memory is what scales:
it is ∝ N / devices. On real accelerators the time would also divide by the device count.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import imu_jax as imu  # noqa: E402
from imu_jax import influence, sharding  # noqa: E402

FEATURES, CLASSES = 128, 32
MIB = 1024**2


def example_loss(head, example):
    logits = example["h"] @ head["kernel"] + head["bias"]
    return -jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(example["y"], CLASSES))


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    head = {"kernel": rng.normal(0, 0.1, (FEATURES, CLASSES)).astype(np.float32),
            "bias": np.zeros(CLASSES, np.float32)}
    batch = {"h": rng.normal(0, 1, (n, FEATURES)).astype(np.float32),
             "y": rng.integers(0, CLASSES, n).astype(np.int32)}
    return head, batch


def measure(n, devices, chunk_size, repeats):
    setting = "materialized" if chunk_size is None else "chunked"
    chunk_size = n if chunk_size is None else chunk_size  # chunk_size=N: materialized, one pass
    mesh = sharding.make_mesh(data=devices, devices=jax.devices()[:devices])
    head, batch = make_data(n)
    batch = sharding.shard_batch(batch, mesh)
    head = sharding.shard_params(head, mesh)
    out = sharding.batch_sharding(mesh)
    compiled = influence._influence_scores.lower(
        *influence._scores_args(example_loss, head, batch, 0.01, chunk_size, out)).compile()
    stats = compiled.memory_analysis()
    per_device = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                  + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    scores = imu.influence_scores(example_loss, head, batch, chunk_size=chunk_size)
    scores.block_until_ready()  # warm-up (and compile through the public entry point)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        imu.influence_scores(example_loss, head, batch, chunk_size=chunk_size).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"n": n, "devices": devices, "chunk_size": chunk_size,
            "setting": setting,
            "seconds": statistics.median(times), "per_device_mib": per_device / MIB,
            "temp_mib": stats.temp_size_in_bytes / MIB,
            "scores_sharding": str(scores.sharding.spec)}


def loglog_slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def plot(records, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for setting, style in (("materialized", "-"), ("chunked", "--")):
        for devices, marker in ((1, "o"), (8, "s")):
            rows = [r for r in records["vs_n"]
                    if r["setting"] == setting and r["devices"] == devices]
            ns = [r["n"] for r in rows]
            label = f"{setting}, {devices} dev"
            axes[0].plot(ns, [r["seconds"] for r in rows], style, marker=marker, label=label)
            axes[1].plot(ns, [r["per_device_mib"] for r in rows], style, marker=marker, label=label)
        rows = [r for r in records["vs_devices"] if r["setting"] == setting]
        ax = axes[2]
        ax.plot([r["devices"] for r in rows], [r["per_device_mib"] for r in rows], style,
                marker="o", label=f"{setting}: memory / device")
    ideal = [r for r in records["vs_devices"] if r["setting"] == "materialized"]
    ax.plot([r["devices"] for r in ideal],
            [ideal[0]["per_device_mib"] / r["devices"] for r in ideal],
            ":", color="gray", label="ideal 1/devices")
    twin = ax.twinx()
    for setting, style in (("materialized", "-"), ("chunked", "--")):
        rows = [r for r in records["vs_devices"] if r["setting"] == setting]
        twin.plot([r["devices"] for r in rows], [r["seconds"] for r in rows], style, color="C3",
                  marker="x", label=f"{setting}: time")
    twin.set_ylabel("seconds (fake devices share 2 cores)", color="C3")
    for a in axes[:2]:
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("forget examples N")
        a.legend(fontsize=8)
    axes[0].set_title("scoring time vs N")
    axes[0].set_ylabel("seconds")
    axes[1].set_title("per-device memory vs N (XLA plan)")
    axes[1].set_ylabel("MiB per device")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("devices (data axis)")
    ax.set_ylabel("MiB per device")
    ax.set_title(f"N = {records['vs_devices'][0]['n']:,} vs devices")
    ax.legend(fontsize=8, loc="lower left")
    twin.legend(fontsize=8, loc="upper right")
    fig.suptitle("imu_jax.influence_scores on fake CPU devices (P = 4,128 head parameters)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(records):
    lines = ["# Influence scoring: scaling with N and devices", "",
             f"Machine: {records['machine']}. Devices are fake CPU devices sharing the cores, so "
             "time does not drop with devices; per-device memory (XLA's compiled plan) does.", "",
             "## Against N", "", "| setting | devices | N | seconds | MiB / device |",
             "|---|---|---|---|---|"]
    for r in records["vs_n"]:
        lines.append(f"| {r['setting']} | {r['devices']} | {r['n']:,} | {r['seconds']:.4f} | "
                     f"{r['per_device_mib']:.2f} |")
    lines += ["", "## Against devices (N = %s)" % f"{records['vs_devices'][0]['n']:,}", "",
              "| setting | devices | seconds | MiB / device | × of 1 device |",
              "|---|---|---|---|---|"]
    for r in records["vs_devices"]:
        lines.append(f"| {r['setting']} | {r['devices']} | {r['seconds']:.4f} | "
                     f"{r['per_device_mib']:.2f} | {r['memory_ratio_vs_1']:.3f} |")
    lines += ["", "## Fits (log-log slopes; 1 = linear)", ""]
    for key, value in records["slopes"].items():
        lines.append(f"- {key}: {value:.2f}")
    lines += ["", "## Reading the numbers", "",
              "- Memory per device of the materialized path is N × P × 4 bytes / devices (plus the "
              "inputs): slope 1 in N, slope −1 in devices, exactly 1/8 at 8 devices. The N × P "
              "per-example gradients are never gathered.",
              "- The chunked path holds chunk × P / devices gradients plus the N × D inputs / "
              "devices, so its memory grows sub-linearly at these sizes (the constant chunk term "
              "dominates) and also divides by the device count. At N ≤ chunk_size it is the "
              "materialized path.",
              "- Time grows linearly in N once fixed overheads stop dominating (N ≥ 8k: about ×2 "
              "per doubling for the chunked path; the materialized path on 1 device fits slope "
              "≈ 1). The materialized path at 64k on 8 fake devices is slower than linear: it "
              "writes and re-reads 1 GiB of per-example gradients through the same 2 cores' "
              "caches — memory-bandwidth bound, and this machine is shared, so timings are noisy.",
              "- The 8 fake devices share the same 2 cores, so time does not improve with devices "
              "(it even pays partitioning overhead). On real accelerators each device would do "
              "1/devices of the work; what these runs do show is the per-device memory."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "scaling"))
    parser.add_argument("--quick", action="store_true", help="N up to 8k, 1 repeat")
    args = parser.parse_args(argv)
    if jax.device_count() < 8:
        raise SystemExit("needs 8 (fake) devices: run with XLA_FLAGS unset or "
                         "--xla_force_host_platform_device_count=8")
    ns = [1024 * 2**k for k in range(4 if args.quick else 7)]  # 1k … 64k
    repeats = 1 if args.quick else 3
    fixed_n = 4096 if args.quick else 16384
    records = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"jax {jax.__version__}",
               "head_parameters": (FEATURES + 1) * CLASSES, "vs_n": [], "vs_devices": []}
    for chunk in (None, 1024):
        for devices in (1, 8):
            for n in ns:
                records["vs_n"].append(measure(n, devices, chunk, repeats))
                print(json.dumps(records["vs_n"][-1]), flush=True)
        for devices in (1, 2, 4, 8):
            records["vs_devices"].append(measure(fixed_n, devices, chunk, repeats))
            print(json.dumps(records["vs_devices"][-1]), flush=True)
    for setting in ("materialized", "chunked"):
        rows = [r for r in records["vs_devices"] if r["setting"] == setting]
        for r in rows:
            r["memory_ratio_vs_1"] = r["per_device_mib"] / rows[0]["per_device_mib"]
    slopes = {}
    for setting in ("materialized", "chunked"):
        for devices in (1, 8):
            rows = [r for r in records["vs_n"]
                    if r["setting"] == setting and r["devices"] == devices]
            big = [r for r in rows if r["n"] >= 4096] or rows
            slopes[f"time vs N, {setting}, {devices} dev (N >= 4k)"] = loglog_slope(
                [r["n"] for r in big], [r["seconds"] for r in big])
            slopes[f"memory/device vs N, {setting}, {devices} dev (N >= 4k)"] = loglog_slope(
                [r["n"] for r in big], [r["per_device_mib"] for r in big])
        rows = [r for r in records["vs_devices"] if r["setting"] == setting]
        slopes[f"memory/device vs devices, {setting}"] = loglog_slope(
            [r["devices"] for r in rows], [r["per_device_mib"] for r in rows])
    records["slopes"] = slopes
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scaling.json"), "w") as handle:
        json.dump(records, handle, indent=1)
    with open(os.path.join(args.out, "scaling.md"), "w") as handle:
        handle.write(markdown(records))
    plot(records, os.path.join(args.out, "scaling.png"))
    print(json.dumps(slopes, indent=1))
    return records


if __name__ == "__main__":
    main()
