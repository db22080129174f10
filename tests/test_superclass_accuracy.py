"""experiments/superclass_accuracy.py: fine and mapped superclass accuracy of a trained model."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from imu_jax.lab import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("superclass_accuracy",
                                               REPO / "experiments/superclass_accuracy.py")
superclass_accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(superclass_accuracy)


def test_scores_map_fine_predictions_and_refuse_other_heads():
    coarse_of_fine = np.array([0, 0, 1, 1])
    got = superclass_accuracy.scores(np.array([1, 2, 3, 0]), np.array([0, 2, 2, 3]),
                                     coarse_of_fine, 4)
    assert got == {"fine_acc": 0.25, "superclass_acc": 0.75}  # supers 0 1 1 0 vs 0 1 1 1
    with pytest.raises(ValueError, match="3 outputs"):
        superclass_accuracy.scores(np.array([0]), np.array([0]), coarse_of_fine, 3)


def test_on_a_trained_model(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split, n in (("train", 12), ("test", 6)):
        for k, cls in enumerate(("a1", "a2", "b1")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                img = np.full((8, 8, 3), 40 + 80 * k, np.uint8) + rng.integers(0, 20, (8, 8, 3),
                                                                               dtype=np.uint8)
                Image.fromarray(img).save(root / split / cls / f"{i}.png")
    (root / "coarse_labels.json").write_text(json.dumps({"a1": "a", "a2": "a", "b1": "b"}))
    dataset, data = f"imagefolder:{root}", str(tmp_path / "d")
    assert cli.main(["train", "--dataset", dataset, "--model", "mlp", "--epochs", "3",
                     "--batch-size", "8", "--out", str(tmp_path / "m"), "--data-dir", data,
                     "--no-progress"]) == 0
    got = superclass_accuracy.superclass_accuracy(tmp_path / "m", dataset, data)
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert got["num_test"] == 18 and got["num_superclasses"] == 2
    assert got["fine_acc"] == pytest.approx(saved["test_acc"])  # the same model, the same test
    assert got["fine_acc"] <= got["superclass_acc"] <= 1.0  # a right fine class is a right super
