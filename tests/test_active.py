"""classify.workflows.active on the real fixture cache (120 CIFAR-10 images, random VGG16 weights): the labelled
counts, the pool (training rows only), margin picks checked against scikit-learn, seeded random picks,
strategies that do not influence each other, the files' contents, and one clean line for each bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from classify.commands.active import cli as active_cli
from classify.workflows import active
from classify.training.config import ClassifyConfig
from conftest import ROOT, assert_clean_failure, blob_cache, invoke, snapshot
from featurecache.cache import read_cache

SMALL = ["--initial", "30", "--batch", "10", "--budget", "55"]  # labelled 30, 40, 50, 55 of the 100 pool rows


def run(cache, out, *args):
    return invoke(active_cli, ["--features", cache, "--out-dir", out, *args])


def outputs(out):
    """(csv rows, json record, png path) of the one active-learning run in `out`."""
    (csv_path,) = out.glob("*-active.csv")
    rows = list(csv.DictReader(csv_path.open()))
    record = json.loads(csv_path.with_suffix(".json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    return rows, record, csv_path.with_suffix(".png")


@pytest.fixture(scope="module")
def default_run(tiny_cache, tmp_path_factory):
    """margin + random (the default strategies), 2 seeds, on the fixture cache."""
    out = tmp_path_factory.mktemp("active")
    result = run(tiny_cache, out, *SMALL, "--seeds", "2")
    assert result.exit_code == 0, result.output
    return out, result


def test_labelled_counts_follow_initial_batch_budget(default_run):
    rows, record, _ = outputs(default_run[0])
    for strategy in ("margin", "random"):
        for seed in ("0", "1"):
            mine = [r for r in rows if (r["strategy"], r["seed"]) == (strategy, seed)]
            assert [int(r["labelled"]) for r in mine] == [30, 40, 50, 55]
            assert [int(r["round"]) for r in mine] == [0, 1, 2, 3]
    assert len(rows) == 2 * 2 * 4
    assert record["settings"]["labelled"] == [30, 40, 50, 55]


def test_only_training_rows_are_ever_labelled(default_run, tiny_cache):
    cache = read_cache(tiny_cache)
    _, record, _ = outputs(default_run[0])
    assert len(record["runs"]) == 4
    for r in record["runs"]:
        idx = r["indices"]
        assert len(idx) == len(set(idx)) == 55 and 0 <= min(idx) and max(idx) < len(cache.train.labels)
        assert r["sources"] == [str(cache.train.sources[i]) for i in idx]
        assert not any(s.startswith("test_batch") for s in r["sources"])  # CIFAR-10 test rows are never queried


def sklearn_margin_picks(cache, labelled, batch):
    """The `batch` unlabelled pool rows with the smallest top-two probability gap under scikit-learn's
    own LR (the project's default: standardised features, C=0.01, lbfgs) fitted on `labelled`."""
    X, y = cache.train.features, cache.train.labels
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=300)).fit(X[labelled], y[labelled])
    pool = np.setdiff1d(np.arange(len(y)), labelled)
    top2 = np.sort(model.predict_proba(X[pool]), axis=1)[:, -2:]
    return pool[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:batch]], model


def test_margin_queries_the_smallest_top_two_gaps_under_each_rounds_model(tiny_cache):
    cache = read_cache(tiny_cache)
    got = active.run_strategy(cache, ClassifyConfig(), "margin", 0, active.Plan(30, 10, 55))
    idx = np.asarray(got["indices"])
    for start, end in ((30, 40), (40, 50), (50, 55)):
        want, model = sklearn_margin_picks(cache, idx[:start], end - start)
        np.testing.assert_array_equal(idx[start:end], want)
    # round 0's accuracy is that of the same model on the test rows
    _, model = sklearn_margin_picks(cache, idx[:30], 10)
    want = accuracy_score(cache.test.labels, model.predict(cache.test.features))
    assert got["rounds"][0]["accuracy"] == pytest.approx(want, abs=1e-4)


def test_initial_set_is_stratified_and_shared_by_every_strategy(tiny_cache):
    cache = read_cache(tiny_cache)
    runs = active.active_learning(cache, ClassifyConfig(), list(active.STRATEGIES), [3], active.Plan(30, 10, 40))
    firsts = {tuple(r["indices"][:30]) for r in runs}
    assert len(firsts) == 1
    counts = np.bincount(cache.train.labels[list(firsts.pop())], minlength=10)
    share = np.bincount(cache.train.labels, minlength=10) * 30 / len(cache.train.labels)
    assert (np.abs(counts - share) <= 1).all()
    assert len({tuple(r["indices"][30:]) for r in runs}) > 1  # strategies differ after round 0


def test_random_is_seeded_repeatable_and_independent_of_other_strategies(default_run, tiny_cache, tmp_path):
    _, record, _ = outputs(default_run[0])
    picks = {(r["strategy"], r["seed"]): r["indices"] for r in record["runs"]}
    alone = tmp_path / "alone"
    assert run(tiny_cache, alone, *SMALL, "--seeds", "2", "--strategy", "random").exit_code == 0
    _, again, _ = outputs(alone)
    assert {(r["strategy"], r["seed"]): r["indices"] for r in again["runs"]} == {
        k: v for k, v in picks.items() if k[0] == "random"}
    assert picks[("random", 0)][30:] != picks[("random", 1)][30:]
    order = tmp_path / "order"
    assert run(tiny_cache, order, *SMALL, "--seeds", "2", "--strategy", "entropy", "--strategy", "margin").exit_code == 0
    _, other, _ = outputs(order)
    assert [r["indices"] for r in other["runs"] if r["strategy"] == "margin"] == [
        picks[("margin", 0)], picks[("margin", 1)]]


