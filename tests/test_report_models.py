"""results.md names the models an experiment trained: the recipe from the config and the
original and Retrain models' test accuracy over the reported seeds (issue 27's must-show)."""

from imu_jax.lab.report.models import models_text
from imu_jax.lab.report.tables import results_markdown


def _run(method, seed, ta, seconds=0.0, role="eval"):
    return {"method": method, "seed": seed, "role": role,
            "metrics": {"ua": 1.0, "ra": ta, "ta": ta, "mia_efficacy": 1.0},
            "seconds": seconds, "avg_gap": 0.0, "hparams": {}, "needs": "retain set"}


CONFIG = {"dataset": "imagefolder:x.zip", "model": "fastcnn", "forget": "superclass:vehicles_2",
          "train_config": {"model_options": {"stem": 16, "widths": [16, 64, 128]}, "epochs": 12,
                           "batch_size": 512, "learning_rate": 0.2, "schedule": "onecycle"}}


def test_results_md_gives_the_recipe_and_the_models_accuracy():
    runs = [_run("original", 0, 0.60), _run("original", 1, 0.64), _run("original", 2, 0.62),
            _run("retrain", 0, 0.61, 840.0), _run("retrain", 1, 0.63, 900.0),
            _run("imu", 0, 0.1, role="tune")]  # a tuning run is not a model of the recipe
    text = results_markdown({"config": CONFIG, "runs": runs})
    line = next(l for l in text.splitlines() if l.startswith("Models:"))
    assert "`fastcnn` (stem 16, widths [16, 64, 128]), trained 12 epochs, batch 512" in line
    assert "Original models: TA 62.0 ± 2.0 % on this setting's test split (seeds 0, 1, 2)" in line
    assert "Retrain: 62.0 ± 1.4 % (seeds 0, 1), 14.5 min a model." in line


def test_no_models_paragraph_without_a_recorded_recipe():
    runs = [_run("original", 0, 0.6)]
    assert models_text({"model": "mlp"}, runs) is None
    assert "Models:" not in results_markdown({"config": {"model": "mlp"}, "runs": runs})


def test_short_retrains_are_given_in_seconds():
    runs = [_run("retrain", 0, 0.97, 3.2)]
    assert models_text({"model": "mlp", "train_config": {"epochs": 20}}, runs) == (
        "Models: `mlp`, trained 20 epochs. Retrain: 97.0 % (seed 0), 3 s a model.")
