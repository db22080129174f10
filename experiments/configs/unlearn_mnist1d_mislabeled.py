"""MNIST-1D, forget the 10% of training examples whose labels were corrupted (``mislabeled:0.1``),
2x100 MLP. The original trains on the corrupted labels; Retrain never sees the mislabelled ones.

Command:
  imu-jax run --config experiments/configs/unlearn_mnist1d_mislabeled.py \
      --out experiments/results/mnist1d_mislabeled10
Needs nothing but ``pip install``. Not run yet (run time unmeasured).
"""


def get_config() -> dict:
    return {
        "dataset": "mnist1d",
        "model": "mlp",
        "forget": "mislabeled:0.1",
        "methods": ["retrain", "finetune", "ga", "ga_head", "imu", "imu_random",
                    "random_label_forget_only", "boundary_shrink",
                    "boundary_shrink_runner_up", "npo", "ssd", "random_label_with_retain",
                    "salun", "scrub", "l1_sparse", "jit", "scar", "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [100, 101],
    }