def test_files_hold_what_they_say(default_run, tiny_cache):
    out, result = default_run
    cache = read_cache(tiny_cache)
    rows, record, png = outputs(out)
    assert list(rows[0]) == ["strategy", "seed", "round", "labelled", "accuracy", "macro_f1", "queried_per_class"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["settings"]["strategies"] == ["margin", "random"] and record["settings"]["seeds"] == [0, 1]
    assert (record["settings"]["initial"], record["settings"]["batch"], record["settings"]["budget"]) == (30, 10, 55)
    sizes = [0, 30, 40, 50, 55]
    for r in record["runs"]:
        mine = [row for row in rows if (row["strategy"], int(row["seed"])) == (r["strategy"], r["seed"])]
        for k, row in enumerate(mine):
            queried = np.asarray(r["indices"][sizes[k]:sizes[k + 1]])
            counts = json.loads(row["queried_per_class"])
            assert list(counts) == cache.class_names
            assert list(counts.values()) == np.bincount(cache.train.labels[queried], minlength=10).tolist()
            assert 0 <= float(row["accuracy"]) <= 1 and 0 <= float(row["macro_f1"]) <= 1
    finals = {s: np.mean([float(row["accuracy"]) for row in rows if row["strategy"] == s and row["round"] == "3"])
              for s in ("margin", "random")}
    assert f"margin    {finals['margin']:.4f} ± " in result.output
    assert "gain over random" in result.output and "+0.0000" in result.output


def test_another_model_runs_and_names_its_files(tiny_cache, tmp_path):
    result = run(tiny_cache, tmp_path, *SMALL, "--seeds", "1", "--model", "rf", "--n-estimators", "5",
                 "--strategy", "least-confident")
    assert result.exit_code == 0, result.output
    rows, record, _ = outputs(tmp_path)
    assert next(tmp_path.glob("*-active.csv")).name.startswith(f"{tiny_cache.stem}-rf-")
    assert {r["strategy"] for r in rows} == {"least-confident"} and "gain over random" not in result.output


@pytest.fixture
def earlier(tmp_path):
    """A blob cache (300 pool rows, 3 classes) and an output folder holding an earlier run's files."""
    cache = blob_cache(tmp_path / "blobs.h5")
    out = tmp_path / "out"
    assert run(cache, out, "--initial", "30", "--batch", "10", "--budget", "50", "--seeds", "1").exit_code == 0
    return cache, out, snapshot(out)


@pytest.mark.parametrize("args, words, code", [
    (["--batch", "0"], ["--batch", "x>=1"], 2),
    (["--seeds", "0"], ["--seeds", "x>=1"], 2),
    (["--strategy", "greedy"], ["--strategy", "margin", "least-confident"], 2),
    (["--initial", "301"], ["--initial 301", "between 3 and 300"], 1),
    (["--initial", "2"], ["--initial 2", "between 3 and 300"], 1),
    (["--initial", "100", "--budget", "301"], ["--budget 301", "between 100 (--initial) and 300"], 1),
    (["--initial", "100", "--budget", "90"], ["--budget 90", "smaller than --initial 100", "between 100 and 300"], 1),
    (["--C", "nan"], ["--C"], 2),
])
def test_bad_input_is_one_line_and_leaves_earlier_files(earlier, args, words, code):
    cache, out, before = earlier
    assert_clean_failure(run(cache, out, *args), *words, code=code)
    assert snapshot(out) == before


def test_a_cache_without_test_rows_is_refused(earlier, tmp_path):
    cache, out, before = earlier
    with h5py.File(cache, "a") as f:  # an empty test split: what write_cache cannot make, a foreign file can
        for name in ("features", "labels", "sources"):
            old = f["test"][name]
            shape, dtype = (0, *old.shape[1:]), old.dtype
            del f["test"][name]
            f["test"].create_dataset(name, shape=shape, dtype=dtype)
    assert_clean_failure(run(cache, out, "--initial", "30", "--budget", "50"), "no test rows", "test split")
    with h5py.File(cache, "a") as f:
        del f["test"]
    assert_clean_failure(run(cache, out, "--initial", "30", "--budget", "50"), "/test")
    assert snapshot(out) == before


@pytest.mark.slow
def test_lr_and_rf_runs_never_import_tensorflow(tmp_path):
    cache = blob_cache(tmp_path / "blobs.h5")
    code = ("import sys; from classify.commands.active import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], 'TensorFlow imported'\n")
    for model in ("lr", "rf"):
        done = subprocess.run([sys.executable, "-c", code, "--features", str(cache), "--out-dir", str(tmp_path),
                               "--model", model, "--initial", "30", "--budget", "50", "--seeds", "2",
                               "--n-estimators", "5"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "margin" in done.stdout
