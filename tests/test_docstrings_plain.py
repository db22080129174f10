"""Every docstring example runs as written in a plain ``python`` process: no pytest, no NUMBER
flag (printed floats must be the ones a user sees), no conftest (a sharding example fakes its own
devices in its module docstring before JAX starts). Matching is doctest's own, with ELLIPSIS and
NORMALIZE_WHITESPACE only."""

import pathlib
import pkgutil
import subprocess
import sys

import pytest

import imu_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE_DEVICES = "xla_force_host_platform_device_count"
RUNNER = r'''
import doctest, importlib, sys
failed = []
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    if result.failed:
        failed.append(name)
print("FAILED", failed)
'''


def _modules() -> tuple[list[str], list[str]]:
    """``(with_devices, others)``: modules whose docstrings fake devices run in their own
    process, first, so the flag is set before anything starts JAX."""
    names = sorted(m.name for m in pkgutil.walk_packages(imu_jax.__path__, "imu_jax."))

    def source(name):
        path = ROOT / name.replace(".", "/")
        return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()

    devices = [n for n in names if FAKE_DEVICES in source(n)]
    return devices, [n for n in names if n not in devices]


@pytest.mark.slow
@pytest.mark.parametrize("group", ["devices", "others"])
def test_docstring_examples_run_in_a_plain_python_process(group):
    devices, others = _modules()
    names = devices if group == "devices" else others
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", RUNNER, *names], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "FAILED []", out.stdout[-6000:]
