"""TFDS builder for scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), offline.

The train/test split is fixed: a stratified 80/20 split with seed 0 (1,437 / 360 images).

Examples:
  >>> import tempfile
  >>> builder = ImuDigits(data_dir=tempfile.mkdtemp(), file_format="array_record")
  >>> from imu_jax.data.sources import prepare
  >>> prepare(builder)
  >>> {k: v.num_examples for k, v in builder.info.splits.items()}
  {'train': 1437, 'test': 360}
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def digits_arrays() -> dict[str, dict[str, np.ndarray]]:
    """The digits as ``{"train"|"test": {"image": uint8 [N,8,8,1] in 0..16, "label", "id"}}``.

    >>> d = digits_arrays(); d["train"]["image"].shape, d["test"]["label"].shape
    ((1437, 8, 8, 1), (360,))
    """
    from imu_jax import _extras

    _extras.require("sklearn", "data", "the digits dataset (scikit-learn's)")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    ids = np.arange(len(labels))
    tr, te = train_test_split(
        ids, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    tr, te = np.sort(tr), np.sort(te)
    return {
        name: {"image": images[idx], "label": labels[idx], "id": idx}
        for name, idx in (("train", tr), ("test", te))
    }


class ImuDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits as a TFDS dataset (``imu_digits``); build with array_record."""

    VERSION = tfds.core.Version("1.0.0")
    url_infos = None  # nothing to download; also avoids TFDS looking up checksum files
    RELEASE_NOTES = {"1.0.0": "sklearn digits, stratified 80/20 split, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn 8x8 digits; pixel values 0..16.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "id": np.int64,
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        arrays = digits_arrays()
        return {name: self._generate_examples(arrays[name]) for name in ("train", "test")}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["label"])):
            yield int(arrays["id"][i]), {k: v[i] for k, v in arrays.items()}
