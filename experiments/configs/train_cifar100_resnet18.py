"""Original model: ResNet-18 on CIFAR-100 with the paper's recipe (as for CIFAR-10).

Command:  imu-jax train --config experiments/configs/train_cifar100_resnet18.py --out runs/c100
Superclass / subclass settings train on the 20 coarse labels: add ``--forget superclass:K`` or
``--forget subclass:K`` (and ``--retrain`` for the Retrain reference). ``random:0.1`` uses the
100 fine labels.
Needs CIFAR-100 prepared by TFDS (``tfds build cifar100 --file_format=array_record``).
Expected: a GPU/TPU job; runtime not measured yet (no accelerator was available when this
recipe was written). ResNet-18 with this recipe typically reaches ~75% fine-label accuracy.
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return recipe("cifar100", "resnet18")
