"""The public API: everything in ``imu_jax.__all__`` exists and documents itself with an example."""

import inspect

import imu_jax


def test_all_names_exist():
    missing = [name for name in imu_jax.__all__ if not hasattr(imu_jax, name)]
    assert not missing


def test_every_public_function_has_a_runnable_example():
    """Each public function's docstring holds a doctest (run by ``pytest --doctest-modules``)."""
    undocumented = []
    for name in imu_jax.__all__:
        obj = getattr(imu_jax, name)
        if inspect.isfunction(obj) and ">>>" not in (inspect.getdoc(obj) or ""):
            undocumented.append(name)
    assert not undocumented, f"public functions without a doctest example: {undocumented}"
