"""Combine several ``imu-jax run`` outputs (e.g. the ten digits classes) into ``DIR/summary.md``.

Usage: python experiments/summarize.py experiments/results/digits_class
(reads every DIR/*/results.json, with its tuning runs, in name order).
"""

import pathlib
import sys

from imu_jax.lab.report import combined_markdown
from imu_jax.lab.store import load_results


def main(directory: str) -> None:
    root = pathlib.Path(directory)
    named = {path.parent.name: load_results(path.parent)
             for path in sorted(root.glob("*/results.json"))}
    if not named:
        raise SystemExit(f"no */results.json under {root}")
    (root / "summary.md").write_text(combined_markdown(named))
    print(root / "summary.md")


if __name__ == "__main__":
    main(sys.argv[1])
