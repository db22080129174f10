"""Fine-class and superclass test accuracy of a trained model on a dataset with coarse labels.

A model trained on the 100 fine CIFAR-100 classes is scored twice: its fine accuracy, and its
superclass accuracy with each fine prediction mapped to its superclass (what the 20-superclass
settings ask of a model; a model trained on the superclasses themselves can do better). A model
with one output per superclass is scored on the superclasses only. Works on CIFAR-100 and on
image folders with ``coarse_labels.json``.

Command (after ``imu-jax train --config experiments/configs/train_cifar100_fastcnn.py --out
runs/c100_cpu``):
  python experiments/superclass_accuracy.py runs/c100_cpu \
      --dataset imagefolder:../shared/data/cifar100-jpeg.zip > runs/c100_cpu/superclass_acc.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: import this checkout's imu_jax
    sys.path.insert(0, str(ROOT))

from imu_jax import checkpoint  # noqa: E402
from imu_jax.data import make_splits  # noqa: E402
from imu_jax.data.hierarchy import hierarchy  # noqa: E402
from imu_jax.train import pad_batch  # noqa: E402


def predictions(fm, params, state, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Arg-max class of every image (fixed-size padded batches: one compilation)."""
    apply = jax.jit(lambda x: fm.apply(params, state, x)[0].argmax(-1))
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        padded = pad_batch({"image": chunk, "label": np.zeros(len(chunk), np.int32)}, batch_size)
        out.append(np.asarray(apply(padded["image"]))[:len(chunk)])
    return np.concatenate(out)


def scores(pred: np.ndarray, fine: np.ndarray, coarse_of_fine: np.ndarray,
           num_outputs: int) -> dict[str, float]:
    """``fine_acc`` and ``superclass_acc`` (fine predictions mapped) for a fine model; only
    ``superclass_acc`` for a model with one output per superclass.

    >>> scores(np.array([0, 1, 2]), np.array([0, 0, 2]), np.array([0, 0, 1]), 3)
    {'fine_acc': 0.6666666666666666, 'superclass_acc': 1.0}
    >>> scores(np.array([0, 1]), np.array([0, 2]), np.array([0, 0, 1]), 2)
    {'superclass_acc': 1.0}
    """
    coarse = coarse_of_fine[fine]
    if num_outputs == len(coarse_of_fine):
        return {"fine_acc": float(np.mean(pred == fine)),
                "superclass_acc": float(np.mean(coarse_of_fine[pred] == coarse))}
    if num_outputs == int(coarse_of_fine.max()) + 1:
        return {"superclass_acc": float(np.mean(pred == coarse))}
    raise ValueError(f"the model has {num_outputs} outputs; the dataset has "
                     f"{len(coarse_of_fine)} fine classes and {coarse_of_fine.max() + 1} "
                     "superclasses.")


def superclass_accuracy(model_dir, dataset: str, data_dir=None) -> dict:
    """Test accuracies of the model saved in ``model_dir`` (``imu-jax train --out``)."""
    model_dir = pathlib.Path(model_dir)
    fm, params, state, _ = checkpoint.restore(model_dir / "checkpoint")
    test = make_splits(dataset, data_dir=data_dir).test  # fine labels, normalised images
    _, superclasses, coarse_of_fine = hierarchy(dataset)
    pred = predictions(fm, params, state, test["image"])
    num_outputs = int(fm.apply(params, state, test["image"][:1])[0].shape[-1])
    out = {"dataset": dataset, "model_dir": str(model_dir), "num_test": int(len(pred)),
           "num_superclasses": len(superclasses),
           **scores(pred, test["label"], coarse_of_fine, num_outputs)}
    metrics = model_dir / "metrics.json"
    if metrics.exists():
        saved = json.loads(metrics.read_text())
        out.update({k: saved[k] for k in ("train_seconds", "test_acc", "retain_acc")
                    if k in saved})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", help="an `imu-jax train --out` folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    print(json.dumps(superclass_accuracy(args.model_dir, args.dataset, args.data_dir), indent=1))


if __name__ == "__main__":
    main()
