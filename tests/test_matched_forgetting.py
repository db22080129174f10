"""experiments/matched_forgetting.py: utility at matched forgetting, over several folders."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("matched", REPO / "experiments/matched_forgetting.py")
matched = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matched)


def _run(method, role, ua, ta, seed=0, lr=1):
    return {"method": method, "role": role, "seed": seed, "hparams": {"lr": lr},
            "metrics": {"ua": ua, "ta": ta, "ra": 1.0}, "avg_gap": 0.0}


def test_best_ta_at_a_level_and_the_relative_gain():
    a = {"runs": [_run("retrain", "eval", 1.0, 0.9),
                  _run("imu", "tune", 0.95, 0.80, lr=1), _run("imu", "tune", 0.5, 0.88, lr=2),
                  _run("ga_head", "tune", 0.92, 0.40, lr=1), _run("ga_head", "tune", 0.6, 0.85, lr=2),
                  _run("imu", "retain_free", 0.97, 0.70), _run("ga_head", "retain_free", 0.99, 0.56)]}
    b = {"runs": [_run("retrain", "eval", 1.0, 0.9),
                  _run("imu", "tune", 0.91, 0.60), _run("ga_head", "tune", 0.3, 0.89),
                  _run("imu", "retain_free", 0.2, 0.85), _run("ga_head", "retain_free", 0.95, 0.5)]}
    assert matched.best_ta_at(a, "imu", 0.9) == 0.80
    assert matched.best_ta_at(a, "imu", 0.5) == 0.88
    assert matched.best_ta_at(b, "ga_head", 0.9) is None
    assert matched.gain([0.8, 0.6], [0.4, None]) == "+100.0% (IMU ≥ in 1/1)"
    assert matched.gain([0.5, 0.5], [0.01, 0.99]) == "+0.0% (IMU ≥ in 1/2)"  # ratio of means
    text = matched.matched_markdown({"a": a, "b": b}, ["imu", "ga_head"], levels=(0.9,))
    row = [line for line in text.splitlines() if line.startswith("| UA ≥ 0.9")][0]
    assert row == "| UA ≥ 0.9 × Retrain | 70.0 (2/2) | 40.0 (1/2) | +100.0% (IMU ≥ in 1/1) |"
    free = [line for line in text.splitlines() if line.startswith("| retain-free")][0]
    assert free == "| retain-free | 70.0 (1/2) | 53.0 (2/2) | +25.0% (IMU ≥ in 1/1) |"
