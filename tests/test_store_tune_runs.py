"""The tuning sweep stored apart from ``results.json`` (``tune_runs.jsonl.xz``, lzma JSON Lines):
save / load round trip, results written before the split, resume, overwrite, concurrent writers,
``experiments/compact_results.py`` and ``experiments/drop_runs.py`` (imu_jax.lab.store)."""

import collections
import dataclasses
import importlib.util
import json
import lzma
import pathlib
import types

import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import methods as methods_lib
from imu_jax.lab import figures, models_cache, report, runner, store

REPO = pathlib.Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(method, role, seed=0, **hparams):
    return {"method": method, "seed": seed, "role": role, "hparams": hparams,
            "metrics": {"ua": 0.1 * seed, "ta": 0.9, "fa": 0.9, "ra": 1.0},
            "avg_gap": 0.01 * (seed + len(hparams)), "seconds": 1.5}


def _tune_heavy():
    """A results dict as the runner orders it: originals, then per method its sweep, its
    retain-free and its oracle-tuned rows."""
    runs = [_run("original", "eval", s) for s in (0, 1)]
    for method in ("ga", "imu"):
        runs += [_run(method, "tune", s, learning_rate=lr, max_steps=k)
                 for lr in (1e-3, 1e-2, 1e-1) for k in (1, 2, 4, 8) for s in (100, 101)]
        runs += [_run(method, "retain_free", s) for s in (0, 1)]
        runs += [_run(method, "eval", s, learning_rate=1e-2, max_steps=4) for s in (0, 1)]
    return {"runs": runs, "config": {"forget": "class:3", "seeds": [0, 1]}}


def _multiset(runs):
    return collections.Counter(json.dumps(r, sort_keys=True) for r in runs)


def _old_format(out, results):
    """``results.json`` as imu-jax wrote it before the split: every run inline."""
    (out / store.RESULTS_JSON).write_text(store.results_text(results))


def test_tune_heavy_results_round_trip(tmp_path):
    results = _tune_heavy()
    assert store.save_results(tmp_path, results) == [store.TUNE_RUNS, store.RESULTS_JSON]
    inline = json.loads((tmp_path / store.RESULTS_JSON).read_text())
    assert inline["config"] == results["config"]
    assert inline["runs"] and not [r for r in inline["runs"] if r["role"] == "tune"]
    lines = lzma.decompress((tmp_path / store.TUNE_RUNS).read_bytes()).decode().splitlines()
    tuned = [r for r in results["runs"] if r["role"] == "tune"]
    assert [json.loads(line) for line in lines] == tuned  # one run per line, in order
    loaded = store.load_results(tmp_path)
    assert _multiset(loaded["runs"]) == _multiset(results["runs"])
    # results.json's runs first, then the sweep, each in the order saved (selection's ties)
    assert loaded["runs"] == [r for r in results["runs"] if r["role"] != "tune"] + tuned
    for method in ("ga", "imu"):
        assert (runner.select_hparams(loaded["runs"], method)
                == runner.select_hparams(results["runs"], method))
    assert report.results_markdown(loaded) == report.results_markdown(results)
    assert store.save_results(tmp_path, loaded) == []  # nothing changed: nothing written
    sweep_bytes = len(store.results_text({"runs": tuned}))
    assert (tmp_path / store.TUNE_RUNS).stat().st_size < sweep_bytes / 5


def test_results_without_tuning_runs_have_no_sibling(tmp_path):
    results = {"runs": [_run("original", "eval"), _run("imu", "retain_free")]}
    assert store.save_results(tmp_path, results) == [store.RESULTS_JSON]
    assert not (tmp_path / store.TUNE_RUNS).exists()
    assert store.load_results(tmp_path)["runs"] == results["runs"]


def test_results_written_before_the_split_load_unchanged(tmp_path):
    results = _tune_heavy()
    _old_format(tmp_path, results)
    assert store.load_results(tmp_path) == json.loads(store.results_text(results))
    # a sibling beside a results.json that holds its sweep inline was left by another run (an
    # older imu-jax rewrote results.json without knowing it): it is not read
    store.save_results(tmp_path, {"runs": [_run("ga", "tune", 7, learning_rate=9.0)]})
    _old_format(tmp_path, results)
    assert _multiset(store.load_results(tmp_path)["runs"]) == _multiset(results["runs"])
    # the next save stores them apart
    store.save_results(tmp_path, store.load_results(tmp_path))
    assert _multiset(store.load_results(tmp_path)["runs"]) == _multiset(results["runs"])
    assert '"role":"tune"' not in (tmp_path / store.RESULTS_JSON).read_text()


