"""experiments/plot_forget_size.py: Avg. Gap against forget fraction, from run folders."""

import importlib.util
import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("plot_fs", REPO / "experiments/plot_forget_size.py")
plot_fs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_fs)


def _run(method, role, gap, seed=0):
    return {"method": method, "role": role, "seed": seed, "hparams": {}, "avg_gap": gap,
            "metrics": {"ua": 0.1, "ta": 0.6, "ra": 1.0, "mia_efficacy": 0.1},
            **({"selection": "oracle-tuned"} if role == "eval" and method == "imu" else {})}


def test_table_and_plot_from_folders(tmp_path):
    for fraction, gap in (("0.01", 0.05), ("0.1", 0.2)):
        runs = [_run("original", "eval", gap), _run("retrain", "eval", 0.0),
                _run("retrain_floor", "eval", 0.01), _run("imu", "retain_free", gap / 2)]
        if fraction == "0.1":  # an oracle row at one fraction only: no oracle panel
            runs.append(_run("imu", "eval", 0.01))
        (tmp_path / f"random{fraction}").mkdir()
        (tmp_path / f"random{fraction}" / "results.json").write_text(json.dumps({"runs": runs}))
    found = plot_fs.load(tmp_path)
    assert list(found) == [0.01, 0.1]
    table = plot_fs.markdown(found)
    assert "| imu (retain-free) | 2.5 | 10.0 |" in table  # one seed: no spread shown
    assert "| original | 5.0 | 20.0 |" in table and "| imu (oracle-tuned) | – | 1.0 |" in table
    assert "| retrain vs retrain (noise floor) | 1.0 | 1.0 |" in table  # the floor stays
    assert "| retrain |" not in table  # Retrain itself (gap 0) does not
    plot_fs.plot(found, tmp_path / "forget_size.png")
    assert (tmp_path / "forget_size.png").stat().st_size > 10_000
