"""How far from calibrated is the original Markov model on each forget set? (issue 10)

The norm of the mean forget-set gradient of the output layer's bias, ``‖mean_i ∇_b ℓ_i‖₂`` (ℓ =
mean token CE of a sequence), at the original model: near 0 means the model is already
calibrated on that set and gradient ascent has nothing systematic to push against (only noise).
Reported for forget1 (seen in training), forget2 (never seen) and forget1 + forget2 (the paper's
forget set), with the model of ``OUT/models/original_seed0`` written by ``imu-jax run``.

Command (after ``imu-jax run --config experiments/configs/unlearn_markov.py --out OUT``):
  python experiments/markov_calibration.py --out experiments/results/markov
Prints one line per forget set and writes ``OUT/calibration.json``. Seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from imu_jax import checkpoint
from imu_jax.data import make_splits
from imu_jax.unlearning.losses import batch_loss


def head_bias_gradient_norm(model, params, state, tokens: np.ndarray, labels: np.ndarray,
                            batch_size: int = 512) -> float:
    """``‖mean_i ∇_{head bias} ℓ_i‖₂`` over the given sequences."""

    def total(bias, x, y):
        p = {**params, "head": {**params["head"], "bias": bias}}
        logits, _ = model.apply(p, state, x, train=False)
        return jnp.sum(batch_loss(logits, y))

    grad = jax.jit(jax.grad(total))
    bias = params["head"]["bias"]
    acc = sum(np.asarray(grad(bias, tokens[i:i + batch_size], labels[i:i + batch_size]))
              for i in range(0, len(tokens), batch_size))
    return float(np.linalg.norm(acc / len(tokens)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the run's output directory")
    parser.add_argument("--dataset", default="markov")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    model, params, state, _ = checkpoint.restore(out / "models" / f"original_seed{args.seed}" /
                                                 "checkpoint")
    splits = make_splits(args.dataset, "chain:1")
    sets = {"forget1": splits.forget, "forget2": splits.control,
            "forget1+forget2": {k: np.concatenate([splits.forget[k], splits.control[k]])
                                for k in ("tokens", "label")},
            "retain": splits.retain}
    result = {name: head_bias_gradient_norm(model, params, state, s["tokens"], s["label"])
              for name, s in sets.items()}
    for name, value in result.items():
        print(f"{name:>16}: ‖mean ∇ head bias‖ = {value:.4f}")
    (out / "calibration.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
