"""Original model on CPU for CIFAR-100: ``fastcnn`` with stem 16 and widths 16/64/128 (wider later
groups than CIFAR-10's 16/32/64, for 100 classes) on the shared CIFAR-100 JPEG image folder;
the CIFAR-10 CPU schedule otherwise: one-cycle SGD-Nesterov (peak lr 0.2, momentum 0.9, weight
decay 5e-4, 20% warm-up), batch 512, label smoothing 0.2, random crop + flip, 12 epochs
(``imu_jax.train.recipe("cifar100", "fastcnn")``).

Command:  imu-jax train --config experiments/configs/train_cifar100_fastcnn.py --out runs/c100_cpu
Retrain:  ... --forget random:0.1 --retrain
Superclass / subclass settings train on the 20 superclasses (``--forget superclass:vehicles_2``
or ``subclass:rocket``; the folder's coarse_labels.json gives them). The shared zip is converted
into the data dir on first use (~1 CPU-minute). JPEG pixels (quality 75, ~7.6/255 from the
official files, ../shared/data/README.md): accuracies are comparable to, not identical with,
numbers on the official CIFAR-100 files.
Expected (first estimate, 7 epochs): ~1.7 s per step of 512 images on 2 free cores, ~20 minutes
for 679 steps.
Measured side by side with the CIFAR-10 recipe (synthetic batches, 4 steps after compilation,
load 4-9 from other jobs, so both slow): 2.26 s (median 2.55) against 1.56 s for 16/32/64, whose
free-core figure is 1.19 s; 1.45 x 1.19 = 1.7 s. Other widths, same measurement: 16/32/128
1.80 s, 32/64/128 4.52 s, 24/48/96 5.50 s.
Measured (the command above, seed 0, 2026-12-07, 2 cores with the experiment queue otherwise
idle): 516 s for the 679 steps (0.76 s a step, 8.6 minutes: the synthetic-batch estimate above
was taken under load), test accuracy **47.7 %** on the 100 fine classes (retain 52.1 %) and
**60.4 %** on the 20 superclasses (its fine predictions mapped by coarse_labels.json,
experiments/superclass_accuracy.py), with the earlier 7-epoch schedule: short of the 50 % aimed
for. The recipe now trains **12 epochs** (1,164 steps): measured 2026-12-07 (the same command,
seed 0, the experiment queue alone on the 2 cores with a low-priority test suite beside it),
868 s (14.5 minutes), test accuracy **53.4 %** on the 100 fine classes (retain 61.0 %) and
**65.6 %** on the 20 superclasses (mapped the same way; a model trained on the superclasses is
the superclass run's, whose results.md gives its accuracy).
"""

from imu_jax.train import recipe


def get_config() -> dict:
    return {**recipe("cifar100", "fastcnn"),
            "dataset": "imagefolder:../shared/data/cifar100-jpeg.zip"}
