"""Markov-chain forgetting (spec §4): forget chain 1, forget2 (chain 2) is an unseen control.

Original: 4-layer width-128 causal transformer on retain + forget1 (the data branch's recipe:
5 epochs, batch 128, AdamW 5e-4); Retrain: retain only. Unlearning with the paper's setting for
every ascent method: AdamW 5e-4, batch 4, at most 50 iterations, L1 α = 0.002, head = the output
projection (``head``); no tuning (the paper's values). Metrics: per-token KL to Retrain and to
the true transition rows on retain-test, forget-test and forget2-test.

Command:
  imu-jax run --config experiments/configs/unlearn_markov.py --out experiments/results/markov
Expected time: CPU (2 cores) ~10-15 min, dominated by training 6 transformers; GPU ~2 min.
"""

ASCENT = {"optimizer": "adamw", "learning_rate": 5e-4, "batch_size": 4, "max_steps": 50,
          "weight_decay": 0.0}


def get_config() -> dict:
    imu_family = {**ASCENT, "alpha": 0.002, "epochs": 1}
    return {
        "dataset": "markov",
        "model": "transformer",
        "forget": "chain:1",
        "methods": ["retrain", "ga", "ga_head", "imu", "imu_random", "imu_batch", "npo",
                    "graddiff", "npo_rt", "simnpo"],
        "seeds": [0, 1, 2],
        "tune_seeds": [],
        "hparams": {
            "imu": imu_family, "imu_random": imu_family, "imu_batch": imu_family,
            "ga_head": imu_family,
            "ga": {**ASCENT, "epochs": 1, "milestones": ()},
            "npo": {**ASCENT, "epochs": 1},
            "graddiff": {**ASCENT, "epochs": 1, "milestones": ()},
            "npo_rt": {**ASCENT, "epochs": 1},
            "simnpo": {**ASCENT, "epochs": 1},
        },
    }
