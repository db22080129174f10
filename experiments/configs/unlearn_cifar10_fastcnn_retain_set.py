"""CIFAR-10 (real images), class 0, the methods that use the retain set, on CPU, ``fastcnn``.

The companion of ``unlearn_cifar10_fastcnn_class.py`` (same data, recipe and models: copy its
``class0/models/*_seed0`` folders here). These methods pass over the 45,000 retain images, so
they run their authors' fixed-length defaults (``--fixed-length``): under the retain-free rule
the ones that never reach the class-removal target would run to its 50-epoch cap, about 50
training epochs each on 2 CPU cores. Fine-tune and Random-Label-with-retain are reference points.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_retain_set.py --fixed-length \
      --out experiments/results/cifar10_fastcnn_retain_set/class0 --no-progress
Expected time: see experiments/README.md (CIFAR-10) for what was measured.
"""

RETAIN_SET = ["retrain", "finetune", "random_label_with_retain", "scrub", "graddiff", "npo_rt",
              "salun", "l1_sparse"]


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "class:0",
        "methods": RETAIN_SET,
        "seeds": [0],
    }
