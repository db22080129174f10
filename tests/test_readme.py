"""The README's commands stay true: CI runs its test command, its demo command parses, its links
resolve. (Its code block is a doctest, collected through ``--doctest-glob=README.md``.)"""

from __future__ import annotations

import pathlib
import re
import shlex


ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TEST_COMMAND = 'pip install -e ".[dev]" && python -m pytest -n 2 -q'


def test_ci_runs_the_readme_test_command():
    assert f"\n{TEST_COMMAND}\n" in README
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, ".ci/run must run the README's test command verbatim"


def test_run_commands_parse():
    """Every ``imu-jax run`` command line in the README parses and names registered methods."""
    from imu_jax.lab import cli
    from imu_jax.methods import get_method

    lines = [l for l in README.splitlines() if "imu-jax run " in l and not l.startswith(("`", "|"))]
    assert any(l.startswith('pip install -e ".[experiments]" && imu-jax run')
               for l in lines)  # the demo
    for line in lines:
        argv = shlex.split(line.split("imu-jax", 1)[1])
        args = cli.build_parser().parse_args(argv)
        assert args.command == "run" and args.out
        for name in args.methods.split(",") if args.methods else []:
            get_method(name)


def test_links_resolve():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", README)
    assert links
    missing = [l for l in links if l != "BENCHMARKS.md" and not (ROOT / l).exists()]
    assert not missing, f"README links to missing files: {missing}"
