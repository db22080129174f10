"""Drop the runs of one role from an experiment so ``--resume`` re-runs only those.

After a change to the retain-free stopping rule, the oracle-tuned and fixed-length runs of an
experiment are still valid; only its ``retain_free`` rows are not. This removes them (the runs
are kept in ``OUT/results.json`` and, for the tuning runs, ``OUT/tune_runs.jsonl.xz``: both are
backed up to ``<name>.bak`` and rewritten), and the experiment's own command with ``--resume``
then re-runs exactly the removed runs (models are retrained if ``OUT/models`` is empty; training
is seeded, so they are the same models):

  python experiments/drop_runs.py experiments/results/mnist1d_random10 --role retain_free
  imu-jax run --config experiments/configs/unlearn_mnist1d_random.py \
      --tune-methods ga,ga_head,imu --out experiments/results/mnist1d_random10 --resume
"""

import argparse
import pathlib
import shutil

from imu_jax.lab.store import RESULTS_JSON, TUNE_RUNS, load_results, save_results

ROLES = ("retain_free", "eval", "tune")


def drop_runs(out: str | pathlib.Path, role: str) -> int:
    """Removes ``role``'s runs from ``out`` (``results.json`` and ``tune_runs.jsonl.xz``, each
    backed up to ``<name>.bak`` first); returns how many were removed."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}.")
    out = pathlib.Path(out)
    results = load_results(out)
    if not results["runs"]:
        raise SystemExit(f"no runs in {out / RESULTS_JSON}")
    kept = [run for run in results["runs"] if run.get("role") != role]
    for name in (RESULTS_JSON, TUNE_RUNS):
        if (out / name).is_file():
            shutil.copyfile(out / name, out / (name + ".bak"))
    save_results(out, {**results, "runs": kept})
    return len(results["runs"]) - len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="an imu-jax run output folder")
    parser.add_argument("--role", default="retain_free", choices=ROLES)
    args = parser.parse_args()
    print(f"removed {drop_runs(args.out, args.role)} {args.role} runs from {args.out}")


if __name__ == "__main__":
    main()
