"""Subprocess worker for the multi-process and kill/resume tests: one small IMU run.

Each process loads only its slice of the forget set, scores influence on the mesh, selects, and
runs the checkpointed unlearning loop; process 0 writes the final head to ``--out`` (npz) and a
JSON line with the run info to stdout.
"""

import argparse
import json
import os
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mesh", default="data=-1")
    parser.add_argument("--axis-types", default="explicit")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    args = parser.parse_args()

    from imu_jax import sharding
    from imu_jax.unlearning import run_checkpoint, steps
    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    import jax
    import jax.numpy as jnp
    import numpy as np

    import imu_jax as imu

    import _problem as pb

    params, xs, ys = pb.make_problem(seed=3, n=64)
    params = pb.to_jax(params)
    body = params["body"]

    def loss(head, ex):
        logits = pb.features(body, ex["x"]) @ head["kernel"] + head["bias"]
        return -jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(ex["y"], logits.shape[-1]))

    mesh = sharding.make_mesh(args.mesh, axis_types=args.axis_types)
    forget = {"x": xs.astype(np.float32), "y": ys.astype(np.int32)}
    local = sharding.local_slice(forget)  # this process loads only its slice
    # e.g. evaluation: per-example results on the local slice, gathered for host-side metrics
    gathered = sharding.gather_slices({"y": local["y"][:-1] if jax.process_index() else local["y"]})
    expected = np.concatenate([
        sharding.local_slice(forget, process_index=p)["y"][:-1 if p else None]
        for p in range(jax.process_count())])
    gathered_ok = bool(np.array_equal(gathered["y"], expected))
    batch = sharding.shard_batch(local, mesh)
    head = sharding.shard_params(params["head"], mesh)
    scores = sharding.to_host(imu.influence_scores(loss, head, batch, chunk_size=16))
    indices, weights = imu.influence_weights(scores, top_fraction=1.0)

    checkpointer = None
    if args.ckpt:
        checkpointer = run_checkpoint.RunCheckpointer(args.ckpt, save_every=args.save_every,
                                                      keep=2)

    def on_step(step, value):
        if args.sleep:
            time.sleep(args.sleep)

    head, info = steps.run_unlearning(
        loss, head, batch, indices, weights, optimizer=imu.imu_sgd(0.05),
        num_steps=args.steps, batch_size=8, seed=7, mesh=mesh, checkpointer=checkpointer,
        resume=args.resume, config={"steps": args.steps}, on_step=on_step)
    head = sharding.to_host(head)
    if checkpointer is not None:
        checkpointer.close()
    if jax.process_index() == 0:
        np.savez(args.out, **{k: v for k, v in head.items()}, scores=scores)
        print(json.dumps({"start_step": info["start_step"], "processes": jax.process_count(),
                          "devices": jax.device_count(), "kept": len(indices),
                          "gathered_ok": gathered_ok}), flush=True)


if __name__ == "__main__":
    main()
