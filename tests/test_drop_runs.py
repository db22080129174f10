"""experiments/drop_runs.py: remove one role's runs so ``--resume`` re-runs only those."""

import importlib.util
import json
import pathlib

import pytest

from imu_jax.lab import store

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("drop_runs", REPO / "experiments/drop_runs.py")
drop_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drop_runs)


def test_drops_only_the_role_and_keeps_a_backup(tmp_path):
    runs = [{"method": m, "seed": 0, "role": role, "hparams": {}, "metrics": {}, "avg_gap": 0.0}
            for m, role in (("original", "eval"), ("imu", "tune"), ("imu", "retain_free"),
                            ("ga", "retain_free"), ("imu", "eval"))]
    # written before the tuning runs were stored apart: every run in results.json
    (tmp_path / "results.json").write_text(json.dumps({"config": {"seeds": [0]}, "runs": runs}))
    assert drop_runs.drop_runs(tmp_path, "retain_free") == 2
    kept = store.load_results(tmp_path)  # results.json's runs, then tune_runs.jsonl.xz's
    assert [(r["method"], r["role"]) for r in kept["runs"]] == [
        ("original", "eval"), ("imu", "eval"), ("imu", "tune")]
    assert kept["config"] == {"seeds": [0]}
    assert len(json.loads((tmp_path / "results.json.bak").read_text())["runs"]) == 5
    assert (tmp_path / store.TUNE_RUNS).exists()
    with pytest.raises(ValueError, match="role"):
        drop_runs.drop_runs(tmp_path, "oracle")


def test_methods_narrow_the_drop(tmp_path):
    runs = [{"method": m, "seed": 0, "role": "eval", "hparams": {}, "metrics": {}, "avg_gap": 0.0}
            for m in ("original", "retrain", "finetune", "imu", "ga_head")]
    (tmp_path / "results.json").write_text(json.dumps({"config": {"seeds": [0]}, "runs": runs}))
    assert drop_runs.drop_runs(tmp_path, "eval", ["imu", "ga_head"]) == 2
    assert [r["method"] for r in store.load_results(tmp_path)["runs"]] == [
        "original", "retrain", "finetune"]
    with pytest.raises(SystemExit, match="none of"):
        drop_runs.drop_runs(tmp_path, "eval", ["gaa"])
