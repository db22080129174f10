"""Original model on CPU: ``fastcnn`` at half width (stem 16, widths 16/32/64; 75,290 parameters,
airbench's layout) on the CIFAR-10 JPEG image folder; one-cycle SGD-Nesterov (peak lr 0.2,
momentum 0.9, weight decay 5e-4, 20% warm-up), batch 512, label smoothing 0.2, random crop +
flip, 8 epochs.

Command:  imu-jax train --config experiments/configs/train_cifar10_fastcnn.py --out runs/c10_cpu
Retrain:  ... --forget class:0 --retrain   (or random:0.1)
Any CIFAR-10 image folder works (``--dataset imagefolder:PATH``); the shared zip is converted
into the data dir on first use (~70 CPU-seconds).
Expected (measured, experiments/README.md, "CIFAR-10 on CPU"): 1.19 s per step of 512 images
on 2 free cores (~14 min for the 8 epochs; 3.66 s at the full 32/64/128 width); 37.5 min wall
while three experiments shared the 2 cores; test accuracy 77.3% (train 80.0%), below the 85%
aimed for.
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("imagefolder:../shared/data/cifar10-jpeg.zip")
