"""The Colab notebooks: stored clean, one repository URL each, and they run top to bottom.

Execution uses smoke mode (``IMU_SMOKE=1``: tiny data and models, mock CIFAR through
``tfds.testing.mock_data``), offline, on CPU, in a temporary working and data directory, with
a Jupyter kernel of the current interpreter (``ipykernel``, a ``dev`` extra) that imports this
checkout. Any cell error fails the test.
"""

from __future__ import annotations

import os
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLAB = ROOT / "colab"
NOTEBOOKS = ("quickstart", "cifar10_resnet18", "compose_optax", "your_model")
COLAB_URL = re.compile(
    r"https://colab\.research\.google\.com/github/(?P<slug>[\w.-]+/[\w.-]+)/blob/main/colab/"
    r"(?P<name>[\w.-]+)\.ipynb")
REPO_LINE = re.compile(r'^REPO = "https://github\.com/(?P<slug>[\w.-]+/[\w.-]+)"$', re.M)


def _read(name: str):
    return nbformat.read(COLAB / f"{name}.ipynb", as_version=4)


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in COLAB.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb cell {i} has stored outputs: clear them"
            assert cell.execution_count is None, f"{name}.ipynb cell {i} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_badge_setup_and_parameters(name):
    """Badge first; the setup cell holds the one REPO constant, matching the badge; smoke switch."""
    nb = _read(name)
    badge = COLAB_URL.search(nb.cells[0].source)
    assert badge and badge["name"] == name, f"{name}.ipynb must open with its Colab badge"
    setup = nb.cells[1].source
    repo = REPO_LINE.search(setup)
    assert repo, "the first code cell must define REPO = \"https://github.com/OWNER/NAME\""
    assert repo["slug"] == badge["slug"], "the badge and REPO point at different repositories"
    assert "import imu_jax" in setup and "pip" in setup
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert len(re.findall(r"github\.com/", code)) == 1, "keep the repository URL in one place"
    assert 'os.environ.get("IMU_SMOKE") == "1"' in code


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_in_smoke_mode(name, tmp_path, data_dir, monkeypatch):
    # The kernel is a child process: it inherits this environment.
    monkeypatch.setenv("IMU_SMOKE", "1")
    monkeypatch.setenv("IMU_WORKDIR", str(tmp_path))
    monkeypatch.setenv("IMU_JAX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # Two CPU devices: the CIFAR notebook's mesh then has a real data axis.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = _read(name)
    # One more cell: the kernel must have imported this checkout, not another installed copy.
    nb.cells.append(nbformat.v4.new_code_cell("import imu_jax; print(imu_jax.__file__)"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs)
    assert "runtime: cpu" in text
    assert str(ROOT / "imu_jax") in nb.cells[-1].outputs[0]["text"]
