"""The compact per-run curves (``OUT/curves.jsonl.xz``, :mod:`imu_jax.lab.curves`) and
``imu-jax plot``, which draws their PNGs on demand."""

import json
import lzma
import os

import pytest

from imu_jax.lab import cli, curves, store


def _run(method, seed, points=3, **info):
    curve = [{"step": i, "forget_acc": 1.0 - i / points, "held_out_acc": 0.9752321981424149,
              "forget_loss": 0.1 * i, "held_out_loss": 0.08, "statistic": 1.0 - i / points}
             for i in range(points)]
    return {"method": method, "role": "retain_free", "seed": seed,
            "info": {"stop_reason": "reached", "stopped_at": points - 1, "cap": 50,
                     "removal": "class", "threshold": 0.1, "statistic": "forget_acc",
                     "steps": points - 1, "curve": curve, **info}}


def _close(points, expected):
    """The same checks with the same fields and values to float32 precision."""
    return len(points) == len(expected) and all(
        p.keys() == e.keys() and all(p[k] == pytest.approx(e[k], rel=1e-7) for k in e)
        for p, e in zip(points, expected))


def test_write_curve_two_runs_and_read_them_back(tmp_path):
    first, second = _run("imu", 0), _run("ga", 1, points=5, utility_floor=0.8)
    expected = {curves.curve_name(run): [dict(p) for p in run["info"]["curve"]]
                for run in (first, second)}
    curves.write_curve(tmp_path, first)
    curves.write_curve(tmp_path, second)
    assert "curve" not in first["info"] and first["info"]["steps"] == 2  # the rest stays
    assert first["info"]["curve_file"] == "curves.jsonl.xz#imu_retain_free_seed0"
    assert sorted(os.listdir(tmp_path)) == ["curves.jsonl.xz"]  # one file, no PNG
    found = curves.read_curves(tmp_path)
    assert list(found) == ["imu_retain_free_seed0", "ga_retain_free_seed1"]
    for name, record in found.items():
        assert _close(record["curve"], expected[name])
        assert record["stop_reason"] == "reached" and record["threshold"] == 0.1
        assert "steps" not in record  # only the stopping fields, as the per-run JSON had
    assert found["ga_retain_free_seed1"]["utility_floor"] == 0.8
    assert "utility_floor" not in found["imu_retain_free_seed0"]
    assert curves.read_curve(tmp_path, second["info"]["curve_file"]) == found[
        "ga_retain_free_seed1"]
    lines = lzma.open(tmp_path / "curves.jsonl.xz", "rt").read().splitlines()
    assert [json.loads(line)["name"] for line in lines] == list(found)  # JSON Lines, by name


def test_a_rerun_replaces_its_line(tmp_path):
    curves.write_curve(tmp_path, _run("imu", 0))
    curves.write_curve(tmp_path, _run("ga", 0))
    curves.write_curve(tmp_path, _run("imu", 0, points=7))
    found = curves.read_curves(tmp_path)
    assert list(found) == ["imu_retain_free_seed0", "ga_retain_free_seed0"]
    assert len(found["imu_retain_free_seed0"]["curve"]) == 7


def test_a_run_without_a_curve_writes_nothing(tmp_path):
    run = {"method": "retrain", "role": "eval", "seed": 0, "info": {}}
    curves.write_curve(tmp_path, run)
    assert run["info"] == {} and os.listdir(tmp_path) == []
    assert curves.read_curves(tmp_path) == {}


def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    curves.write_curve(tmp_path, _run("imu", 0))
    before = (tmp_path / "curves.jsonl.xz").read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curves.write_curve(tmp_path, _run("ga", 0))
    monkeypatch.undo()
    assert (tmp_path / "curves.jsonl.xz").read_bytes() == before
    assert list(curves.read_curves(tmp_path)) == ["imu_retain_free_seed0"]
    (tmp_path / "curves.jsonl.xz.tmp").write_bytes(b"\xfd7zXZ half a file")  # a crash's leftover
    curves.write_curve(tmp_path, _run("ga", 0))
    assert list(curves.read_curves(tmp_path)) == ["imu_retain_free_seed0", "ga_retain_free_seed0"]


