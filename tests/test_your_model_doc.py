"""docs/YOUR_MODEL.md runs: its python code blocks, in order, as one plain ``python`` script (no
pytest doctest machinery), each printing the ``text`` block shown after it (exactly, but for
decimals, compared to ±0.05 so another CPU's rounding does not fail it); and
colab/your_model.ipynb holds the same code as cells (executed in tests/test_notebooks.py)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "YOUR_MODEL.md"
NOTEBOOK = ROOT / "colab" / "your_model.ipynb"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
MARKER = "----- end of block {} -----"
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")


def same_output(printed: str, shown: str) -> bool:
    """The same text, decimals (``0.18``) within ±0.05.

    >>> same_output("24 steps: accuracy 0.18", "24 steps: accuracy 0.20")
    True
    >>> same_output("24 steps: accuracy 0.48", "24 steps: accuracy 0.18")
    False
    >>> same_output("25 steps: accuracy 0.18", "24 steps: accuracy 0.18")
    False
    """
    if DECIMAL.split(printed.strip()) != DECIMAL.split(shown.strip()):
        return False
    return all(abs(float(got) - float(want)) <= 0.05 + 1e-9
               for got, want in zip(DECIMAL.findall(printed), DECIMAL.findall(shown)))


def blocks() -> list[tuple[str, str | None]]:
    """``(code, expected output or None)`` for every python block of the page, in order."""
    out = []
    for kind, body in FENCE.findall(DOC.read_text()):
        if kind == "python":
            out.append([body, None])
        elif kind == "text" and out and out[-1][1] is None:
            out[-1][1] = body
    return [tuple(b) for b in out]


def test_the_page_has_code_for_nnx_and_linen_and_shows_each_output():
    found = blocks()
    assert len(found) >= 8
    code = "\n".join(c for c, _ in found)
    for needle in ("imu.unlearn(model, forget", "imu.unlearn((net, variables), forget",
                   "nnx.Optimizer(model, tx, wrt=head_filter)", "weights=weights",
                   "state.replace(step=", "imu.per_example_grads", "imu.influence_weights",
                   "imu.weighted_ascent(), imu.l1_penalty(0.2)"):
        assert needle in code, needle
    assert all(expected is not None for _, expected in found), "every block shows its output"


def test_the_code_blocks_run_in_plain_python_and_print_what_the_page_shows(tmp_path):
    found = blocks()
    script = "\n".join(f"{code}\nprint({MARKER.format(i)!r}, flush=True)\n"
                       for i, (code, _) in enumerate(found))
    path = tmp_path / "your_model.py"
    path.write_text(script)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get(
               "PYTHONPATH")])])}
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout
    for i, (code, expected) in enumerate(found):
        marker = MARKER.format(i) + "\n"
        assert marker in printed, f"block {i} did not finish"
        output, printed = printed.split(marker, 1)
        assert same_output(output, expected), (
            f"block {i} printed\n{output}\nbut docs/YOUR_MODEL.md shows\n{expected}")


def test_the_notebook_holds_the_same_code():
    """colab/your_model.ipynb: the setup and parameters cells, then the page's code blocks as
    cells, in order (copy them over when the page changes)."""
    cells = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
             for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert [c.strip() for c in cells[2:]] == [code.strip() for code, _ in blocks()]
