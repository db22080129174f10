"""MNIST-1D (Greydanus & Kobak, ICML 2024) generated locally, as a TFDS builder (``imu_mnist1d``).

The ``mnist1d`` package generates the dataset procedurally from ten 1-D digit templates:
``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` (its ``get_dataset`` would
download a pickle instead; we never call it). With the package's default arguments (5,000 signals
of length 40, seed 42, 80/20 split) that is 4,000 training and 1,000 test signals, already
standardised (mean 0, std 1). They are served as ``"image"`` float32 ``[40, 1]`` (length,
channels), the layout of :class:`imu_jax.models.CNN1D`; the MLP flattens them.

Examples:
  >>> d = mnist1d_arrays()
  >>> d["train"]["image"].shape, d["test"]["image"].shape, d["train"]["image"].dtype
  ((4000, 40, 1), (1000, 40, 1), dtype('float32'))
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow_datasets as tfds

LENGTH = 40


def mnist1d_arrays() -> dict[str, dict[str, np.ndarray]]:
    """``{"train"|"test": {"image": f32 [N, 40, 1], "label": int64 [N], "id": int64 [N]}}``.

    Generated with the package's defaults; the global ``random`` / ``numpy.random`` state that
    ``make_dataset`` seeds is restored afterwards.
    """
    from imu_jax import _extras

    _extras.require("mnist1d", "data", "MNIST-1D")
    import mnist1d.data

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out = {}
    for split, (x, y) in {"train": ("x", "y"), "test": ("x_test", "y_test")}.items():
        images = np.asarray(data[x], np.float32)[..., None]
        labels = np.asarray(data[y], np.int64)
        out[split] = {"image": images, "label": labels, "id": np.arange(len(labels))}
    return out


class ImuMnist1d(tfds.core.GeneratorBasedBuilder):
    """MNIST-1D with the ``mnist1d`` package's default arguments; build with array_record."""

    VERSION = tfds.core.Version("1.0.0")
    url_infos = None  # generated locally; nothing to download
    RELEASE_NOTES = {"1.0.0": "mnist1d.data.make_dataset(get_dataset_args()) defaults."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="MNIST-1D: 1-D digit signals of length 40, standardised.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(LENGTH, 1), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=10),
                "id": np.int64,
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        arrays = mnist1d_arrays()
        return {name: self._generate_examples(arrays[name]) for name in ("train", "test")}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["label"])):
            yield int(arrays["id"][i]), {k: v[i] for k, v in arrays.items()}


__all__ = ["ImuMnist1d", "mnist1d_arrays"]
