"""The lab: how imu-jax runs experiments with the library (``imu_jax.lab``); the library never
imports it.

Train-or-load models (:mod:`.models_cache`), run methods × seeds on one forget spec
(:mod:`.runner`), score them (:mod:`.evaluation`), store and resume results (:mod:`.store`) and
the per-run curves (:mod:`.curves`), select hyperparameters (:mod:`.selection`), report
(:mod:`.report`; figures on demand: :mod:`.figures`, ``imu-jax plot``), and the ``imu-jax`` command
(:mod:`.cli` over :mod:`.arguments` and :mod:`.validate`). It needs the ``[experiments]`` extra.
"""

from imu_jax.lab.runner import run, run_experiment, runnable_methods


__all__ = ["run", "run_experiment", "runnable_methods"]
