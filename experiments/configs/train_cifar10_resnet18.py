"""Original model: ResNet-18 on CIFAR-10 with the paper's recipe (SGD lr 0.1, momentum 0.9,
weight decay 5e-4, 182 epochs, lr x0.1 at epochs 91 and 136, batch 256, random crop + flip).

Command:  imu-jax train --config experiments/configs/train_cifar10_resnet18.py --out runs/c10
Retrain:  ... --forget class:0 --retrain   (or random:0.1)
Needs CIFAR-10 prepared by TFDS (``tfds build cifar10 --file_format=array_record``), or, offline,
the image folder / zip of JPEGs (converted into the data dir on first use; same recipe):
  imu-jax train --config experiments/configs/train_cifar10_resnet18.py \
      --dataset imagefolder:../shared/data/cifar10-jpeg.zip --out runs/c10
Expected: a GPU/TPU job; runtime not measured yet (no accelerator was available when this
recipe was written). The recipe's published ResNet-18 result is ~95% test accuracy.
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("cifar10", "resnet18")