def test_a_damaged_file_is_one_line_naming_it(tmp_path):
    curves.write_curve(tmp_path, _run("imu", 0))
    path = tmp_path / "curves.jsonl.xz"
    path.write_bytes(path.read_bytes()[:-20])  # truncated by something else than write_curve
    with pytest.raises(ValueError, match="cannot read the curves in .*curves.jsonl.xz.*delete"):
        curves.read_curves(tmp_path)


def test_pack_legacy_moves_the_per_run_files_in(tmp_path):
    folder = tmp_path / "curves"
    folder.mkdir()
    run = _run("imu", 2)
    record = {k: v for k, v in run["info"].items() if k in curves.HEADER_KEYS or k == "curve"}
    (folder / "imu_retain_free_seed2.json").write_text(json.dumps(record, indent=1))
    (folder / "imu_retain_free_seed2.png").write_bytes(b"png")
    assert list(curves.read_curves(tmp_path)) == ["imu_retain_free_seed2"]  # read in place
    assert curves.pack_legacy(tmp_path) == 1
    assert not folder.exists() and sorted(os.listdir(tmp_path)) == ["curves.jsonl.xz"]
    assert _close(curves.read_curves(tmp_path)["imu_retain_free_seed2"]["curve"],
                  record["curve"])
    assert curves.pack_legacy(tmp_path) == 0  # idempotent


def test_split_name():
    assert curves.split_name("imu_batch_eval_seed12") == ("imu_batch", "eval", 12)
    assert curves.split_name("odd") == ("odd", "", None)


# -- imu-jax plot ------------------------------------------------------------------------------

@pytest.fixture
def out(tmp_path):
    """An output folder with two curves and a one-run results.json."""
    folder = tmp_path / "out"
    folder.mkdir()
    runs = [_run("imu", 0), _run("ga", 0)]
    for run in runs:
        curves.write_curve(folder, run)
        run.update(hparams={}, metrics={"fa": 0.1, "ta": 0.9}, avg_gap=0.1)
    store.save_results(folder, {"runs": runs, "config": {"dataset": "digits"}})
    return folder


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_one_run_into_a_folder(out, tmp_path, capsys):
    into = tmp_path / "figures"
    assert cli.main(["plot", str(out), "--run", "imu_retain_free_seed0", "--into",
                     str(into)]) == 0
    assert capsys.readouterr().out.split() == [str(into / "imu_retain_free_seed0.png")]
    assert os.listdir(into) == ["imu_retain_free_seed0.png"] and _png(
        into / "imu_retain_free_seed0.png")


def test_plot_every_run_by_default_into_out_curves(out, capsys):
    assert cli.main(["plot", str(out)]) == 0
    assert sorted(os.listdir(out / "curves")) == ["ga_retain_free_seed0.png",
                                                  "imu_retain_free_seed0.png"]
    assert all(_png(p) for p in (out / "curves").iterdir())


def test_plot_summary_only(out, capsys):
    (out / "tradeoff.png").unlink(missing_ok=True)
    assert cli.main(["plot", str(out), "--summary"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "tradeoff.png")]
    assert _png(out / "tradeoff.png") and not (out / "curves").exists()


@pytest.mark.parametrize("argv,words", [
    (["--run", "nope_retain_free_seed0"], ["no run named 'nope_retain_free_seed0'",
                                           "it has: imu_retain_free_seed0, ga_retain_free_seed0"]),
    ([], ["holds no results", "give the --out folder"]),
    (["--summary"], ["holds no results"]),
])
def test_plot_errors_are_one_line_with_status_2(argv, words, out, tmp_path, capsys):
    target = out if argv and argv[0] == "--run" else tmp_path / "empty"
    target.mkdir(exist_ok=True)
    assert cli.main(["plot", str(target), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("imu-jax plot: error: ")
    assert all(w in err for w in words), err


def test_plot_a_folder_with_results_but_no_curves(out, capsys):
    (out / "curves.jsonl.xz").unlink()
    assert cli.main(["plot", str(out), "--all"]) == 2
    err = capsys.readouterr().err
    assert "has no per-run curves" in err and "--summary" in err
    assert cli.main(["plot", str(out), "--summary"]) == 0
