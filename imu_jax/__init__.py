"""imu-jax: influence-guided machine unlearning (IMU) in JAX, Flax and Optax.

The core (influence scores, weights, the optax transforms, head selection) is importable on its own
and depends only on jax, optax and numpy::

    import imu_jax as imu
    scores = imu.influence_scores(loss_fn, head_params, forget_batch, chunk_size=128)
    indices, weights = imu.influence_weights(scores, top_fraction=0.1)
"""

from imu_jax.heads import (frozen_mask, head_labels, head_mask, merge_head, param_paths,
                           split_head)
from imu_jax.influence import (DEFAULT_CLIP_QUANTILE, DEFAULT_DAMPING, DEFAULT_TOP_FRACTION,
                               NoNegativeInfluenceWarning, classifier_influence,
                               influence_from_grads, influence_scores, influence_weights,
                               per_example_grads, select_and_weight)
from imu_jax.transforms import (InfluenceWeightedAscentState, imu_sgd, influence_weighted_ascent,
                                l1_penalty, weighted_ascent)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # influence (spec §1–2)
    "DEFAULT_CLIP_QUANTILE",
    "DEFAULT_DAMPING",
    "DEFAULT_TOP_FRACTION",
    "NoNegativeInfluenceWarning",
    "classifier_influence",
    "influence_from_grads",
    "influence_scores",
    "influence_weights",
    "per_example_grads",
    "select_and_weight",
    # optax transforms (spec §3)
    "InfluenceWeightedAscentState",
    "imu_sgd",
    "influence_weighted_ascent",
    "l1_penalty",
    "weighted_ascent",
    # head selection
    "frozen_mask",
    "head_labels",
    "head_mask",
    "merge_head",
    "param_paths",
    "split_head",
]
