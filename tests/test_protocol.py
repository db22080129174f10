"""Issue 26, items 1–3: numbers a reviewer would accept.

1. Three disjoint roles for held-out data: the stopping rule and the oracle tuning read a
   validation split carved (seeded, stratified) from the test split; TA and the membership
   attack are measured on the rest, which neither saw.
2. A noise floor in every table (Retrain vs Retrain), sample standard deviations, and paired
   t-intervals with "tie" in the report.
3. One tuning grid in optimizer steps × one learning-rate set for every method.
"""

import collections
import dataclasses
import json
import math
import types

import jax.numpy as jnp
import numpy as np
import pytest

from imu_jax import methods as methods_lib
from imu_jax.data import VALIDATION_FRACTION, carve_validation, make_splits
from imu_jax.data.validation import stratified_holdout
from imu_jax.lab import evaluation, models_cache, protocol, report, runner, selection
from imu_jax.methods import grids
from imu_jax.unlearning.stopping import UTILITY_LABEL


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


# --- 1. the validation split: seeded, stratified, disjoint ------------------------------------

def _ided_splits(seed=0, n_test=60):
    """Linear-model splits whose every row carries a unique ``id`` (0.. train, 10_000.. test)."""
    rng = np.random.default_rng(seed)

    def split(n, classes, start):
        y = rng.choice(classes, n)
        return {"image": (3 * np.eye(3)[y] + rng.normal(size=(n, 3))).astype(np.float32),
                "label": y.astype(np.int32), "id": np.arange(start, start + n)}

    return types.SimpleNamespace(forget=split(20, [2], 0), retain=split(60, [0, 1], 100),
                                 test=split(n_test, [0, 1], 10_000), train=None, num_classes=3,
                                 info={"counts": {"test": n_test}})


def test_carve_is_stratified_seeded_and_disjoint():
    splits = _ided_splits()
    a = carve_validation(splits, 0.5, seed=3)
    ids_val, ids_test = set(a.validation["id"]), set(a.test["id"])
    assert not ids_val & ids_test  # disjoint
    assert ids_val | ids_test == set(splits.test["id"])  # together: the released test split
    assert len(ids_val) == 30 and len(ids_test) == 30
    for k in (0, 1):  # stratified: each class splits in half (±1)
        n_k = int(np.sum(splits.test["label"] == k))
        v_k = int(np.sum(a.validation["label"] == k))
        assert abs(v_k - (n_k - v_k)) <= 1
    b = carve_validation(splits, 0.5, seed=3)  # same seed -> the same split
    assert np.array_equal(a.validation["id"], b.validation["id"])
    c = carve_validation(splits, 0.5, seed=4)  # another seed -> another draw
    assert not np.array_equal(np.sort(a.validation["id"]), np.sort(c.validation["id"]))
    # recorded: the sizes and how the carve was made; the input is left as it was
    assert a.info["counts"]["validation"] == 30 and a.info["counts"]["test"] == 30
    assert a.info["validation"]["fraction"] == 0.5 and a.info["validation"]["seed"] == 3
    assert a.info["validation"]["stratified_by"] == "label"
    assert len(splits.test["id"]) == 60 and splits.info["counts"]["test"] == 60
    with pytest.raises(ValueError, match="already have a validation"):
        carve_validation(a)


def test_stratified_holdout_rounds_and_keeps_each_class_on_both_sides():
    strata = np.repeat(np.arange(5), [1, 2, 3, 7, 10])
    for seed in range(5):
        mask = stratified_holdout(strata, 0.5, seed)
        assert mask.sum() == round(0.5 * len(strata))
        for k in (1, 2, 3, 4):  # every class of >= 2 rows is on both sides
            assert 0 < mask[strata == k].sum() < (strata == k).sum()
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout(strata, 1.0, 0)


