"""Interrupted saves, resumed runs and what ``imu-jax run`` shows: nothing lost or mislabelled.

A cached model (``OUT/models/<which>_seed<S>/``) appears atomically or is rebuilt; ``--resume``
refuses a folder made with other settings and names a corrupt ``results.json``; Ctrl-C is one
line and exit status 130."""

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import checkpoint, methods, metrics, train
from imu_jax.data import make_splits
from imu_jax.lab import cli, curves, models_cache, report, runner, store
from imu_jax.unlearning import loop_checkpoint, run_checkpoint


TINY = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3",
        "--train-option", "epochs=1", "--train-option", 'model_options={"hidden": [16]}',
        "--no-progress"]
CFG = {**train.recipe("digits", "mlp"), "forget": "class:3", "epochs": 1,
       "model_options": {"hidden": [16]}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def splits(data_dir):
    return make_splits("digits", "class:3", data_dir=data_dir)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A finished tiny run: retrain + imu on seed 0."""
    out = tmp_path_factory.mktemp("run")
    args = ["run", *TINY, "--methods", "retrain,imu", "--seeds", "0", "--out", str(out),
            "--data-dir", data_dir]
    assert cli.main(args) == 0
    return out, args


def _copy(finished, tmp_path):
    out, args = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy, [a if a != str(out) else str(copy) for a in args]


# -- interrupted saves of a cached model ------------------------------------------------------

def _break_missing_metrics(model_dir):
    (model_dir / "metrics.json").unlink()


def _break_corrupt_metrics(model_dir):
    text = (model_dir / "metrics.json").read_text()
    (model_dir / "metrics.json").write_text(text[: len(text) // 2])


def _break_empty_checkpoint(model_dir):
    shutil.rmtree(model_dir)
    (model_dir / "checkpoint").mkdir(parents=True)


def _break_orbax_tmp(model_dir):
    """What a kill during Orbax's save leaves: only a ``*.orbax-checkpoint-tmp`` step folder."""
    shutil.rmtree(model_dir)
    (model_dir / "checkpoint" / "0.orbax-checkpoint-tmp-1700000000").mkdir(parents=True)


def _break_checkpoint_arrays(model_dir):
    for path in (model_dir / "checkpoint").rglob("*"):
        if path.is_file() and "params" in path.parts and "_METADATA" not in path.name:
            path.write_bytes(b"")


BREAKS = [_break_missing_metrics, _break_corrupt_metrics, _break_empty_checkpoint,
          _break_orbax_tmp, _break_checkpoint_arrays]


@pytest.mark.parametrize("break_it", BREAKS, ids=[b.__name__[7:] for b in BREAKS])
def test_unusable_cache_entry_is_rebuilt_with_a_notice(break_it, splits, tmp_path, capsys):
    trainer = models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)
    first = trainer(True, 0)
    model_dir = tmp_path / "models" / "retrain_seed0"
    assert first.info["cached"] is False and (model_dir / "metrics.json").exists()
    break_it(model_dir)
    capsys.readouterr()
    again = models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(True, 0)
    notice = [line for line in capsys.readouterr().err.splitlines() if "ignoring" in line]
    assert len(notice) == 1 and str(model_dir) in notice[0] and "training it again" in notice[0]
    assert again.info["cached"] is False  # retrained (deterministically: the same model)
    for a, b in zip(np.asarray(first.params["head"]["kernel"]).ravel(),
                    np.asarray(again.params["head"]["kernel"]).ravel()):
        assert a == b
    third = models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(True, 0)
    assert third.info["cached"] is True  # the rebuilt entry is complete


