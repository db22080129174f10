"""Datasets (TFDS, no TensorFlow), forget specifications, splits and batching.

Examples:
  >>> import tempfile
  >>> splits = make_splits("digits", "random:0.1", seed=0, data_dir=tempfile.mkdtemp())
  >>> splits.info["counts"]["forget"], splits.info["counts"]["retain"]
  (144, 1293)
  >>> next(batches(splits.retain, 32, seed=0))["image"].shape
  (32, 8, 8, 1)
"""

from imu_jax import _extras

_extras.require("tensorflow_datasets", "data", "imu_jax.data (datasets through TFDS)")

from imu_jax.data.forget_spec import KINDS, ForgetSpec, ForgetSpecError, parse_forget_spec
from imu_jax.data.markov import MarkovConfig, transition_matrix
from imu_jax.data.paths import DataDirError, resolve_data_dir
from imu_jax.data.pipeline import batches, num_batches, random_crop_flip
from imu_jax.data.sources import CATALOGUE, build, load, local_builder
from imu_jax.data.splits import Splits, make_splits
from imu_jax.data.validation import VALIDATION_FRACTION, carve_validation

__all__ = [
    "CATALOGUE",
    "KINDS",
    "DataDirError",
    "ForgetSpec",
    "ForgetSpecError",
    "MarkovConfig",
    "Splits",
    "VALIDATION_FRACTION",
    "batches",
    "build",
    "carve_validation",
    "load",
    "local_builder",
    "make_splits",
    "num_batches",
    "parse_forget_spec",
    "random_crop_flip",
    "resolve_data_dir",
    "transition_matrix",
]