def test_make_splits_carves_half_of_the_test_split_stratified(data_dir):
    released = make_splits("digits", "class:3", data_dir=data_dir)
    a = make_splits("digits", "class:3", data_dir=data_dir, validation=VALIDATION_FRACTION)
    b = make_splits("digits", "class:3", data_dir=data_dir, validation=VALIDATION_FRACTION)
    assert VALIDATION_FRACTION == 0.5
    assert np.array_equal(a.validation["image"], b.validation["image"])  # seeded
    for name, val in (("test", "validation"), ("forget_test", "forget_validation")):
        whole = getattr(released, name)
        part_v, part_t = getattr(a, val), getattr(a, name)
        assert len(part_v["label"]) + len(part_t["label"]) == len(whole["label"])
        # the two parts are the released split's rows (as a multiset), nothing else
        rows = lambda arrays: sorted(map(bytes, np.concatenate(
            [arrays["image"].reshape(len(arrays["label"]), -1),
             arrays["label"][:, None].astype(np.float32)], axis=1)))
        joined = {k: np.concatenate([part_v[k], part_t[k]]) for k in ("image", "label")}
        assert rows(joined) == rows(whole)
        for k in np.unique(whole["label"]):  # stratified by label
            assert abs(np.sum(part_v["label"] == k) - np.sum(part_t["label"] == k)) <= 1
    # the forget set and the training data are untouched
    assert np.array_equal(a.forget["image"], released.forget["image"])
    assert np.array_equal(a.retain["label"], released.retain["label"])
    assert a.info["counts"]["validation"] + a.info["counts"]["test"] == \
        released.info["counts"]["test"]
    # random: forget sets draw from the split seed; the carve has its own stream: same forget set
    r0 = make_splits("digits", "random:0.1", data_dir=data_dir)
    r1 = make_splits("digits", "random:0.1", data_dir=data_dir, validation=0.5)
    assert np.array_equal(r0.forget["image"], r1.forget["image"])


