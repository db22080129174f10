"""Orbax run checkpoints: resharding 8 <-> 1 device, corruption fallback, architecture check,
resume in-process, and (subprocesses) SIGKILL-and-resume and a 2-process gloo run."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import imu_jax as imu
from imu_jax import sharding
from imu_jax.unlearning import run_checkpoint, steps
from imu_jax.unlearning.run_checkpoint import (ArchitectureMismatchError, CheckpointFallbackWarning,
                                               RunCheckpointer)

import _problem as pb


HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_unlearn_worker.py")
ROOT = os.path.dirname(HERE)


def make_state(mesh, seed=0, width=8):
    rng = np.random.default_rng(seed)
    head = {"kernel": rng.normal(size=(width, 4)).astype(np.float32),
            "bias": rng.normal(size=4).astype(np.float32)}
    optimizer = imu.imu_sgd(0.1)
    params = sharding.shard_params(head, mesh)
    opt_state, _ = steps.init_opt_state(optimizer, params,
                                        jax.tree.map(lambda x: x.sharding, params))
    return {"params": params, "opt_state": opt_state, "step": jnp.array(3, jnp.int32),
            "rng": jax.random.key_data(jax.random.key(seed))}


def one_device_mesh():
    return sharding.make_mesh(data=1, model=1, devices=jax.devices()[:1])


@pytest.mark.eight_devices
@pytest.mark.parametrize("save_on,restore_on", [("eight", "one"), ("one", "eight")])
def test_restore_across_device_counts(tmp_path, save_on, restore_on):
    meshes = {"eight": sharding.make_mesh("data=4,model=2"), "one": one_device_mesh()}
    state = make_state(meshes[save_on], seed=1)
    selection = {"indices": np.array([5, 2, 9]), "weights": np.array([1.5, 1.0, 0.5], np.float32)}
    with RunCheckpointer(tmp_path, save_every=3) as ckpt:
        assert not ckpt.save(2, state)  # not due
        assert ckpt.save(3, state, selection=selection, config={"alpha": 0.2})
    target = run_checkpoint.abstract_like(make_state(meshes[restore_on], seed=2))
    with RunCheckpointer(tmp_path) as ckpt:
        got = ckpt.restore(target)
    assert got.step == 3 and got.meta["config"] == {"alpha": 0.2}
    np.testing.assert_array_equal(got.selection["indices"], selection["indices"])
    for a, b in zip(jax.tree.leaves(got.state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kernel = got.state["params"]["kernel"]
    assert len(kernel.sharding.device_set) == (8 if restore_on == "eight" else 1)
    if restore_on == "eight":
        assert kernel.sharding.spec == P(None, "model")


def _corrupt(step_dir, item="state"):
    """Overwrites every file of a checkpoint item with garbage."""
    for root, _, files in os.walk(os.path.join(step_dir, item)):
        for name in files:
            with open(os.path.join(root, name), "wb") as handle:
                handle.write(b"\x00garbage" * 7)


@pytest.mark.eight_devices
@pytest.mark.parametrize("item", ["state", "meta"])
def test_corrupted_latest_falls_back_to_previous_with_warning(tmp_path, item):
    mesh = sharding.make_mesh(data=8)
    states = {step: make_state(mesh, seed=step) for step in (2, 4)}
    with RunCheckpointer(tmp_path, save_every=2, keep=3) as ckpt:
        for step, state in states.items():
            ckpt.save(step, state)
    _corrupt(os.path.join(tmp_path, "4"), item)
    with RunCheckpointer(tmp_path) as ckpt:
        assert ckpt.latest_step == 4
        with pytest.warns(CheckpointFallbackWarning, match="step 4 .*falling back to step 2"):
            got = ckpt.restore(make_state(mesh, seed=9))
    assert got.step == 2
    np.testing.assert_array_equal(np.asarray(got.state["params"]["kernel"]),
                                  np.asarray(states[2]["params"]["kernel"]))


@pytest.mark.eight_devices
def test_all_corrupted_is_an_error_and_empty_dir_is_none(tmp_path):
    mesh = sharding.make_mesh(data=8)
    with RunCheckpointer(tmp_path / "empty") as ckpt:
        assert ckpt.restore(make_state(mesh)) is None
    with RunCheckpointer(tmp_path / "bad") as ckpt:
        ckpt.save(1, make_state(mesh))
    _corrupt(os.path.join(tmp_path, "bad", "1"))
    with RunCheckpointer(tmp_path / "bad") as ckpt, pytest.warns(CheckpointFallbackWarning):
        with pytest.raises(RuntimeError, match="no checkpoint .* could be restored"):
            ckpt.restore(make_state(mesh))


@pytest.mark.eight_devices
def test_wrong_architecture_is_a_clear_error(tmp_path):
    mesh = sharding.make_mesh(data=8)
    with RunCheckpointer(tmp_path, architecture={"model": "mlp", "width": 8}) as ckpt:
        ckpt.save(1, make_state(mesh, width=8))
    with RunCheckpointer(tmp_path, architecture={"model": "mlp", "width": 16}) as ckpt:
        with pytest.raises(ArchitectureMismatchError) as error:
            ckpt.restore(make_state(mesh, width=16))
    message = str(error.value)
    assert "'width': 8" in message and "'width': 16" in message
    assert "params/kernel: checkpoint float32[8,4], target float32[16,4]" in message


@pytest.mark.eight_devices
def test_resume_in_process_equals_uninterrupted(tmp_path):
    params, xs, ys = pb.make_problem(seed=2, n=48)
    params = pb.to_jax(params)
    loss = pb.head_loss_fn(params["body"])
    host = {"x": np.asarray(xs, np.float32), "y": np.asarray(ys, np.int32)}
    indices, weights = imu.influence_weights(imu.influence_scores(loss, params["head"], host),
                                             top_fraction=1.0)
    mesh = sharding.make_mesh(data=8)
    run = dict(optimizer=imu.imu_sgd(0.05), batch_size=16, seed=3, mesh=mesh)
    full, _ = steps.run_unlearning(loss, params["head"], host, indices, weights, num_steps=9,
                                   **run)
    with RunCheckpointer(tmp_path, save_every=2) as ckpt:
        steps.run_unlearning(loss, params["head"], host, indices, weights, num_steps=5,
                             checkpointer=ckpt, **run)
        assert ckpt.all_steps() == [2, 4, 5]
    with RunCheckpointer(tmp_path, save_every=2) as ckpt:
        resumed, info = steps.run_unlearning(loss, params["head"], host, indices, weights,
                                             num_steps=9, checkpointer=ckpt, resume=True, **run)
    assert info["start_step"] == 5
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(resumed[name]), np.asarray(full[name]))
    with RunCheckpointer(tmp_path, save_every=2) as ckpt:
        with pytest.raises(ValueError, match="another selection"):
            steps.run_unlearning(loss, params["head"], host, indices[:-1], weights[:-1],
                                 num_steps=10, checkpointer=ckpt, resume=True, **run)


# --- subprocesses ---------------------------------------------------------------------------

def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_worker(args, devices=4, timeout=180):
    done = subprocess.run([sys.executable, WORKER, *args], env=_env(devices), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigkill_midway_then_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full.npz"
    _run_worker(["--out", str(full), "--steps", "12"])

    ckpt = tmp_path / "ckpt"
    killed = subprocess.Popen(
        [sys.executable, WORKER, "--out", str(tmp_path / "never.npz"), "--steps", "12",
         "--ckpt", str(ckpt), "--save-every", "2", "--sleep", "0.3"],
        env=_env(4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and killed.poll() is None:
            if ckpt.exists() and any(p.name == "6" for p in ckpt.iterdir()):
                break
            time.sleep(0.05)
        assert killed.poll() is None, "the run finished before it could be killed"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "never.npz").exists()

    resumed = tmp_path / "resumed.npz"
    info = _run_worker(["--out", str(resumed), "--steps", "12", "--ckpt", str(ckpt),
                        "--save-every", "2", "--resume"])
    assert 6 <= info["start_step"] < 12
    a, b = np.load(full), np.load(resumed)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(a[name], b[name])  # bit-identical


@pytest.mark.slow
def test_two_processes_match_one_process_and_their_checkpoint_resumes_on_one(tmp_path):
    """2 processes (gloo) = 1 process; each process writes its shards of the checkpoint, and
    1 process on another mesh (8 devices) resumes from it."""
    one = tmp_path / "one.npz"
    info = _run_worker(["--out", str(one), "--mesh", "data=4", "--steps", "8"], devices=4)
    assert info == {"start_step": 0, "processes": 1, "devices": 4, "kept": info["kept"],
                    "gathered_ok": True}

    two, ckpt = tmp_path / "two.npz", tmp_path / "ckpt"
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, WORKER, "--out", str(two), "--mesh", "data=2,model=2", "--steps", "8",
         "--ckpt", str(ckpt), "--save-every", "2",
         "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    info2 = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert info2["processes"] == 2 and info2["devices"] == 4 and info2["kept"] == info["kept"]
    assert info2["gathered_ok"]  # uneven per-process slices gathered back in order
    a, b = np.load(one), np.load(two)
    for name in ("scores", "kernel", "bias"):
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-5)

    assert sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) == [6, 8]
    shutil.rmtree(ckpt / "8")  # as if the 2-process job died after step 6
    info1 = _run_worker(["--out", str(tmp_path / "resumed.npz"), "--mesh", "data=8",
                         "--steps", "8", "--ckpt", str(ckpt), "--resume"], devices=8)
    assert info1["start_step"] == 6 and info1["devices"] == 8
    c = np.load(tmp_path / "resumed.npz")
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(c[name], a[name], rtol=0, atol=1e-5)


def test_checkpoint_flags(tmp_path):
    import argparse
    parser = argparse.ArgumentParser()
    run_checkpoint.add_arguments(parser, default_save_every=5)
    assert run_checkpoint.from_args(parser.parse_args([])) is None
    with pytest.raises(ValueError, match="--resume needs --checkpoint-dir"):
        run_checkpoint.from_args(parser.parse_args(["--resume"]))
    ckpt = run_checkpoint.from_args(parser.parse_args(["--checkpoint-dir", str(tmp_path),
                                                       "--keep", "2"]))
    assert ckpt.save_every == 5 and ckpt.directory == str(tmp_path)
    ckpt.close()


@pytest.mark.eight_devices
def test_same_described_architecture_with_tuples_restores(tmp_path):
    mesh = sharding.make_mesh(data=8)
    description = {"name": "mlp", "hidden": (32, 16)}
    with RunCheckpointer(tmp_path, architecture=description) as ckpt:
        ckpt.save(1, make_state(mesh))
    with RunCheckpointer(tmp_path, architecture=description) as ckpt:
        assert ckpt.restore(make_state(mesh)).step == 1


def test_run_unlearning_resumes_with_the_saved_weights_when_recomputed_ones_round_differently(
        tmp_path):
    """Issue 9 §5 for the low-level loop: weights recomputed on another mesh differ by ~1e-5
    relative; the resumed run continues with the saved ones and equals the uninterrupted run."""
    params, xs, ys = pb.make_problem(seed=2, n=48)
    params = pb.to_jax(params)
    loss = pb.head_loss_fn(params["body"])
    host = {"x": np.asarray(xs, np.float32), "y": np.asarray(ys, np.int32)}
    indices, weights = imu.influence_weights(imu.influence_scores(loss, params["head"], host),
                                             top_fraction=1.0)
    run = dict(optimizer=imu.imu_sgd(0.05), batch_size=16, seed=3, mesh=None)
    full, _ = steps.run_unlearning(loss, params["head"], host, indices, weights, num_steps=6,
                                   **run)
    with RunCheckpointer(tmp_path, save_every=3) as ckpt:
        steps.run_unlearning(loss, params["head"], host, indices, weights, num_steps=3,
                             checkpointer=ckpt, **run)
    rounded = weights * (1 + 2e-5 * np.cos(np.arange(len(weights)))).astype(np.float32)
    assert not np.allclose(rounded, weights, rtol=1e-5, atol=0)
    with RunCheckpointer(tmp_path, save_every=3) as ckpt:
        resumed, info = steps.run_unlearning(loss, params["head"], host, indices, rounded,
                                             num_steps=6, checkpointer=ckpt, resume=True, **run)
    assert info["start_step"] == 3
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(resumed[name]), np.asarray(full[name]))
