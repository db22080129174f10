"""Original model: MNIST-1D's ConvBase CNN (``cnn1d``) with the mnist1d package's recipe
(Adam lr 1e-2, no weight decay, batch 100, 6,000 steps = 150 epochs of the 4,000 signals).

Command:  imu-jax train --config experiments/configs/train_mnist1d_cnn.py --out runs/mnist1d_cnn
Needs nothing but ``pip install`` (the data is generated locally by the ``mnist1d`` package).
Published: ~94% test accuracy (Greydanus & Kobak, 2024).
Expected (measured, seed 0, 2 CPU cores shared with ~7 other jobs, load average ~17): 92.2% test,
100% train accuracy; training 113 s (3.2 min wall with data generation and startup).
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("mnist1d", "cnn1d")