def _coarse_folder(root):
    """6 fine classes (ant bee cat dog elm fig) in 3 superclasses, 3 train and 2 test 4x4 PNGs
    per class, each image one colour naming its class, split and index."""
    from PIL import Image

    from imu_jax.data import image_folder

    coarse = {"ant": "zoo", "bee": "air", "cat": "zoo", "dog": "land", "elm": "air",
              "fig": "land"}
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(sorted(coarse)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = (30 * c + 5, 40 * i + (120 if split == "test" else 0), 9)
                Image.new("RGB", (4, 4), colour).save(root / split / name / f"{i}.png")
    (root / image_folder.COARSE_FILE).write_text(json.dumps(coarse))
    return root


def test_coarse_specs_stratify_by_fine_label(tmp_path):
    root = _coarse_folder(tmp_path / "tiny")  # 2 test images per fine class, unique colours
    for spec in ("superclass:zoo", "subclass:ant"):
        s = make_splits(f"imagefolder:{root}", spec, data_dir=tmp_path / "tfds", validation=0.5)
        assert s.info["validation"]["stratified_by"] == "fine label"
        # every fine class of the held-out splits has one image on each side: the images of a
        # fine class differ only in their index, so the two sides hold different images
        for name, val in (("test", "validation"), ("forget_test", "forget_validation")):
            v, t = getattr(s, val), getattr(s, name)
            assert len(v["label"]) == len(t["label"]) > 0
            assert not {bytes(x) for x in v["image"]} & {bytes(x) for x in t["image"]}
        held, removal = evaluation.held_out_for(s, spec)
        # subclass: the rule reads the siblings (same coarse label as the forget set), never the
        # forgotten subclass's own validation images, which Retrain misclassifies too
        assert held is s.validation
        assert removal == ("subclass" if spec.startswith("subclass") else "class")
        if spec.startswith("subclass"):
            assert set(np.unique(held["label"])) == set(np.unique(s.forget["label"]))


@pytest.mark.parametrize("spec, removal", [("class:3", "class"), ("random:0.1", "sample"),
                                           ("mislabeled:0.1", "sample")])
def test_the_stopping_rule_reads_the_validation_split(data_dir, spec, removal):
    s = make_splits("digits", spec, data_dir=data_dir, validation=0.5)
    held, kind = evaluation.held_out_for(s, spec)
    assert kind == removal
    if spec.startswith("mislabeled"):  # relabelled validation data; true labels ride along
        assert np.array_equal(held["image"], s.validation["image"])
        assert np.array_equal(held[UTILITY_LABEL], s.validation["label"])
        assert not np.any(held["label"] == s.validation["label"])
    else:
        assert held is s.validation and held is not s.test
    if spec == "class:3":  # as before, the held-out data holds only the remaining classes
        assert 3 not in held["label"]


def test_held_out_for_refuses_splits_without_a_validation_split(data_dir):
    s = make_splits("digits", "class:3", data_dir=data_dir)
    with pytest.raises(ValueError, match="no validation split"):
        evaluation.held_out_for(s, "class:3")


class _Linear:
    def apply(self, params, state, x, *, train=False):
        return x @ params["head"]["kernel"] + params["head"]["bias"], state

    def features(self, params, state, x):
        return x


def _trainer(retrain, seed):
    noise = 0.05 * np.random.default_rng(seed).normal(size=(3, 3))
    head = {"kernel": jnp.asarray(np.eye(3) * (1 - np.eye(3)[2] * retrain) + noise, jnp.float32),
            "bias": jnp.zeros(3)}
    return models_cache.TrainedModel(_Linear(), {"head": head}, {}, seconds=0.0)


def test_rule_and_selection_never_see_the_examples_ta_and_mia_are_measured_on(monkeypatch,
                                                                               tmp_path):
    """Every example id read by the stopping rule (task.held_out) or by the tuning's scoring
    (the Avg. Gap that selects the hyperparameters) is disjoint from the ids on which TA and the
    membership attack's non-members of the reported runs are measured."""
    splits = _ided_splits()
    role = {"now": None}
    seen = collections.defaultdict(set)
    scored = collections.defaultdict(set)

    real_run = runner._Runner.run

    def run(self, method, seed, r, hparams):
        role["now"] = r
        return real_run(self, method, seed, r, hparams)

    real_evaluate = runner.evaluate

    def evaluate(outputs, split_view, reference=None):
        # classification_metrics measures TA on split_view.test and draws the membership
        # attack's non-members from it: these are the ids each role is scored on
        scored[role["now"]] |= set(split_view.test["id"].tolist())
        assert len(outputs["test"]) == len(split_view.test["id"])
        return real_evaluate(outputs, split_view, reference)

    def spy_run(task, hparams, seed):
        if task.held_out is not None:
            seen["rule"] |= set(task.held_out["id"].tolist())
        return methods_lib.MethodOutput(params=task.params, state=task.state, seconds=0.0,
                                        info={})

    spy = methods_lib.Method(name="spy", needs=methods_lib.base.FORGET_ONLY, summary="spy",
                             run=spy_run, defaults={"learning_rate": 0.01, "epochs": 1,
                                                    "max_steps": None},
                             grid=grids.STEP_GRID)
    real_get = runner._get_method
    monkeypatch.setattr(runner, "_get_method",
                        lambda name: spy if name == "spy" else real_get(name))
    monkeypatch.setattr(runner._Runner, "run", run)
    monkeypatch.setattr(runner, "evaluate", evaluate)
    results = runner.run_experiment(
        splits=splits, trainer=_trainer, methods=["retrain", "spy", "imu"], seeds=[0, 1],
        tune_seeds=[7], grids={"imu": {"learning_rate": (0.01,), "max_steps": (1, 2)}},
        out=tmp_path, progress=False)
    test_ids = set(splits.test["id"].tolist())
    reported = scored["eval"] | scored["retain_free"]
    assert seen["rule"] and scored["tune"] and reported
    assert not seen["rule"] & reported          # the stopping rule never saw the test ids
    assert not scored["tune"] & reported        # nor did the selection's Avg. Gap
    assert seen["rule"] <= test_ids and scored["tune"] <= test_ids  # carved from the test split
    assert seen["rule"] == scored["tune"]       # both: the validation split
    config = results["config"]
    assert config["held_out"]["validation"] == len(seen["rule"]) == 30
    assert config["held_out"]["test"] == len(reported) == 30
    runs = results["runs"]
    assert {r["scored_on"] for r in runs if r["role"] == "tune"} == {"validation"}
    assert {r["scored_on"] for r in runs if r["role"] != "tune"} == {"test"}
    # the selected configuration is the tuning runs' best, and it is what the eval rows ran
    best = selection.select_hparams(runs, "imu")
    assert all(r["hparams"] == best for r in runs if r["method"] == "imu" and r["role"] == "eval")


def test_the_lab_refuses_the_test_split_as_held_out_data(tmp_path):
    splits = carve_validation(_ided_splits())
    with pytest.raises(ValueError, match="held_out is the test split"):
        runner.run_experiment(splits=splits, trainer=_trainer, methods=["imu"], seeds=[0],
                              out=tmp_path, progress=False, held_out=(splits.test, "class"))


def test_resume_refuses_results_scored_under_the_old_protocol(tmp_path):
    old = {"config": {"forget": "class:2"}, "runs": [{"method": "original", "seed": 0,
                                                      "role": "eval", "hparams": {},
                                                      "metrics": {}, "avg_gap": 0.5}]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="earlier evaluation protocol"):
        runner.run_experiment(splits=_ided_splits(), trainer=_trainer, methods=["retrain"],
                              seeds=[0], out=tmp_path, progress=False, resume=True)
    new = tmp_path / "new"  # written under this protocol: resumable with the same splits only
    runner.run_experiment(splits=_ided_splits(), trainer=_trainer, methods=["retrain"],
                          seeds=[0], out=new, progress=False)
    runner.run_experiment(splits=_ided_splits(), trainer=_trainer, methods=["retrain"],
                          seeds=[0], out=new, progress=False, resume=True)
    with pytest.raises(ValueError, match="held-out splits of other sizes"):
        runner.run_experiment(splits=_ided_splits(n_test=80), trainer=_trainer,
                              methods=["retrain"], seeds=[0], out=new, progress=False,
                              resume=True)


# --- 2. noise floor, sample std, paired t-intervals --------------------------------------------

def test_every_table_has_the_noise_floor_by_default(tmp_path):
    results = runner.run_experiment(splits=_ided_splits(), trainer=_trainer,
                                    methods=["retrain", "imu"], seeds=[0, 1], out=tmp_path,
                                    progress=False)
    floor = [r for r in results["runs"] if r["method"] == "retrain_floor"]
    assert {r["seed"] for r in floor} == {0, 1}
    assert all(r["info"]["retrain_seed"] == r["seed"] + protocol.FLOOR_SEED_OFFSET for r in floor)
    markdown = (tmp_path / "results.md").read_text()
    assert "| retrain vs retrain (noise floor) | retain set (another seed) |" in markdown
    assert results["config"]["noise_floor"] is True
    off = runner.run_experiment(splits=_ided_splits(), trainer=_trainer, methods=["imu"],
                                seeds=[0], out=tmp_path / "off", progress=False,
                                noise_floor=False)
    assert "retrain_floor" not in {r["method"] for r in off["runs"]}


def test_next_seed_floor_pairs_the_seeds_own_retrain_models_and_trains_no_other(tmp_path):
    trained = []

    def trainer(retrain, seed):
        trained.append((retrain, seed))
        return _trainer(retrain, seed)

    results = runner.run_experiment(splits=_ided_splits(), trainer=trainer,
                                    methods=["retrain"], seeds=[0, 1, 2], out=tmp_path,
                                    progress=False, noise_floor="next_seed")
    assert {seed for _, seed in trained} == {0, 1, 2}  # no seed + 1000 model
    floor = {r["seed"]: r for r in results["runs"] if r["method"] == "retrain_floor"}
    assert {s: r["info"]["retrain_seed"] for s, r in floor.items()} == {0: 1, 1: 2, 2: 0}
    retrain = {r["seed"]: r for r in results["runs"] if r["method"] == "retrain"}
    assert retrain[0]["avg_gap"] == 0.0 and floor[0]["avg_gap"] > 0.0  # two different models
    assert results["config"]["noise_floor"] == "next_seed"
    assert "the Retrain model of the experiment's next seed" in (tmp_path / "results.md").read_text()
    for bad, match in (("sometimes", "must be one of"), ("next_seed", "two seeds or more")):
        with pytest.raises(ValueError, match=match):  # before any model is trained
            runner.run_experiment(splits=_ided_splits(), trainer=None, methods=["retrain"],
                                  seeds=[0], out=tmp_path / bad, progress=False,
                                  noise_floor=bad)


def test_summaries_use_the_sample_standard_deviation():
    runs = [{"method": "imu", "seed": s, "role": "eval", "metrics": {"ua": u}, "avg_gap": g,
             "seconds": 1.0} for s, u, g in ((0, 0.8, 0.1), (1, 1.0, 0.2), (2, 0.9, 0.6))]
    stats = report.summarize(runs)["imu"]
    assert stats["ua"][1] == pytest.approx(np.std([0.8, 1.0, 0.9], ddof=1))
    assert stats["avg_gap"][1] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert report.summarize(runs[:1])["imu"]["ua"] == (0.8, 0.0, 1)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 31)) + [31, 40, 60, 120, 1000]:
        assert report.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4), df


