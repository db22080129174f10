"""Test-wide setup. Fake CPU devices must exist before JAX starts, so they are set here, once."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