def test_a_damaged_sibling_is_a_one_line_error_naming_it(tmp_path):
    store.save_results(tmp_path, _tune_heavy())
    data = (tmp_path / store.TUNE_RUNS).read_bytes()
    (tmp_path / store.TUNE_RUNS).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=r"tune_runs\.jsonl\.xz: not an xz file.*delete it"):
        store.load_results(tmp_path)
    (tmp_path / store.TUNE_RUNS).write_bytes(lzma.compress(json.dumps(_run("a", "eval")).encode()))
    with pytest.raises(ValueError, match="holds runs whose role is not 'tune'"):
        store.load_results(tmp_path)


def test_compact_results_converts_old_folders_idempotently(tmp_path, capsys):
    compact = _script("compact_results")
    folder = tmp_path / "setting" / "class3"
    folder.mkdir(parents=True)
    results = _tune_heavy()
    _old_format(folder, results)
    before = _multiset(store.load_results(folder)["runs"])
    size = (folder / store.RESULTS_JSON).stat().st_size
    compact.main(str(tmp_path))
    assert "tune_runs.jsonl.xz rewritten, results.json rewritten" in capsys.readouterr().out
    assert _multiset(store.load_results(folder)["runs"]) == before
    assert store.load_results(folder)["config"] == results["config"]
    stored = sum((folder / n).stat().st_size for n in (store.RESULTS_JSON, store.TUNE_RUNS))
    assert stored < size / 2
    files = {p: p.read_bytes() for p in folder.iterdir()}
    assert compact.compact_folder(folder)["rewritten"] == []  # again: nothing changes
    assert {p: p.read_bytes() for p in folder.iterdir()} == files


def test_drop_runs_rewrites_both_files(tmp_path):
    drop = _script("drop_runs")
    results = _tune_heavy()
    store.save_results(tmp_path, results)
    assert drop.drop_runs(tmp_path, "retain_free") == 4
    kept = store.load_results(tmp_path)["runs"]
    assert {r["role"] for r in kept} == {"eval", "tune"} and len(kept) == len(results["runs"]) - 4
    assert drop.drop_runs(tmp_path, "tune") == 48
    assert not (tmp_path / store.TUNE_RUNS).exists()
    assert {r["role"] for r in store.load_results(tmp_path)["runs"]} == {"eval"}
    backup = tmp_path / (store.TUNE_RUNS + ".bak")  # the sweep as it was before the drop
    assert len(lzma.decompress(backup.read_bytes()).splitlines()) == 48


def test_overwrite_drops_the_old_sibling(tmp_path):
    store.save_results(tmp_path, _tune_heavy())
    writer = store.SharedResults(tmp_path, {"config": {}, "runs": []}, resume=False,
                                 overwrite=True)
    writer.add(_run("original", "eval"))
    writer.close()
    assert not (tmp_path / store.TUNE_RUNS).exists()
    assert store.load_results(tmp_path)["runs"] == [_run("original", "eval")]
    # an unreadable sibling is replaced too, not an error
    store.save_results(tmp_path, _tune_heavy())
    (tmp_path / store.TUNE_RUNS).write_bytes(b"not xz")
    with pytest.raises(ValueError, match="tune_runs"):
        store.SharedResults(tmp_path, {"config": {}, "runs": []}, resume=False)
    writer = store.SharedResults(tmp_path, {"config": {}, "runs": []}, resume=False,
                                 overwrite=True)
    writer.add(_run("imu", "tune", 5, learning_rate=0.1))
    writer.close()
    assert store.load_results(tmp_path)["runs"] == [_run("imu", "tune", 5, learning_rate=0.1)]


