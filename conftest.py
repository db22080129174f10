"""Test-wide setup. Fake CPU devices must exist before JAX starts, so they are set here, once."""

import os

FAKE_DEVICES = 8  # the meshes of the sharding tests (marker ``eight_devices``) need this many
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={FAKE_DEVICES}")
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
    if count >= FAKE_DEVICES:
        return
    skip = pytest.mark.skip(reason=f"builds {FAKE_DEVICES}-device meshes; this run has {count} "
                                   f"{jax.default_backend()} device(s) (the CPU suite fakes "
                                   f"{FAKE_DEVICES})")
    for item in items:
        if (item.get_closest_marker("eight_devices")
                or item.nodeid.split("::")[0] in EIGHT_DEVICE_DOCTESTS):
            item.add_marker(skip)
