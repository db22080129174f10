"""Ctrl-C stops ``imu-jax`` at once, at any moment, with one line (exit status 130) and no
traceback: while Python imports JAX, when the interrupt lands in JAX's garbage-collector callback
(where Python drops it), and while Orbax waits for a checkpoint (which logs it with a traceback).
Each subprocess gets SIGINT's default disposition (a background job of a script would ignore it)."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from imu_jax.lab import interrupts


TINY = ["run", "--dataset", "digits", "--model", "mlp", "--forget", "class:3",
        "--train-option", "epochs=1", "--train-option", 'model_options={"hidden": [16]}',
        "--no-progress", "--seeds", "0"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The installed console script's code: the module outside the package, then the command line.
SCRIPT = "import sys, imu_jax_command; sys.argv[0] = 'imu-jax'; sys.exit(imu_jax_command.main())"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The digits dataset, built once (its first build prints progress lines)."""
    path = tmp_path_factory.mktemp("tfds")
    from imu_jax.data import build

    build("digits", str(path))
    return str(path)


def _start(code: str, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, *sys.path])}
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupted(proc: subprocess.Popen, *, within: float = 20.0) -> list[str]:
    """Waits for ``proc`` after its SIGINT; its stderr lines (Orbax's absl warnings dropped)."""
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {within} s after Ctrl-C:\n{err[-3000:]}")
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    return [line for line in err.splitlines()
            if line.strip() and not line.startswith("WARNING:absl")]


@pytest.mark.parametrize("delay", [0.3, 1.5, 3.0])
def test_ctrl_c_at_any_moment_of_a_run_is_one_line(delay, data_dir, tmp_path):
    """The first seconds (Python imports JAX, the parser, the data) and then the training."""
    out = tmp_path / "out"
    proc = _start(SCRIPT, [*TINY, "--methods", "retrain,imu", "--out", str(out),
                           "--data-dir", data_dir])
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    lines = _interrupted(proc)
    assert len(lines) == 1 and lines[0].startswith("imu-jax") and "interrupted" in lines[0], lines
    assert not (out / "results.json").exists() or "--resume" in lines[0]


GC_SWALLOW = textwrap.dedent("""
    import gc, signal, sys, time
    from imu_jax.lab import cli, runner

    def run(**options):  # stands in for the work: the interrupt lands in a gc callback
        def callback(phase, info):
            if phase == "start":
                signal.raise_signal(signal.SIGINT)  # Python raises it here, then drops it
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        time.sleep(30)  # where the run would go on if the interrupt were lost
        print("not interrupted", file=sys.stderr)

    runner.run = run
    sys.exit(cli.entry())
""")


def test_an_interrupt_raised_in_a_gc_callback_still_stops_the_run(tmp_path):
    """JAX's ``_xla_gc_callback`` runs whenever the collector does: a KeyboardInterrupt raised
    there is "unraisable" (printed as "Exception ignored", then dropped) and the run went on."""
    start = time.time()
    proc = _start(GC_SWALLOW, [*TINY, "--methods", "imu", "--out", str(tmp_path / "out")])
    lines = _interrupted(proc, within=25)
    assert time.time() - start < 25  # not after the 30 s the run would have gone on
    assert lines == ["imu-jax run: interrupted before anything finished: no model or run was "
                     "saved; rerun the same command to start again."], lines


@pytest.fixture(scope="module")
def models(data_dir, tmp_path_factory):
    """The tiny original and Retrain models of seed 0 (OUT/models of a finished run)."""
    from imu_jax.lab import cli

    out = tmp_path_factory.mktemp("models")
    assert cli.main([*TINY, "--methods", "retrain", "--no-noise-floor", "--out", str(out),
                     "--data-dir", data_dir]) == 0
    return out / "models"


ORBAX_WAIT = textwrap.dedent("""
    import signal, sys
    from orbax.checkpoint import checkpoint_manager

    real_join, calls = checkpoint_manager._FinalizeThread.join, []

    def join(self, *args, **kwargs):  # Ctrl-C while the run waits for its previous save
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_join(self, *args, **kwargs)

    checkpoint_manager._FinalizeThread.join = join
""") + SCRIPT


def test_ctrl_c_while_orbax_saves_a_checkpoint_is_one_line(data_dir, models, tmp_path):
    """With --checkpoint-every 1 most of the unlearning's time is Orbax's save (a real SIGINT
    lands in its wait about one time in four); Orbax logged the interrupt as an error with a
    traceback ("Save Finalize thread ... failed") before it re-raised it."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(models, out / "models")  # trained already: the unlearning starts at once
    proc = _start(ORBAX_WAIT, [*TINY, "--methods", "imu", "--no-noise-floor", "--fixed-length",
                               "--hparam", "imu.epochs=3000", "--checkpoint-every", "1",
                               "--out", str(out), "--data-dir", data_dir])
    lines = _interrupted(proc, within=60)
    assert len(lines) == 1 and lines[0].startswith("imu-jax run: interrupted. Saved:"), lines
    assert lines[0].endswith("rerun the same command with --resume."), lines
    assert any((out / "checkpoints").glob("*/[0-9]*"))  # it was saving


def test_orbax_log_of_an_interrupt_is_dropped(caplog):
    from imu_jax.unlearning import run_checkpoint  # installs the filter on absl's logger

    logger = logging.getLogger("absl")
    assert run_checkpoint._WITHOUT_INTERRUPTS in logger.filters
    with caplog.at_level(logging.ERROR, logger="absl"):
        for error in (KeyboardInterrupt(), ValueError("disk full")):
            try:
                raise error
            except BaseException:
                logger.exception("Save Finalize thread (save_finalize) failed.")
    assert [r.exc_info[0] for r in caplog.records] == [ValueError]  # other errors still show


def test_reliable_interrupts_restores_the_handlers_and_respects_an_ignored_sigint():
    before_handler, before_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with interrupts.reliable_interrupts():
        assert signal.getsignal(signal.SIGINT) is not before_handler
        assert sys.unraisablehook is not before_hook
        interrupts.check()  # nothing pressed: a no-op
    assert signal.getsignal(signal.SIGINT) is before_handler
    assert sys.unraisablehook is before_hook
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup, or a background job of a script
    try:
        with interrupts.reliable_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before_handler)


def test_a_swallowed_interrupt_is_raised_at_the_next_check():
    with interrupts.reliable_interrupts():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed, as a library's "except BaseException" would
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
