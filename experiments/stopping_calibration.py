"""Calibrates the retain-free stopping rule (imu_jax.unlearning.stopping) on the TUNING seeds only.

For each forget spec and tuning seed (their own original and Retrain models, cached under OUT),
every method runs its defaults at each learning rate and stops by the rule at each threshold
(class removal: forget accuracy ≤ t; sample removal: membership AUC ≤ 0.5 + margin) and each
utility-guard tolerance (``--utility-drops``: ``auto`` = the rule's default, ``none`` = off, or
a number). Prints one line per (spec, method, lr, threshold, tolerance): mean UA, TA, Avg. Gap
to Retrain, steps, stop reasons, and writes OUT/calibration.json. ``--lrs default`` runs each
method at its own default learning rate. The Retrain models are used here only to *measure* the rule
during design, on seeds (100, 101) that are never reported; the rule itself never sees them.
Like the lab's tuning (issue 26), the rule reads the validation split (half of the released test
split) and every number here is scored on it too: the test split stays unseen.

Command (~15 min on 2 CPU cores):
  python experiments/stopping_calibration.py --out /tmp/stopping_cal \
      --specs class:0,class:1,class:2,class:3,class:7,random:0.1 --methods imu,ga
The utility guard's tolerance on MNIST-1D random 10% (docs/STOPPING.md; original models can be
copied into OUT/random_0.1/models/ from any MNIST-1D run to skip their training):
  python experiments/stopping_calibration.py --out /tmp/guard_cal --dataset mnist1d --model mlp \
      --specs random:0.1 --methods imu,ga_head,boundary_shrink,salun --lrs default \
      --utility-drops auto,0.05,0.1,none
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--specs", default="class:3,random:0.1")
    parser.add_argument("--methods", default="imu")
    parser.add_argument("--seeds", default="100,101")
    parser.add_argument("--lrs", default="0.005,0.01,0.02")
    parser.add_argument("--class-thresholds", default="chance,0.05,0.01,0")
    parser.add_argument("--auc-margins", default="default,0.02,0")
    parser.add_argument("--utility-drops", default="auto")
    args = parser.parse_args(argv)

    from imu_jax import methods
    from imu_jax.lab import evaluation
    from imu_jax.lab import models_cache
    from imu_jax.unlearning import stopping
    from imu_jax.data import VALIDATION_FRACTION, make_splits
    from imu_jax.train import recipe

    out = pathlib.Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for spec in args.specs.split(","):
        splits = make_splits(args.dataset, spec, validation=VALIDATION_FRACTION)
        held_out, removal = evaluation.held_out_for(splits, spec)
        scored = evaluation.validation_view(splits)  # design numbers: never the test split
        cfg = {**recipe(args.dataset, args.model), "forget": spec}
        trainer = models_cache.cached_trainer(splits, cfg, out / spec.replace(":", "_"),
                                            progress=False)
        by_accuracy = removal in stopping.BY_FORGET_ACCURACY
        options = (args.class_thresholds if by_accuracy else args.auc_margins).split(",")
        models = {seed: (trainer(False, seed), trainer(True, seed)) for seed in seeds}
        references = {}
        for seed, (_, retrain) in models.items():
            ref = evaluation.model_outputs(retrain, retrain.params, retrain.state, scored)
            references[seed] = (ref, evaluation.evaluate(ref, scored, ref))
        for name in args.methods.split(","):
            method = methods.get_method(name)
            for lr in (None if v == "default" else float(v) for v in args.lrs.split(",")):
                for option, drop in ((o, d) for o in options
                                     for d in args.utility_drops.split(",")):
                    guard = "auto" if drop == "auto" else None if drop == "none" else float(drop)
                    if by_accuracy:
                        rule = stopping.StopRule(removal=removal, class_threshold=None
                                                 if option == "chance" else float(option),
                                                 max_utility_drop=guard)
                    else:
                        rule = stopping.StopRule(removal="sample", auc_margin=None
                                                 if option == "default" else float(option),
                                                 max_utility_drop=guard)
                    hparams = method.hparams({} if lr is None else {"learning_rate": lr})
                    results = []
                    for seed in seeds:
                        original = models[seed][0]
                        ref, ref_metrics = references[seed]
                        task = methods.UnlearnTask(
                            model=original.model, params=original.params, state=original.state,
                            forget=splits.forget, num_classes=splits.num_classes,
                            held_out=held_out, stop_rule=rule)
                        output = method.run(task, hparams, seed)
                        outs = evaluation.model_outputs(original, output.params, output.state,
                                                        scored)
                        metrics = evaluation.evaluate(outs, scored, ref)
                        results.append({"seed": seed, "ua": metrics["ua"], "ta": metrics["ta"],
                                        "ref_ta": ref_metrics["ta"],
                                        "gap": evaluation.gap_to_retrain(metrics, ref_metrics),
                                        "steps": output.info["steps"],
                                        "stop": output.info["stop_reason"]})
                    row = {"spec": spec, "method": name, "lr": hparams.get("learning_rate"),
                           "option": option, "utility_drop": drop,
                           "ua": float(np.mean([r["ua"] for r in results])),
                           "ta": float(np.mean([r["ta"] for r in results])),
                           "retrain_ta": float(np.mean([r["ref_ta"] for r in results])),
                           "avg_gap": float(np.mean([r["gap"] for r in results])),
                           "steps": [r["steps"] for r in results],
                           "stop": [r["stop"] for r in results]}
                    rows.append(row)
                    print(f"{spec:10s} {name:5s} lr={row['lr']:<6g} {option:>7s} guard={drop:>4s} "
                          f"UA={row['ua']:.3f} "
                          f"TA={row['ta']:.3f} (Retrain {row['retrain_ta']:.3f}) "
                          f"gap={row['avg_gap']:.4f} steps={row['steps']} {row['stop']}",
                          flush=True)
                    (out / "calibration.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
