"""kNN: a brute-force numpy reference, k chosen on validation only, saving, predicting, streaming, export refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import blob_cache, error_line, invoke

from classify.cli import cli
from classify.training.config import ClassifyConfig
from classify.training.knn import K_GRID
from classify.runs.saved import load_run
from classify.training.train import load_for_training, train_and_evaluate
from featurecache.cache import read_cache


def brute_force(X_train, y_train, X, k, T, n_classes):
    """Weighted kNN the slow, obvious way: every similarity, a full sort, one row at a time."""
    unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    A, B = unit(X_train.astype(np.float64)), unit(X.astype(np.float64))
    out = np.zeros((len(X), n_classes))
    for i, q in enumerate(B):
        sims = A @ q
        for j in np.argsort(-sims)[:k]:
            out[i, y_train[j]] += np.exp(sims[j] / T)
    return out / out.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """Three overlapping clusters: k matters, and the test split can be swapped for another."""
    return blob_cache(tmp_path_factory.mktemp("knn") / "blobs-none-gap-1px.h5", n_train=600, n_test=150, spread=0.6)


def test_predictions_equal_a_brute_force_reference(tiny_cache):
    cache = read_cache(tiny_cache)
    cfg = ClassifyConfig(model="knn", k=7, temperature=0.1, val_fraction=0.2)
    result = train_and_evaluate(cache, cfg)
    X, y = cache.train.features[result.rows.fit], cache.train.labels[result.rows.fit]
    want = brute_force(X, y, cache.test.features, 7, 0.1, 10)
    np.testing.assert_allclose(result.proba, want, rtol=1e-4, atol=1e-7)


def test_blocks_under_a_small_memory_budget_and_streaming_give_the_same_predictions(overlapping):
    whole = train_and_evaluate(read_cache(overlapping), ClassifyConfig(model="knn"))
    cfg = ClassifyConfig(model="knn", max_memory=20_000)   # far below the cache: streamed, tiny blocks
    cache = load_for_training(overlapping, cfg)
    assert cache.train.features is None
    streamed = train_and_evaluate(cache, cfg)
    assert streamed.trained.details["query_block_rows"] < whole.trained.details["query_block_rows"]
    assert streamed.trained.details["k"] == whole.trained.details["k"]
    np.testing.assert_allclose(streamed.proba, whole.proba, rtol=1e-5, atol=1e-9)


def test_k_is_chosen_on_validation_never_on_test(overlapping, tmp_path):
    cache = read_cache(overlapping)
    result = train_and_evaluate(cache, ClassifyConfig(model="knn"))
    d = result.trained.details
    X, y = cache.train.features, cache.train.labels
    fit, val = result.rows.fit, result.rows.val
    # every candidate's validation accuracy, recomputed by brute force; the best one is kept
    grid = [min(k, np.bincount(y[fit]).min()) for k in K_GRID]   # 200 capped at the smallest class (180 rows)
    want = {k: np.mean(brute_force(X[fit], y[fit], X[val], k, 0.07, 3).argmax(1) == y[val]) for k in grid}
    assert [s["k"] for s in d["k_sweep"]] == grid and grid[-1] < 200
    assert [s["val_accuracy"] for s in d["k_sweep"]] == pytest.approx([want[k] for k in grid])
    assert want[d["k"]] == max(want.values())
    # the same training rows with other test rows (labels shuffled, features noise): the same k
    rng = np.random.default_rng(1)
    other = blob_cache(tmp_path / "other.h5", n_train=600, n_test=150, spread=0.6,
                       test_labels=rng.permutation(cache.test.labels),
                       test_features=rng.normal(size=cache.test.features.shape))
    again = train_and_evaluate(read_cache(other), ClassifyConfig(model="knn"))
    assert again.trained.details["k_sweep"] == d["k_sweep"] and again.trained.details["k"] == d["k"]


def test_k_is_capped_at_the_smallest_class(tiny_cache):
    cache = read_cache(tiny_cache)
    result = train_and_evaluate(cache, ClassifyConfig(model="knn", val_fraction=0.2))
    smallest = np.bincount(cache.train.labels[result.rows.fit]).min()
    assert [s["k"] for s in result.trained.details["k_sweep"]] == [smallest]


def test_knn_run_saves_predicts_and_refuses_export(overlapping, tmp_path):
    r = invoke(cli, ["--model", "knn", "--features", overlapping, "--out-dir", tmp_path, "--report-name", "k"])
    assert r.exit_code == 0, r.output
    assert "k sweep (validation accuracy)" in r.output
    record = json.loads((tmp_path / "k-run.json").read_text())
    assert record["model"] == "knn" and record["hyperparameters"] == {"k": "auto", "temperature": 0.07}
    assert "knn" in (tmp_path / "index.html").read_text()
    cache = read_cache(overlapping)
    run = load_run(tmp_path / "k-run.json")
    proba = run.predict_proba(cache.test.features)
    assert np.mean(proba.argmax(1) == cache.test.labels) == pytest.approx(record["metrics"]["accuracy"])
    from classify.commands.predict import cli as predict_cli

    r = invoke(predict_cli, ["--run", tmp_path / "k-run.json", "--export", tmp_path / "exp"])
    assert "whole training set" in error_line(r, 1)   # one "Error: ..." line, no exception escaped
    assert not (tmp_path / "exp").exists()
