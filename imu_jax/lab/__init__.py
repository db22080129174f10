"""The lab: how imu-jax runs experiments with the library (``imu_jax.lab``); the library never
imports it.

Train-or-load models (:mod:`.models_cache`), run methods × seeds on one forget spec
(:mod:`.runner`), score them (:mod:`.evaluation`), store and resume results (:mod:`.store`) and
the per-run curves (:mod:`.curves`), select hyperparameters (:mod:`.selection`), report
(:mod:`.report`; figures on demand: :mod:`.figures`, ``imu-jax plot``), and the ``imu-jax`` command
(:mod:`.cli` over :mod:`.arguments`, :mod:`.validate` and :mod:`.interrupts`). It needs the
``[experiments]`` extra.
"""

from imu_jax.lab import report
from imu_jax.lab.evaluation import evaluate, gap_to_retrain, held_out_for, model_outputs
from imu_jax.lab.models_cache import TrainedModel, cached_trainer
from imu_jax.lab.runner import run, run_experiment, runnable_methods
from imu_jax.lab.store import RESULTS_JSON, RESULTS_MD, TRADEOFF_PNG, load_results


__all__ = ["RESULTS_JSON", "RESULTS_MD", "TRADEOFF_PNG", "TrainedModel", "cached_trainer",
           "evaluate", "gap_to_retrain", "held_out_for", "load_results", "model_outputs",
           "report", "run", "run_experiment", "runnable_methods"]
