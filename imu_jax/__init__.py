"""imu-jax: influence-guided machine unlearning (IMU) in JAX, Flax and Optax.

Two layers. **The library** (this package): the core (influence scores, weights, the optax
transforms, head selection; jax, optax and numpy only), the unlearning loop :func:`unlearn` with
its stopping rule (``imu_jax.unlearning``), sharding, checkpoints, metrics, methods, models and
data. **The lab** (``imu_jax.lab``, the ``[experiments]`` extra): the experiment harness and the
``imu-jax`` command; the library never imports it::

    import imu_jax as imu
    scores = imu.influence_scores(loss_fn, head_params, forget_batch)
    indices, weights = imu.influence_weights(scores, top_fraction=0.5)
"""

from imu_jax.accumulation import AccumulateState, accumulate
from imu_jax.heads import (DenseHead, check_head_selector, dense_softmax_head, frozen_mask,
                           head_candidates, head_labels, head_mask, merge_head, param_paths,
                           path_prefix, split_head)
from imu_jax.influence import (DEFAULT_CLIP_QUANTILE, DEFAULT_DAMPING, DEFAULT_TOP_FRACTION,
                               NoNegativeInfluenceWarning, auto_chunk_size, classifier_influence,
                               influence_from_grads, influence_scores, influence_weights,
                               keep_count, per_example_grads, select_and_weight)
from imu_jax.lm_head import sequence_influence
from imu_jax.methods import Method, MethodOutput, UnlearnTask
from imu_jax.methods import available as available_methods
from imu_jax.methods import get_method
from imu_jax.metrics import (accuracy, avg_gap, classification_metrics, mia_efficacy, mia_features,
                             prediction_wasserstein, token_kl, transition_kl)
from imu_jax.models.adapters import from_linen, from_nnx
from imu_jax.transforms import (InfluenceWeightedAscentState, WeightedAscentState, imu_sgd,
                                influence_weighted_ascent, l1_penalty, weighted_ascent)
from imu_jax.unlearning.config import UnlearnConfig, UnlearnReport
from imu_jax.unlearning.loop import unlearn
from imu_jax.unlearning.monitor import Monitor
from imu_jax.unlearning.stopping import DivergenceWarning, StopRule, membership_auc


__version__ = "0.1.0"


def __getattr__(name: str):
    """``imu_jax.run_experiment`` moved to the lab (:func:`imu_jax.lab.run_experiment`); the old
    name still works, with a ``DeprecationWarning``, and loads the lab only when used."""
    if name == "run_experiment":
        import warnings

        from imu_jax.lab import run_experiment

        warnings.warn("imu_jax.run_experiment moved to imu_jax.lab.run_experiment (the experiment "
                      "harness); the old name will be removed.", DeprecationWarning, stacklevel=2)
        return run_experiment
    raise AttributeError(f"module 'imu_jax' has no attribute {name!r}")

__all__ = [
    "__version__",
    # influence (spec §1–2)
    "DEFAULT_CLIP_QUANTILE",
    "DEFAULT_DAMPING",
    "DEFAULT_TOP_FRACTION",
    "NoNegativeInfluenceWarning",
    "auto_chunk_size",
    "classifier_influence",
    "influence_from_grads",
    "influence_scores",
    "influence_weights",
    "keep_count",
    "per_example_grads",
    "select_and_weight",
    "sequence_influence",
    # optax transforms (spec §3)
    "InfluenceWeightedAscentState",
    "WeightedAscentState",
    "imu_sgd",
    "influence_weighted_ascent",
    "l1_penalty",
    "weighted_ascent",
    "AccumulateState",
    "accumulate",
    # head selection
    "DenseHead",
    "check_head_selector",
    "dense_softmax_head",
    "frozen_mask",
    "head_candidates",
    "head_labels",
    "head_mask",
    "merge_head",
    "param_paths",
    "path_prefix",
    "split_head",
    # the high-level loop, methods and metrics (spec §3–6)
    "UnlearnConfig",
    "UnlearnReport",
    "unlearn",
    # your own Flax model (docs/YOUR_MODEL.md)
    "from_linen",
    "from_nnx",
    # the retain-free stopping rule and the divergence guard
    "DivergenceWarning",
    "Monitor",
    "StopRule",
    "membership_auc",
    "Method",
    "MethodOutput",
    "UnlearnTask",
    "available_methods",
    "get_method",
    "accuracy",
    "avg_gap",
    "classification_metrics",
    "mia_efficacy",
    "mia_features",
    "prediction_wasserstein",
    "token_kl",
    "transition_kl",
]
