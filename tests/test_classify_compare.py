"""classify.compare (rows added and replaced, each cache read once), --train-size, and the learning curve."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

import featurecache.cache
from classify import compare, learning_curve
from classify.cli import cli
from test_classify_data import blob_cache, invoke, snapshot


def rows(out_dir) -> dict[tuple[str, str], dict]:
    with open(out_dir / "comparison.csv") as f:
        return {(r["cache"], r["model"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    return blob_cache(root / "alpha.h5", seed=1), blob_cache(root / "beta.h5", seed=2, dim=8, classes=4)


def test_compare_all_models_on_one_cache_read_once(two_caches, tmp_path, monkeypatch):
    reads = []
    real = featurecache.cache.read_cache
    monkeypatch.setattr(featurecache.cache, "read_cache", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    alpha = two_caches[0]
    result = invoke(compare.cli, ["--features", alpha, "--out-dir", tmp_path, "--epochs", "3", "--hidden", "16", "--batch-size", "32",
                                  "--learning-rate", "0.01",
                                  "--n-estimators", "10", "--max-iter", "50"])
    assert result.exit_code == 0, result.output
    assert len(reads) == 1  # one cache, three models, one read
    table = rows(tmp_path)
    assert set(table) == {("alpha", "lr"), ("alpha", "mlp"), ("alpha", "rf")}
    for key, row in table.items():
        assert float(row["accuracy"]) >= 0.9, key
        assert 0 <= float(row["macro_f1"]) <= 1 and float(row["train_time_s"]) >= 0
        assert json.loads((tmp_path / f"alpha-{key[1]}-run.json").read_text())["metrics"]["accuracy"] == \
            pytest.approx(float(row["accuracy"]), abs=1e-4)
    md = (tmp_path / "comparison.md").read_text()
    assert md.count("| alpha |") == 3 and "macro F1" in md and "train time" in md
    with Image.open(tmp_path / "comparison.png") as im:
        assert im.format == "PNG" and im.size[0] >= 300


def test_compare_adds_and_replaces_rows_and_puts_caches_side_by_side(two_caches, tmp_path):
    alpha, beta = two_caches
    fast = ["--n-estimators", "10", "--max-iter", "50", "--out-dir", tmp_path]
    assert invoke(compare.cli, ["--features", alpha, "--model", "lr", "--model", "rf", *fast]).exit_code == 0
    first = rows(tmp_path)
    assert set(first) == {("alpha", "lr"), ("alpha", "rf")}

    result = invoke(compare.cli, ["--features", alpha, "--features", beta, "--model", "lr", "--C", "0.5", *fast])
    assert result.exit_code == 0, result.output
    second = rows(tmp_path)
    assert set(second) == {("alpha", "lr"), ("alpha", "rf"), ("beta", "lr")}  # beta added beside alpha
    assert second[("alpha", "rf")] == first[("alpha", "rf")]                   # untouched row kept as it was
    assert json.loads(second[("alpha", "lr")]["hyperparameters"])["C"] == 0.5  # re-run row replaced
    assert json.loads(first[("alpha", "lr")]["hyperparameters"])["C"] == 0.01
    assert (tmp_path / "comparison.md").read_text().count("|") > 0 and "beta" in (tmp_path / "comparison.md").read_text()


def test_compare_with_a_bad_cache_trains_nothing_and_keeps_the_table(two_caches, tmp_path):
    alpha = two_caches[0]
    assert invoke(compare.cli, ["--features", alpha, "--model", "lr", "--out-dir", tmp_path]).exit_code == 0
    before = snapshot(tmp_path)
    missing = tmp_path / "gone.h5"
    result = invoke(compare.cli, ["--features", alpha, "--features", missing, "--model", "lr", "--C", "3",
                                  "--out-dir", tmp_path])
    assert result.exit_code == 1 and "no features at" in result.output and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_train_size_uses_a_stratified_subset(two_caches, tmp_path):
    beta = two_caches[1]  # 4 classes, 75 training rows each
    result = invoke(cli, ["--model", "lr", "--features", beta, "--out-dir", tmp_path, "--train-size", "40",
                          "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "beta-lr-run.json").read_text())
    m = record["metrics"]
    assert (m["n_fit"], m["n_val"]) == (32, 8) and record["config"]["train_size"] == 40


def test_learning_curve_writes_csv_and_png(two_caches, tmp_path):
    alpha = two_caches[0]  # 300 training rows, 3 classes
    result = invoke(learning_curve.cli, ["--model", "lr", "--features", alpha, "--out-dir", tmp_path,
                                         "--min-size", "30", "--points", "3", "--seeds", "2", "--max-iter", "50"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "alpha-lr-learning-curve.csv") as f:
        points = list(csv.DictReader(f))
    sizes = sorted({int(p["train_size"]) for p in points})
    assert sizes == [30, 95, 300]
    assert len(points) == 6 and {p["seed"] for p in points} == {"0", "1"}
    for p in points:
        assert int(p["n_fit"]) + int(p["n_val"]) == int(p["train_size"])
        assert 0 <= float(p["accuracy"]) <= 1
    assert min(float(p["accuracy"]) for p in points if p["train_size"] == "300") >= 0.9
    with Image.open(tmp_path / "alpha-lr-learning-curve.png") as im:
        assert im.format == "PNG" and im.size[0] >= 300
    assert "csv: " in result.output and "png: " in result.output


def test_learning_curve_sizes_are_log_spaced_and_end_at_all_rows():
    sizes = learning_curve.sizes_for(50_000, 100, 6)
    assert len(sizes) == 6 and sizes[0] == 100 and sizes[-1] == 50_000
    for a, b in zip(sizes, sizes[1:]):
        assert b / a == pytest.approx(500 ** (1 / 5), rel=0.01)
    assert learning_curve.sizes_for(80, 100, 4) == [80]
