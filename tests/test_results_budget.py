"""Size budgets of the repository: the committed results (``experiments/results/``) stay under
16 MB and the whole tracked tree under 20 MB (none of it is in the installed package, which holds
``imu_jax/`` only). The results budget was 10 MB until the evaluation protocol of issue 26 tuned
every compared method over one grid in steps (28 points on digits, 32 on MNIST-1D; 12 before): a
tuned experiment's sweep, which the oracle selection, the matched-forgetting tables and
``tradeoff.png`` read, is about twice as long (digits random and mislabelled, every method tuned:
1.1 MB each). Storing the sweeps compactly is the next step before the CIFAR reruns add theirs.

Each experiment keeps ``results.json``, ``results.md``, a few summary figures and one
``curves.jsonl.xz``; per-run PNGs are drawn on
demand (``imu-jax plot``). ``python experiments/compact_results.py`` packs what a new experiment
wrote the old way and shrinks its figures."""

import pathlib
import subprocess

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
MB = 1_000_000
RESULTS_BUDGET, TRACKED_BUDGET = 16 * MB, 20 * MB


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
