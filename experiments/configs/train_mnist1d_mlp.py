"""Original model: MNIST-1D's 2x100 ReLU MLP with the mnist1d package's recipe (Adam lr 1e-2, no
weight decay, batch 100, 6,000 steps = 150 epochs of the 4,000 signals).

Command:  imu-jax train --config experiments/configs/train_mnist1d_mlp.py --out runs/mnist1d_mlp
Needs nothing but ``pip install``. Published: ~68% test accuracy (Greydanus & Kobak, 2024).
Expected (measured, seed 0, 2 shared CPU cores, load average ~17): 67.7% test, 100% train accuracy
(it overfits, so a random forget set is measurably "seen"); training 23 s (2.3 min wall with data
generation and startup).
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("mnist1d", "mlp")
