"""Compact committed experiment folders: per-run curves into one file, the tuning sweep into
another, smaller figures.

For every folder under DIR (default experiments/results, nested folders included) this

* packs ``curves/<method>_<role>_seed<S>.json`` into ``curves.jsonl.xz`` (one JSON line per run,
  :mod:`imu_jax.lab.curves`) and deletes them, their PNGs and the emptied folder;
* points each run's ``info["curve_file"]`` in ``results.json`` at ``curves.jsonl.xz#<name>``;
* stores the runs as ``imu_jax.lab.store.save_results`` does: the tuning runs (role ``"tune"``)
  that an older imu-jax kept in ``results.json`` move to ``tune_runs.jsonl.xz`` (xz JSON Lines,
  one run per line), the rest stays in ``results.json``, one line per run
  (``imu_jax.lab.store.results_text``). The same JSON values, so the same tables:
  ``imu_jax.lab.store.load_results`` gives the same runs before and after;
* rewrites its PNGs (tradeoff.png, steps.png, ...) with a 256-colour palette.

The per-run PNGs are drawn on demand: ``imu-jax plot OUT``. Running it again changes nothing.

  python experiments/compact_results.py [DIR]
"""

import json
import pathlib
import sys

from imu_jax.lab import curves
from imu_jax.lab.report.plots import compact_png
from imu_jax.lab.store import RESULTS_JSON, load_results, save_results


def _size(root: pathlib.Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def compact_folder(out: pathlib.Path) -> dict:
    """Compacts one experiment folder; returns what it did."""
    done = {"packed": curves.pack_legacy(out), "refs": 0, "rewritten": []}
    path = out / RESULTS_JSON
    if path.is_file() and isinstance(json.loads(path.read_text()).get("runs"), list):
        results = load_results(out)
        have, missing = set(curves.read_curves(out)), []
        for run in results["runs"]:
            ref = run.get("info", {}).get("curve_file")
            if ref and not ref.startswith(curves.CURVES_FILE + "#"):
                name = pathlib.PurePosixPath(ref).stem
                missing += [] if name in have else [name]
                run["info"]["curve_file"] = curves.curve_ref(name)
                done["refs"] += 1
        if missing:  # e.g. a results.json copied from another folder
            print(f"note: {path}: {len(missing)} curve_file references name curves this folder "
                  f"does not have (e.g. {missing[0]})", file=sys.stderr)
        done["rewritten"] = save_results(out, results)  # only the files whose text changes
    return done


def main(directory: str = "experiments/results") -> None:
    root = pathlib.Path(directory)
    before = _size(root)
    folders = sorted({p.parent for p in root.rglob(RESULTS_JSON)}
                     | {p.parent for p in root.rglob(curves.LEGACY_FOLDER) if p.is_dir()})
    for out in folders:
        done = compact_folder(out)
        if done["packed"] or done["refs"] or done["rewritten"]:
            print(f"{out}: {done['packed']} curves packed, {done['refs']} curve_file "
                  f"references updated" + "".join(f", {name} rewritten"
                                                  for name in done["rewritten"]))
    shrunk = [p for p in sorted(root.rglob("*.png")) if compact_png(p)]
    if shrunk:
        print(f"{len(shrunk)} PNGs rewritten with a 256-colour palette")
    after = _size(root)
    print(f"{root}: {before[0] / 1e6:.1f} MB in {before[1]} files -> "
          f"{after[0] / 1e6:.1f} MB in {after[1]} files")


if __name__ == "__main__":
    main(*sys.argv[1:])