def test_a_folder_with_only_a_sweep_is_not_fresh(tmp_path):
    """A crash between the two writes of the first save leaves the sweep alone: its runs are
    finished ones, which a fresh start must not drop silently."""
    store.save_results(tmp_path, {"runs": [_run("imu", "tune", 5)]})
    (tmp_path / store.RESULTS_JSON).unlink()
    with pytest.raises(ValueError, match="already holds 1 finished run"):
        store.check_fresh(tmp_path)
    assert store.load_results(tmp_path)["runs"] == [_run("imu", "tune", 5)]


def test_concurrent_writers_keep_each_others_tuning_runs(tmp_path):
    config = {"config": {"forget": "class:3"}, "runs": []}
    a = store.SharedResults(tmp_path, json.loads(json.dumps(config)), resume=False)
    b = store.SharedResults(tmp_path, json.loads(json.dumps(config)), resume=False)
    a.add(_run("imu", "tune", 100, learning_rate=0.1))
    b.add(_run("imu", "tune", 101, learning_rate=0.1))
    a.add(_run("imu", "eval", 0))
    a.close(), b.close()
    runs = store.load_results(tmp_path)["runs"]
    assert sorted((r["role"], r["seed"]) for r in runs) == [("eval", 0), ("tune", 100),
                                                             ("tune", 101)]


def test_plot_summary_draws_the_sweep_from_the_sibling(tmp_path, monkeypatch):
    results = _tune_heavy()
    store.save_results(tmp_path, results)
    seen = []
    monkeypatch.setattr(report, "tradeoff_plot", lambda r, path: seen.append(r))
    figures.draw(tmp_path, runs=[], summary=True)
    assert _multiset(seen[0]["runs"]) == _multiset(results["runs"])


# -- resume of a real (tiny) experiment --------------------------------------------------------

class _Linear:
    def apply(self, params, state, x, *, train=False):
        return x @ params["head"]["kernel"] + params["head"]["bias"], state

    def features(self, params, state, x):
        return x


def _splits():
    rng = np.random.default_rng(0)

    def split(n, classes):
        y = rng.choice(classes, n)
        return {"image": (3 * np.eye(3)[y] + rng.normal(size=(n, 3))).astype(np.float32),
                "label": y.astype(np.int32)}

    return types.SimpleNamespace(forget=split(20, [2]), retain=split(60, [0, 1]),
                                 test=split(60, [0, 1]), train=None, num_classes=3)


def _trainer(retrain, seed):
    noise = 0.05 * np.random.default_rng(seed).normal(size=(3, 3))
    head = {"kernel": jnp.asarray(np.eye(3) * (1 - np.eye(3)[2] * retrain) + noise, jnp.float32),
            "bias": jnp.zeros(3)}
    return models_cache.TrainedModel(_Linear(), {"head": head}, {}, seconds=0.0)


def test_resume_counts_the_runs_of_the_sibling_as_done(tmp_path, monkeypatch):
    args = dict(splits=_splits(), trainer=_trainer, methods=["retrain", "imu"], seeds=[0],
                tune_seeds=[7], grids={"imu": {"learning_rate": (0.01, 0.1), "max_steps": (1,)}},
                out=tmp_path, progress=False, retain_free=False)
    first = runner.run_experiment(**args)
    tuned = [r for r in first["runs"] if r["role"] == "tune"]
    assert len(tuned) == 2 and (tmp_path / store.TUNE_RUNS).exists()
    assert '"role":"tune"' not in (tmp_path / store.RESULTS_JSON).read_text()
    real = methods_lib.METHODS["imu"]

    def must_not_run(*a, **k):
        raise AssertionError("a finished run ran again")

    monkeypatch.setitem(methods_lib.METHODS, "imu", dataclasses.replace(real, run=must_not_run))
    again = runner.run_experiment(**args, resume=True)
    assert _multiset(again["runs"]) == _multiset(store.load_results(tmp_path)["runs"])
    assert _multiset(r for r in again["runs"] if r["role"] == "tune") == _multiset(tuned)


def test_the_interrupt_line_counts_the_sweep(tmp_path):
    from imu_jax.lab import cli

    results = _tune_heavy()
    store.save_results(tmp_path, results)
    message = cli.run_interrupted(types.SimpleNamespace(out=str(tmp_path)))
    assert f"{len(results['runs'])} finished run(s)" in message
