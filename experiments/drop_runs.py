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

``--methods`` narrows the drop to some methods, e.g. the oracle-tuned rows of a copy that should
keep only what a retain-free user can run (``mnist1d_forget_size/random0.1``):

  python experiments/drop_runs.py DIR --role eval --methods ga,ga_head,imu
"""

import argparse
import pathlib
import shutil
from collections.abc import Sequence

from imu_jax.lab.store import RESULTS_JSON, TUNE_RUNS, load_results, save_results

ROLES = ("retain_free", "eval", "tune")


def drop_runs(out: str | pathlib.Path, role: str, methods: Sequence[str] | None = None) -> int:
    """Removes ``role``'s runs (of ``methods`` only, when given) from ``out`` (``results.json``
    and ``tune_runs.jsonl.xz``, each backed up to ``<name>.bak`` first); returns how many were
    removed."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}.")
    out = pathlib.Path(out)
    results = load_results(out)
    if not results["runs"]:
        raise SystemExit(f"no runs in {out / RESULTS_JSON}")
    if methods is not None and not set(methods) & {run["method"] for run in results["runs"]}:
        raise SystemExit(f"none of {list(methods)} has runs in {out / RESULTS_JSON}")
    kept = [run for run in results["runs"] if run.get("role") != role
            or (methods is not None and run["method"] not in methods)]
    for name in (RESULTS_JSON, TUNE_RUNS):
        if (out / name).is_file():
            shutil.copyfile(out / name, out / (name + ".bak"))
    save_results(out, {**results, "runs": kept})
    return len(results["runs"]) - len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="an imu-jax run output folder")
    parser.add_argument("--role", default="retain_free", choices=ROLES)
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods: drop only their runs of --role")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else None
    print(f"removed {drop_runs(args.out, args.role, methods)} {args.role} runs from {args.out}")


if __name__ == "__main__":
    main()
