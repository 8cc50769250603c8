"""Bootstrap intervals, calibration error, temperature scaling, seeds in compare, overlap on the page."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from classify.training.config import ClassifyConfig
from classify.training.evaluation import bootstrap_interval, calibrated, ece
from classify.reporting.report import Run, standings
from classify.runs.record import Metrics, RunRecord
from classify.runs.saved import load_run
from classify.training.train import train_and_evaluate
from featurecache.cache import read_cache
from conftest import blob_cache, invoke


def test_bootstrap_interval_of_a_known_vector_matches_a_reference():
    correct = np.r_[np.ones(70), np.zeros(30)]   # accuracy 0.7 on 100 rows
    rng = np.random.default_rng(0)   # the reference: one resample at a time, the obvious way
    means = [correct[rng.integers(0, 100, 100)].mean() for _ in range(1000)]
    want = np.percentile(means, [2.5, 97.5])
    assert bootstrap_interval(correct) == pytest.approx(tuple(want), abs=1e-12)
    # and it is the interval theory gives: 0.7 +- 1.96 sqrt(0.7 * 0.3 / 100) = 0.61 .. 0.79
    lo, hi = bootstrap_interval(correct)
    assert lo == pytest.approx(0.7 - 1.96 * np.sqrt(0.21 / 100), abs=0.015)
    assert hi == pytest.approx(0.7 + 1.96 * np.sqrt(0.21 / 100), abs=0.015)
    assert bootstrap_interval(correct, seed=1) != (lo, hi)   # seeded: another seed, other resamples


def test_bootstrap_blocks_draw_the_same_resamples_as_one_at_a_time(monkeypatch):
    from classify.training import evaluation

    correct = np.random.default_rng(3).random(257) < 0.4
    whole = bootstrap_interval(correct)
    monkeypatch.setattr(evaluation, "DRAW_ELEMENTS", 1000)   # 3 resamples per block
    assert bootstrap_interval(correct) == whole


def reference_ece(y, proba, bins=15):
    """ECE by a loop over bins, membership by comparison: lo < confidence <= hi."""
    conf, pred = proba.max(1), proba.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(y) * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return total


def test_ece_is_zero_when_calibrated_and_matches_a_reference_when_skewed():
    # perfectly calibrated: 10 rows at confidence 0.8 with 8 right, 10 at 0.6 with 6 right
    proba = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [1] * 6 + [0] * 4)
    assert ece(y, proba) == pytest.approx(0.0, abs=1e-12)
    # skewed: confident, often wrong, confidences spread over every bin (edges included)
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (500, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p[:3] = [[1, 0, 0, 0, 0], [0.2] * 5, [0.6, 0.4, 0, 0, 0]]   # confidence exactly 1, 0.2 (an edge), 0.6 (an edge)
    y = rng.integers(0, 5, 500)
    assert ece(y, p) == pytest.approx(reference_ece(y, p), abs=1e-12) and ece(y, p) > 0.3


def test_temperature_scaling_keeps_the_top_class():
    p = np.random.default_rng(0).dirichlet(np.ones(4), 50)
    for t in (0.5, 2.0):
        q = calibrated(p, t)
        np.testing.assert_allclose(q.sum(1), 1)
        assert (q.argmax(1) == p.argmax(1)).all()


def test_calibrate_lowers_the_ece_of_an_over_confident_mlp_and_predict_gives_calibrated_probabilities(tmp_path):
    from classify.cli import cli
    from classify.training.specs import FORMATS

    # weak signal in 128 dimensions, 300 fit rows, a wide MLP without dropout at a high learning rate:
    # it memorises its rows within two epochs, and is over-confident on the test rows at its best epoch
    cache = blob_cache(tmp_path / "blobs-none-gap-1px.h5", n_train=400, n_test=600, dim=128, spread=0.2)
    r = invoke(cli, ["--model", "mlp", "--features", cache, "--out-dir", tmp_path, "--hidden", "512", "--dropout", "0",
                     "--epochs", "15", "--patience", "15", "--learning-rate", "0.02", "--batch-size", "32",
                     "--val-fraction", "0.25", "--calibrate", "--report-name", "cal"])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "cal-run.json").read_text())
    before, after = record["calibration"]["ece_before"], record["metrics"]["ece"]
    assert record["calibration"]["temperature"] > 1.5 and after < 0.5 * before, record["calibration"]
    # predict gives the calibrated probabilities: their ECE is the run's; the model file's own are the "before"
    c = read_cache(cache)
    run = load_run(tmp_path / "cal-run.json")
    proba = run.predict_proba(c.test.features)
    assert ece(c.test.labels, proba) == pytest.approx(after, abs=1e-4)
    assert np.mean(proba.argmax(1) == c.test.labels) == record["metrics"]["accuracy"]
    raw = FORMATS["keras"][1](run.model_path, 3)(c.test.features)
    assert ece(c.test.labels, raw) == pytest.approx(before, abs=1e-4)


def test_calibrate_is_refused_for_a_forest(tmp_path):
    cache = read_cache(blob_cache(tmp_path / "b.h5"))
    with pytest.raises(Exception, match="calibrate=True fits a temperature for lr, mlp, knn"):
        train_and_evaluate(cache, ClassifyConfig(model="rf", calibrate=True))


def fake_run(name, cache_id, acc, lo, hi):
    return Run(name, RunRecord(cache_id=cache_id, metrics=Metrics(accuracy=acc, accuracy_ci=(lo, hi))), {}, [])


def test_the_page_calls_runs_with_overlapping_intervals_neither_better_nor_worse():
    runs = [fake_run("a", "c1", 0.80, 0.76, 0.84), fake_run("b", "c1", 0.78, 0.74, 0.82),
            fake_run("c", "c1", 0.60, 0.55, 0.65), fake_run("d", "c2", 0.50, 0.45, 0.55)]
    s = standings(runs)
    assert s["a"].startswith("top; not better than 1 other")
    assert s["b"] == "not worse than the top: intervals overlap"
    assert s["c"] == "worse than the top: intervals apart"
    assert s["d"] == "top"   # alone on its cache


def test_compare_seeds_reports_mean_and_std_beside_each_interval(tmp_path):
    from classify.commands.compare import cli

    cache = blob_cache(tmp_path / "blobs-none-gap-1px.h5", spread=0.8)
    r = invoke(cli, ["--features", cache, "--out-dir", tmp_path, "--model", "lr", "--model", "knn", "--seeds", "3"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert sorted((row["model"], row["seed"]) for row in rows) == [(m, s) for m in ("knn", "lr") for s in "012"]
    md = (tmp_path / "comparison.md").read_text()
    for model in ("lr", "knn"):
        acc = np.array([float(row["accuracy"]) for row in rows if row["model"] == model])
        assert f"{acc.mean():.4f} ± {acc.std(ddof=1):.4f} (3 seeds)" in md
    for row in rows:
        assert float(row["accuracy_low"]) <= float(row["accuracy"]) <= float(row["accuracy_high"])
        assert f"[{float(row['accuracy_low']):.3f}, {float(row['accuracy_high']):.3f}]" in md