def test_paired_difference_interval_and_tie():
    def run(method, seed, gap, role="retain_free"):
        return {"method": method, "seed": seed, "role": role, "metrics": {}, "avg_gap": gap}

    imu = [run("imu", s, g) for s, g in enumerate((0.02, 0.03, 0.025, 0.04))]
    close = [run("ga", s, g) for s, g in enumerate((0.03, 0.02, 0.035, 0.04))]
    far = [run("npo", s, g) for s, g in enumerate((0.10, 0.12, 0.11, 0.13))]
    d = report.paired_difference(imu + close, "ga (retain-free)", "imu (retain-free)")
    diffs = np.array([0.01, -0.01, 0.01, 0.0])
    half = 3.1824 * np.std(diffs, ddof=1) / math.sqrt(4)  # t_{0.975, 3}
    assert d["mean"] == pytest.approx(diffs.mean())
    assert (d["low"], d["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert d["verdict"] == "tie" and d["n"] == 4
    assert report.paired_difference(imu + far, "npo (retain-free)",
                                    "imu (retain-free)")["verdict"] == "higher"
    # diverged runs are left out: only the seeds both rows scored are paired
    diverged = dict(far[0], diverged=True)
    assert report.paired_difference(imu + [diverged] + far[1:], "npo (retain-free)",
                                    "imu (retain-free)")["seeds"] == [1, 2, 3]
    one = report.paired_difference(imu[:1] + far[:1], "npo (retain-free)", "imu (retain-free)")
    assert one["verdict"] == "n=1" and one["low"] is None
    table = report.comparison_table({"runs": imu + close + far})
    assert "| ga (retain-free) | imu (retain-free) |" in table and "| tie |" in table
    assert "| npo (retain-free) | imu (retain-free) |" in table and "| higher |" in table


# --- 3. one grid for every method --------------------------------------------------------------

def test_every_gradient_method_shares_one_grid_in_steps():
    tuned = [n for n in methods_lib.available() if methods_lib.get_method(n).grid]
    for name in tuned:
        method = methods_lib.get_method(name)
        if name == "ssd":  # no gradient step: its own α × λ grid
            assert method.grid is grids.SSD_GRID
            continue
        assert method.grid is grids.STEP_GRID, name
        assert set(method.grid) == {"learning_rate", "max_steps"} <= set(method.defaults), name
    assert grids.STEP_GRID["learning_rate"] == grids.LEARNING_RATES
    assert grids.step_counts(50) == (1, 2, 4, 8, 16, 32, 50)
    assert grids.step_counts(64) == (1, 2, 4, 8, 16, 32, 64)
    assert grids.retain_free_cap(146) == 50 and grids.retain_free_cap(5000) == 1000


def test_tuning_runs_take_exactly_the_grid_steps():
    """The lab sets ``epochs`` so that ``max_steps`` ends every tuning run: GA (forget set),
    ℓ1-sparse (retain set) and IMU (its kept subset) each take exactly the grid's step count."""
    import tiny_models

    model, params, state, data = tiny_models.trained_classifier(0, 40)
    sizes = {"forget": len(data["forget"]["label"]), "retain": len(data["retain"]["label"])}
    task = methods_lib.UnlearnTask(model=model, params=params, state=state,
                                   forget=data["forget"], retain=data["retain"],
                                   train=data["train"], num_classes=4)
    cap = grids.retain_free_cap(sizes["forget"], batch_size=8)
    grid = selection.resolve_grid({"learning_rate": (0.01,),
                                   "max_steps": grids.StepCounts((1, 2))}, cap)
    assert grid["max_steps"] == grids.step_counts(cap)
    for name in ("ga", "l1_sparse", "imu"):
        method = methods_lib.get_method(name)
        jobs = selection.plan_jobs(method, [0], overrides={"batch_size": 8},
                                   grid={"learning_rate": (0.01,), "max_steps": (3, 7)},
                                   sizes=sizes)
        for _, hparams in jobs:
            steps = method.run(task, dict(hparams), 0).info["steps"]
            assert steps == hparams["max_steps"], (name, hparams["epochs"], steps)


def test_results_md_states_the_splits_the_grid_and_the_rule(tmp_path):
    results = runner.run_experiment(
        splits=_ided_splits(), trainer=_trainer, methods=["retrain", "ga", "imu"], seeds=[0, 1],
        tune_seeds=[7], out=tmp_path, progress=False,
        grids={"ga": {"learning_rate": (0.01,), "max_steps": grids.StepCounts((1,))},
               "imu": {"learning_rate": (0.01,), "max_steps": grids.StepCounts((1,))}})
    config = results["config"]
    cap = grids.retain_free_cap(20)
    assert config["step_cap"] == cap
    assert config["tuning_grids"]["imu"]["max_steps"] == list(grids.step_counts(cap))
    markdown = (tmp_path / "results.md").read_text()
    assert "**validation split** (30 examples" in markdown
    assert "**test split** (30 examples" in markdown
    assert "reduced test split" in markdown
    assert "learning_rate ∈ {0.01} × max_steps ∈ {1, 2, 4, 8, 16, 32, 50}: ga, imu" in markdown
    assert "scored on the VALIDATION split" in markdown and "smallest mean Avg. Gap" in markdown
    assert "## Paired comparison with IMU (Avg. Gap)" in markdown
    assert "Mean ± sample std (ddof 1)" in markdown


def test_an_epochs_axis_replaces_the_step_axis():
    grid = {**grids.STEP_GRID, "epochs": [10, 20]}
    assert selection.resolve_grid(grid, 50) == {"learning_rate": grids.LEARNING_RATES,
                                                "epochs": (10, 20)}
    explicit = {**grids.STEP_GRID, "max_steps": [3, 5]}  # a step axis the user gave: kept
    assert selection.resolve_grid(explicit, 50)["max_steps"] == (3, 5)
