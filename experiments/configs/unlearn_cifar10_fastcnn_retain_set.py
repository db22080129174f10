"""CIFAR-10 (real images), at fixed length on CPU: the retain-set methods, JiT, SCAR.

The companion of ``unlearn_cifar10_fastcnn_class.py`` (same data, recipe and models: copy its
``class0/models/*_seed0`` folders into the output folder; for ``--forget class:3`` those of
``class3/``, for ``--forget random:0.1`` those of ``cifar10_fastcnn_random10/``). These methods
run their authors' fixed-length defaults (``--fixed-length``) because the retain-free rule's
50-epoch cap is out of reach on 2 CPU cores for them: the retain-set methods pass over the
45,000 retain images (one pass costs a training epoch), and JiT (lr 3e-4) and SCAR move the
forget accuracy so slowly that under the rule they run towards the cap (JiT: 31 of 2,000 steps
in ~10 minutes, class 3). Fine-tune and Random-Label-with-retain are reference points.

Command:
  imu-jax run --config experiments/configs/unlearn_cifar10_fastcnn_retain_set.py --fixed-length \
      --out experiments/results/cifar10_fastcnn_retain_set/class0 --no-progress
  (add ``--forget class:3`` or ``--forget random:0.1`` and the matching ``--out`` for the others)
Expected time: see experiments/README.md (CIFAR-10) for what was measured.
"""

# In the order they run: the published unlearning methods first, the reference points last.
RETAIN_SET = ["retrain", "salun", "scrub", "jit", "scar", "l1_sparse", "graddiff", "npo_rt",
              "random_label_with_retain", "finetune"]


def get_config() -> dict:
    return {
        "dataset": "imagefolder:../shared/data/cifar10-jpeg.zip",
        "model": "fastcnn",
        "forget": "class:0",
        "methods": RETAIN_SET,
        "seeds": [0, 1, 2],
        "noise_floor": "next_seed",
    }
