"""The results tables in README.md and docs/STOPPING.md are generated from committed results
(experiments/doc_tables.py): the documents must match what the files give, and the statistics the
tables print must be the right ones."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "experiments" / "doc_tables.py"


def _module():
    spec = importlib.util.spec_from_file_location("doc_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(method, seed, gap, ua=1.0, ta=0.9, role="retain_free"):
    return {"method": method, "seed": seed, "role": role, "avg_gap": gap, "seconds": 1.0,
            "needs": "forget set only", "hparams": {},
            "metrics": {"ua": ua, "ra": 1.0, "ta": ta, "mia_efficacy": ua}}


def _experiment(imu_gaps, ga_gaps, protocol=2):
    runs = ([_run("imu", s, g) for s, g in enumerate(imu_gaps)]
            + [_run("ga_head", s, g) for s, g in enumerate(ga_gaps)]
            + [_run("original", s, 0.5, ua=0.0, role="eval") for s in range(len(imu_gaps))])
    return {"config": {"protocol": protocol}, "runs": runs}


def test_documents_match_the_committed_results():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_paired_differences_pool_classes_and_seeds():
    tables = _module()
    # two classes × three seeds: GA-head is worse by 0.02, 0.03, 0.04 (class a) and 0.01, 0.02,
    # 0.03 (class b): six pairs, mean 0.025, all positive → "higher".
    a = _experiment([0.01, 0.01, 0.01], [0.03, 0.04, 0.05])
    b = _experiment([0.02, 0.02, 0.02], [0.03, 0.04, 0.05])
    diffs = tables.paired_gaps([a, b], "ga_head (retain-free)")
    assert sorted(round(d, 3) for d in diffs) == [0.01, 0.02, 0.02, 0.03, 0.03, 0.04]
    text = tables.noise_table({"s": [a, b]}, rows=("ga_head (retain-free)",))
    assert "+2.5 [" in text and "**higher** (n=6)" in text


def test_a_difference_inside_the_noise_is_a_tie():
    tables = _module()
    experiment = _experiment([0.01, 0.03, 0.02], [0.03, 0.01, 0.02])
    text = tables.noise_table({"s": [experiment]}, rows=("ga_head (retain-free)",))
    assert "**tie** (n=3)" in text


def test_class_wise_cells_average_seed_means_and_spread_over_classes():
    tables = _module()
    a = _experiment([0.01, 0.03], [0.1, 0.1])  # seed mean 0.02
    b = _experiment([0.04, 0.04], [0.1, 0.1])  # seed mean 0.04
    mean, std, n = tables.row_stats([a, b], "imu (retain-free)", "avg_gap")
    assert (round(mean, 4), round(std, 4), n) == (0.03, 0.0141, 2)
    assert tables.gap_cell([a, b], "imu (retain-free)").startswith("3.0 ± 1.4 (100 / 90)")


def test_results_of_an_earlier_protocol_are_marked():
    tables = _module()
    old = _experiment([0.01], [0.02], protocol=1)
    assert "previous evaluation protocol" in tables.stale_note({"MNIST-1D": [old]})
    assert tables.stale_note({"MNIST-1D": [_experiment([0.01], [0.02])]}) == ""


def test_render_replaces_only_its_block():
    tables = _module()
    text = "a\n<!-- table:x -->\nold\n<!-- /table:x -->\nb\n"
    assert tables.render(text, "x", "| new |") == "a\n<!-- table:x -->\n| new |\n<!-- /table:x -->\nb\n"
    with pytest.raises(SystemExit, match="table:y"):
        tables.render(text, "y", "t")


def test_the_baselines_table_reports_ssd_share_of_the_parameters_it_recorded():
    tables = _module()
    experiment = _experiment([0.01], [0.02])
    ssd = _run("ssd", 0, 0.4)
    ssd["info"] = {"dampened_parameters": 2_860, "parameters": 286_000}
    scar = {**_run("scar", 0, 0.3, role="eval"), "info": {"steps": 300}}
    experiment["runs"] += [ssd, scar]
    text = tables.baselines_table({"superclass": [experiment]})
    assert "| superclass | 300 | 2,860 (1.00 %) | none |" in text
    # a run from before SSD recorded its parameter count: CIFAR-10's fastcnn
    ssd["info"] = {"dampened_parameters": 7_529}
    assert "7,529 (10.00 %)" in tables.baselines_table({"class 0": [experiment]})


def test_cifar_columns_join_the_fixed_length_folders_and_name_their_rows(tmp_path, monkeypatch):
    tables = _module()
    folders = {"main": _experiment([0.01, 0.02], [0.03, 0.04]),
               "fixed": {"config": {"protocol": 2},  # only the fixed-length methods join
                         "runs": [_run("salun", s, 0.05, role="eval") for s in (0, 1)]
                         + [_run("imu", 0, 0.9)]},
               "old": {"config": {"protocol": 1}, "runs": [_run("scrub", 0, 0.2, role="eval")]}}
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text("{}")
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    monkeypatch.setattr(tables, "load", lambda name: folders[name])
    columns = tables.cifar_columns({"s": ("main", "fixed", "old", "missing")})
    runs = columns["s"][0]["runs"]
    assert sum(r["method"] == "salun" for r in runs) == 2
    assert not any(r["method"] == "scrub" for r in runs)  # an earlier protocol's folder
    assert sum(r["method"] == "imu" for r in runs) == 2  # the main folder's two seeds
    text = tables.gap_table(columns, tables.CIFAR_ROWS, tables.CIFAR_NAMES)
    assert "| salun (fixed length) | forget set only | 5.0 ± 0.0 (100 / 90) |" in text
    noise = tables.noise_table(columns, tables.CIFAR_NOISE_ROWS, tables.CIFAR_NAMES)
    assert "| salun (fixed length) | +3.5 [" in noise
    assert "scrub" not in noise and "npo_rt" not in noise  # rows no setting has are left out