def test_interrupted_save_leaves_no_cache_entry(splits, tmp_path, monkeypatch):
    """An interruption inside the save leaves neither the model folder nor a partial one."""
    real = checkpoint.save

    def crash_after_writing(directory, *args, **kwargs):
        real(directory, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", crash_after_writing)
    with pytest.raises(KeyboardInterrupt):
        models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(False, 0)
    assert not (tmp_path / "models" / "original_seed0").exists()
    assert list((tmp_path / "models").iterdir()) == []  # the partial folder is gone too
    monkeypatch.setattr(checkpoint, "save", real)
    model = models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(False, 0)
    assert model.info["cached"] is False
    assert sorted(p.name for p in (tmp_path / "models" / "original_seed0").iterdir()) == [
        "checkpoint", "metrics.json"]


def test_write_outputs_keeps_other_files_of_the_folder(splits, tmp_path):
    fm, params, state, info = train.train_model(CFG, splits, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    train.write_outputs(tmp_path, fm, params, state, info)
    train.write_outputs(tmp_path, fm, params, state, info)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "metrics.json",
                                                          "notes.txt"]
    _, restored, _, _ = checkpoint.restore(tmp_path / "checkpoint", expected=fm)
    assert np.array_equal(restored["head"]["kernel"], params["head"]["kernel"])


def test_cached_model_of_other_training_options_is_an_error(splits, tmp_path):
    models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(True, 0)
    other = {**CFG, "learning_rate": 0.5}
    with pytest.raises(ValueError, match=r"learning_rate=0\.05 \(cached\) vs 0\.5"):
        models_cache.cached_trainer(splits, other, tmp_path, progress=False)(True, 0)


def test_original_model_is_shared_between_forget_specs_but_retrain_is_not(
        splits, data_dir, tmp_path):
    """An original trains on the whole training set whatever the forget spec (except
    mislabeled:, which relabels it), so its cache entry serves another class; Retrain's does not."""
    models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(False, 0)
    other = make_splits("digits", "class:4", data_dir=data_dir)
    reused = models_cache.cached_trainer(other, CFG, tmp_path, progress=False)(False, 0)
    assert reused.info["cached"]
    models_cache.cached_trainer(splits, CFG, tmp_path, progress=False)(True, 0)
    with pytest.raises(ValueError, match="class:3.*not.*class:4"):
        models_cache.cached_trainer(other, CFG, tmp_path, progress=False)(True, 0)
    relabelled = make_splits("digits", "mislabeled:0.1", data_dir=data_dir)
    with pytest.raises(ValueError, match="as released.*not.*mislabeled:0.1"):
        models_cache.cached_trainer(relabelled, CFG, tmp_path, progress=False)(False, 0)


def test_tune_methods_tunes_only_those(finished, tmp_path, data_dir):
    """--tune-methods imu: imu gets grid runs and an oracle-tuned row; ga only its retain-free
    row; results.md says which were tuned."""
    out = tmp_path / "tuned"
    shutil.copytree(finished[0] / "models", out / "models")
    args = ["run", *TINY, "--methods", "retrain,ga,imu", "--seeds", "0", "--tune-seeds", "1",
            "--tune-methods", "imu", "--grid", "imu.learning_rate=0.01",
            "--grid", "imu.epochs=1", "--grid", "imu.top_fraction=0.5", "--out", str(out),
            "--data-dir", data_dir]
    assert cli.main(args) == 0
    runs = store.load_results(out)["runs"]
    roles = {(r["method"], r["role"], r.get("selection")) for r in runs}
    assert ("imu", "tune", None) in roles and ("imu", "eval", "oracle-tuned") in roles
    assert {(m, role) for m, role, _ in roles if m == "ga"} == {("ga", "retain_free")}
    text = (out / "results.md").read_text()
    assert "Oracle-tuned only: imu" in text and "ga have retain-free rows only" in text


@pytest.mark.parametrize("extra,problem", [
    (["--tune-seeds", "1", "--tune-methods", "npo"], "'npo' is not among the methods"),
    (["--tune-methods", "imu"], "only means something with --tune-seeds"),
])
def test_tune_methods_errors_are_one_line(extra, problem, tmp_path, data_dir, capsys):
    args = ["run", *TINY, "--methods", "retrain,imu", "--seeds", "0", "--out", str(tmp_path),
            "--data-dir", data_dir, *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tune-methods" in err and problem in err


def test_issue_reproduction_empty_checkpoint_folder_then_run(tmp_path, data_dir, capsys):
    """`mkdir -p D/models/retrain_seed0/checkpoint`, then run: it rebuilds and finishes."""
    (tmp_path / "models" / "retrain_seed0" / "checkpoint").mkdir(parents=True)
    rc = cli.main(["run", *TINY, "--methods", "retrain", "--seeds", "0", "--out", str(tmp_path),
                   "--data-dir", data_dir])
    assert rc == 0
    assert "ignoring the incomplete cached model" in capsys.readouterr().err
    assert {r["method"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]} \
        == {"original", "retrain", "retrain_floor"}


# -- --resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change,named", [
    (["--forget", "class:4"], "forget: 'class:3' → 'class:4'"),
    (["--train-option", "epochs=2"], "train_config: epochs=1 → 2"),
    (["--hparam", "imu.learning_rate=0.5"], "hparams:"),
    (["--model", "cnn"], "model: 'mlp' → 'cnn'"),
    (["--split-seed", "3"], "split_seed: 0 → 3"),
])
def test_resume_refuses_other_settings(change, named, finished, tmp_path, capsys, monkeypatch):
    out, args = _copy(finished, tmp_path)
    before = (out / "results.md").read_text(), (out / "results.json").read_text()
    monkeypatch.setattr(runner, "cached_trainer", lambda *a, **k: pytest.fail("trained"))
    assert cli.main(args + change + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--resume" in err and str(out / "results.json") in err and named in err
    assert ((out / "results.md").read_text(), (out / "results.json").read_text()) == before


def test_resume_with_more_seeds_and_methods_is_allowed(finished, tmp_path):
    out, args = _copy(finished, tmp_path)
    args = [a if a != "retrain,imu" else "retrain,imu,ga" for a in args]
    assert cli.main(args + ["--resume"]) == 0
    assert "ga" in {r["method"] for r in json.loads((out / "results.json").read_text())["runs"]}


def test_fresh_run_drops_the_previous_runs_curves_and_resume_keeps_them(finished, tmp_path):
    out, args = _copy(finished, tmp_path)
    stale = "ga_retain_free_seed0"  # a method the new run does not have
    curves.add_curves(out, {stale: {"stop_reason": "cap", "curve": [{"step": 0}]}})
    drawn = out / "curves" / f"{stale}.png"  # what imu-jax plot drew
    drawn.parent.mkdir(exist_ok=True)
    drawn.write_bytes(b"png")
    assert cli.main(args + ["--resume"]) == 0
    assert stale in curves.read_curves(out) and drawn.exists()  # resume: other runs' curves
    assert cli.main(args + ["--overwrite"]) == 0  # without it: refused (the runs would go)
    runs = json.loads((out / "results.json").read_text())["runs"]
    referenced = {r["info"]["curve_file"] for r in runs if "curve_file" in r.get("info", {})}
    assert referenced and {curves.curve_ref(n) for n in curves.read_curves(out)} == referenced
    assert not drawn.exists()


@pytest.mark.parametrize("content,problem", [
    ('{"runs": [{"method": "imu", "se', "not valid JSON"),
    ("", "not valid JSON"),
    ("[]", "expected a JSON object with a list of runs"),
    ('{"runs": 5}', "expected a JSON object with a list of runs"),
    ('{"runs": [{"method": "imu"}]}', "run 0 lacks avg_gap"),
])
def test_corrupt_results_json_is_one_line(content, problem, finished, tmp_path, capsys):
    out, args = _copy(finished, tmp_path)
    (out / "results.json").write_text(content)
    assert cli.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(out / "results.json") in err and problem in err and "delete it" in err


def test_ctrl_c_is_one_line_and_exit_130(finished, tmp_path, capsys, monkeypatch):
    out, args = _copy(finished, tmp_path)
    (out / "results.json").unlink()
    real = methods.METHODS["imu"]

    def interrupted(task, hparams, seed):
        raise KeyboardInterrupt

    monkeypatch.setitem(methods.METHODS, "imu", dataclasses.replace(real, run=interrupted))
    assert cli.main(args) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "interrupted" in err and "--resume" in err and str(out / "results.json") in err
    assert {r["method"] for r in json.loads((out / "results.json").read_text())["runs"]} == {
        "original", "retrain", "retrain_floor"}


# -- resumed unlearning runs ------------------------------------------------------------------

def test_resumed_loop_is_quiet_and_recorded(tmp_path, caplog):
    selection = {"indices": np.arange(3), "weights": np.ones(3, np.float32)}
    loop = loop_checkpoint.LoopCheckpoint(run_checkpoint.RunCheckpointer(tmp_path, save_every=2),
                                         total_steps=4, selection=selection)
    first, state = loop.start({"params": {"w": jnp.zeros(2)}})
    for step in range(first, 3):
        state = {"params": {"w": state["params"]["w"] + 1}}
        loop.done(step + 1, state)
    loop.finish()
    with caplog.at_level(logging.WARNING), loop_checkpoint.use_run_checkpoints(tmp_path):
        again = loop_checkpoint.LoopCheckpoint(run_checkpoint.RunCheckpointer(tmp_path),
                                              total_steps=4, resume=True, selection=selection)
        first, state = again.start({"params": {"w": jnp.zeros(2)}})
        assert loop_checkpoint.resumed_steps() == [2]
    assert first == 2 and state["params"]["w"].tolist() == [2.0, 2.0]
    assert not [r for r in caplog.records if "could not be restored" in r.getMessage()]


def test_table_marks_resumed_runs():
    runs = [{"method": m, "seed": s, "role": "eval", "hparams": {}, "metrics": {"ua": 1.0},
             "avg_gap": 0.0, "seconds": 2.0, "needs": "", "info": info}
            for m, s, info in (("imu", 0, {"resumed_from_step": 40}), ("imu", 1, {}),
                               ("ga", 0, {}))]
    lines = report.table({"runs": runs}, report.CLASSIFICATION_COLUMNS).splitlines()
    assert "(1 resumed)" in next(line for line in lines if line.startswith("| imu"))
    assert "resumed" not in next(line for line in lines if line.startswith("| ga"))


# -- what the user sees -----------------------------------------------------------------------

def test_run_prints_the_table_and_the_plot_path(finished, tmp_path, capsys):
    out, args = _copy(finished, tmp_path)
    assert cli.main(args + ["--resume"]) == 0  # everything cached: only the report
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("| Method | Data needed | UA | RA | TA")
    assert any(line.startswith("| imu (retain-free) | forget set only |")
               for line in captured.out.splitlines())
    assert str(out / "tradeoff.png") in captured.err and "forget vs test accuracy" in captured.err


def test_training_inside_run_shows_which_model(splits, tmp_path, capsys):
    models_cache.cached_trainer(splits, CFG, tmp_path, progress=True)(True, 0)
    err = capsys.readouterr().err
    assert "train Retrain mlp seed 0" in err and "epoch=1/1" in err


def test_mia_numbers_repeat_for_the_same_predictions():
    rng = np.random.default_rng(0)
    probs = {k: metrics.softmax(rng.normal(size=(n, 10)) * 3)
             for k, n in (("forget", 60), ("retain", 300), ("test", 80))}
    labels = {k: rng.integers(0, 10, len(p)) for k, p in probs.items()}
    first = metrics.classification_metrics(probs, labels)
    second = metrics.classification_metrics({k: v.copy() for k, v in probs.items()}, labels)
    assert first == second


def test_real_ctrl_c_during_training(tmp_path, data_dir):
    """SIGINT to the ``imu-jax`` process while it trains: one line, exit status 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imu_jax.lab.cli", "run", *TINY, "--train-option", "epochs=5000",
           "--methods", "retrain", "--seeds", "0", "--out", str(out), "--data-dir", data_dir]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                      signal.SIG_DFL))
    deadline = time.time() + 300
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)  # inside the first training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith(
        "imu-jax run: interrupted before anything finished"), err
    assert all("building imu_digits" in line or "dataset_info.json" in line
               for line in lines[:-1]), err  # only the first build of the data came before
    assert not (out / "models" / "original_seed0").exists()  # nothing half-written is visible


@pytest.mark.slow
def test_two_runs_into_one_out_keep_every_run(tmp_path, data_dir, splits):  # data built first
    """Seeds run in parallel into one --out (two processes at once): results.json ends with the
    runs of both, and the second's start does not wipe the first's."""
    out = tmp_path / "shared"
    base = [sys.executable, "-m", "imu_jax.lab.cli", "run", *TINY, "--methods", "retrain,imu",
            "--out", str(out), "--data-dir", data_dir]
    procs = [subprocess.Popen(base + ["--seeds", seed], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in ("0", "1")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {(r["method"], r["seed"]) for r in runs} >= {
        (m, s) for m in ("original", "retrain", "imu") for s in (0, 1)}
    assert not list((out / ".writers").iterdir())  # both writers signed off


def test_a_second_writer_with_other_settings_is_refused(tmp_path):
    from imu_jax.lab.store import WRITERS, SharedResults

    out = tmp_path / "o"
    (out / WRITERS).mkdir(parents=True)
    (out / WRITERS / str(os.getppid())).write_text(json.dumps({"forget": "class:3"}))
    with pytest.raises(ValueError, match=r"another imu-jax run .*forget: 'class:3' → 'class:4'"):
        SharedResults(out, {"config": {"forget": "class:4"}, "runs": []}, resume=False)
