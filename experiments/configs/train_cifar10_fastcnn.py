"""Original model on CPU: ``fastcnn`` (airbench-style, 295k parameters) on the CIFAR-10 JPEG
image folder; one-cycle SGD-Nesterov (peak lr 0.2, momentum 0.9, weight decay 5e-4, 20% warm-up),
batch 512, label smoothing 0.2, random crop + flip, 10 epochs.

Command:  imu-jax train --config experiments/configs/train_cifar10_fastcnn.py --out runs/c10_cpu
Retrain:  ... --forget class:0 --retrain   (or random:0.1)
Any CIFAR-10 image folder works (``--dataset imagefolder:PATH``); the shared zip is converted
into the data dir on first use (~70 CPU-seconds).
Expected: ~5.5 CPU-seconds per step of 512 images (measured, experiments/README.md), i.e. ~45
min for the 10 epochs on 2 free CPU cores: over the 15-minute CPU budget; accuracy not measured
yet (aim: >= 85%).
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("imagefolder:../shared/data/cifar10-jpeg.zip")
