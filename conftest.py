"""Test-wide setup. Fake CPU devices must exist before JAX starts, so they are set here, once."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests check the algorithm to ~1e-6. On GPUs JAX multiplies float32 matrices in TF32 by default
# (relative error ~1e-4, BENCHMARKS.md "On one GPU"); full float32 there. A no-op on CPUs.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


# The sharding doctests build 8-device meshes too; these modules' doctests carry no marker.
EIGHT_DEVICE_DOCTESTS = ("imu_jax/sharding.py", "imu_jax/steps.py")


def pytest_collection_modifyitems(config, items):
    """Skips the 8-device tests where fewer devices exist (e.g. one GPU), saying why."""
    import jax
    import pytest

    count = jax.device_count()
    if count >= 8:
        return
    skip = pytest.mark.skip(reason=f"builds 8-device meshes; this run has {count} "
                                   f"{jax.default_backend()} device(s) (the CPU suite fakes 8)")
    for item in items:
        if (item.get_closest_marker("eight_devices")
                or item.nodeid.split("::")[0] in EIGHT_DEVICE_DOCTESTS):
            item.add_marker(skip)
