"""Size budgets of the repository: the committed results (``experiments/results/``) stay under
10 MB and the whole tracked tree under 20 MB (none of it is in the installed package, which holds
``imu_jax/`` only).

Each experiment keeps ``results.json`` (the config and the reported runs, one line per run),
``tune_runs.jsonl.xz`` beside it when it was oracle-tuned (the tuning sweep: xz JSON Lines, one
run per line; ``imu_jax.lab.store.load_results`` joins the two), ``results.md``, a few summary
figures and one ``curves.jsonl.xz``; per-run PNGs are drawn on demand (``imu-jax plot``). The
sweep is most of a tuned experiment's runs (the shared grid of issue 26: 28 points on digits, 32
on MNIST-1D, on every tuning seed); inline in ``results.json`` it took the results to 15 MB, xz
stores it about 20 times smaller (7 MB in all). ``python experiments/compact_results.py`` packs
what a new experiment wrote the old way (tuning runs inline, per-run curve files) and shrinks its
figures."""

import pathlib
import subprocess

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
MB = 1_000_000
RESULTS_BUDGET, TRACKED_BUDGET = 10 * MB, 20 * MB


def _git_files(*args: str) -> list[pathlib.Path]:
    """Files ``git ls-files`` lists (bytes of files since deleted from the work tree skipped)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def _largest(paths, n=5) -> str:
    sizes = sorted(((p.stat().st_size, p) for p in paths if p.is_file()), reverse=True)[:n]
    return ", ".join(f"{p.relative_to(ROOT)} ({s / MB:.2f} MB)" for s, p in sizes)


def test_committed_results_within_budget():
    """Tracked files and new ones git would add (not the ignored model caches)."""
    paths = _git_files("--cached", "--others", "--exclude-standard", "experiments/results")
    total = _size(paths)
    assert total <= RESULTS_BUDGET, (
        f"experiments/results holds {total / MB:.1f} MB (budget {RESULTS_BUDGET / MB:.0f} MB); "
        f"run python experiments/compact_results.py. Largest: {_largest(paths)}")


def test_no_per_run_curve_files_in_results():
    paths = _git_files("--cached", "--others", "--exclude-standard", "experiments/results")
    per_run = [p for p in paths if p.parent.name == "curves"]
    assert per_run == [], "per-run curve files; run python experiments/compact_results.py"


def test_tracked_tree_within_20_mb():
    paths = _git_files()
    total = _size(paths)
    assert total <= TRACKED_BUDGET, (
        f"the tracked tree holds {total / MB:.1f} MB (budget {TRACKED_BUDGET / MB:.0f} MB). "
        f"Largest: {_largest(paths)}")
