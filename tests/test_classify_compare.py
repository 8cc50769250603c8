"""classify.workflows.compare (rows added per run, each cache read once, rows pointing at their runs), --train-size,
and the learning curve."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

import featurecache.cache
from classify.commands import compare, learning_curve
from classify.cli import cli
from conftest import assert_rows_match_their_runs, blob_cache, invoke, latest_run, snapshot, table_rows


def rows(out_dir) -> dict[tuple[str, str], dict]:
    """Rows by (cache, model), for tables with one run of each model per cache."""
    found = table_rows(out_dir)
    by_key = {(r["cache"], r["model"]): r for r in found}
    assert len(by_key) == len(found), found
    return by_key


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
        assert latest_run(tmp_path, "alpha", key[1])["metrics"]["accuracy"] == pytest.approx(float(row["accuracy"]), abs=1e-4)
    assert_rows_match_their_runs(tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert md.count("| alpha |") == 3 and "macro F1" in md and "train time" in md
    with Image.open(tmp_path / "comparison.png") as im:
        assert im.format == "PNG" and im.size[0] >= 300


def test_compare_adds_rows_for_other_settings_and_puts_caches_side_by_side(two_caches, tmp_path):
    alpha, beta = two_caches
    fast = ["--n-estimators", "10", "--max-iter", "50", "--out-dir", tmp_path]
    assert invoke(compare.cli, ["--features", alpha, "--model", "lr", "--model", "rf", *fast]).exit_code == 0
    first = rows(tmp_path)
    assert set(first) == {("alpha", "lr"), ("alpha", "rf")}
    first_lr_files = snapshot(tmp_path)

    result = invoke(compare.cli, ["--features", alpha, "--features", beta, "--model", "lr", "--C", "0.5", *fast])
    assert result.exit_code == 0, result.output
    second = table_rows(tmp_path)
    assert sorted((r["cache"], r["model"], json.loads(r["hyperparameters"])["C"] if r["model"] == "lr" else None)
                  for r in second) == [("alpha", "lr", 0.01), ("alpha", "lr", 0.5), ("alpha", "rf", None),
                                       ("beta", "lr", 0.5)]  # a new row per new run; beta beside alpha
    kept = {(r["cache"], r["model"], r["hyperparameters"]): r for r in second}
    assert kept[("alpha", "rf", first[("alpha", "rf")]["hyperparameters"])] == first[("alpha", "rf")]
    assert kept[("alpha", "lr", first[("alpha", "lr")]["hyperparameters"])] == first[("alpha", "lr")]
    after = snapshot(tmp_path)
    for name, data in first_lr_files.items():  # no file of the earlier runs was replaced
        if not name.startswith(("comparison.", "alpha-lr-latest", "index.", "best.")):
            assert after[name] == data, name
    assert latest_run(tmp_path, "alpha", "lr")["hyperparameters"]["C"] == 0.5
    assert_rows_match_their_runs(tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert "beta" in md and "lr C=0.5" in md and "lr C=0.01" in md

    # the same settings again replace only that run's row and files
    result = invoke(compare.cli, ["--features", alpha, "--model", "lr", "--model", "lr", "--C", "0.5", *fast])
    assert result.exit_code == 0, result.output
    assert result.output.count("compare: lr on") == 1  # --model lr twice: trained once
    assert len(table_rows(tmp_path)) == 4
    assert_rows_match_their_runs(tmp_path)


def test_a_model_given_twice_is_trained_once(two_caches, tmp_path):
    alpha = two_caches[0]
    result = invoke(compare.cli, ["--features", alpha, "--model", "lr", "--model", "lr", "--features", alpha,
                                  "--out-dir", tmp_path])
    assert result.exit_code == 0, result.output
    assert result.output.count("compare: lr on") == 1
    assert len(table_rows(tmp_path)) == 1


def test_caches_sharing_a_file_name_keep_their_own_rows_and_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = blob_cache(tmp_path / "a" / "base.h5", seed=1)
    b = blob_cache(tmp_path / "b" / "base.h5", seed=1, spread=1.0)  # same attributes, other data
    out = tmp_path / "reports"
    result = invoke(compare.cli, ["--features", a, "--features", b, "--model", "lr", "--out-dir", out])
    assert result.exit_code == 0, result.output
    found = table_rows(out)
    assert len(found) == 2 and len({r["cache_id"] for r in found}) == 2
    assert {r["cache_path"] for r in found} == {str(a), str(b)}
    assert len(list(out.glob("base-lr-*-run.json"))) == 2
    assert_rows_match_their_runs(out)
    assert "base (" in (out / "comparison.md").read_text()  # the two caches are told apart in the table


def test_run_identity_follows_settings_and_cache_not_file_name(two_caches, tmp_path):
    from classify.training.config import ClassifyConfig
    from classify.runs.outputs import run_id
    from featurecache.cache import read_cache

    alpha = read_cache(two_caches[0])
    copy = tmp_path / "renamed.h5"
    copy.write_bytes(two_caches[0].read_bytes())
    cfg = ClassifyConfig(model="lr")
    assert run_id(alpha, cfg) == run_id(read_cache(copy), cfg)  # same bytes, other name: same run
    others = [ClassifyConfig(model="lr", C=0.5), ClassifyConfig(model="lr", seed=1), ClassifyConfig(model="lr", val_fraction=0.2),
              ClassifyConfig(model="lr", train_size=100), ClassifyConfig(model="rf")]
    ids = {run_id(alpha, c) for c in others} | {run_id(alpha, cfg), run_id(read_cache(two_caches[1]), cfg)}
    assert len(ids) == len(others) + 2
    assert run_id(alpha, ClassifyConfig(model="lr", n_estimators=7)) == run_id(alpha, cfg)  # rf's setting: same lr run


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
    record = latest_run(tmp_path, "beta", "lr")
    m = record["metrics"]
    assert (m["n_fit"], m["n_val"]) == (32, 8) and record["config"]["train_size"] == 40


def test_learning_curve_writes_csv_and_png(two_caches, tmp_path):
    alpha = two_caches[0]  # 300 training rows, 3 classes
    result = invoke(learning_curve.cli, ["--model", "lr", "--features", alpha, "--out-dir", tmp_path,
                                         "--min-size", "30", "--points", "3", "--seeds", "2", "--max-iter", "50"])
    assert result.exit_code == 0, result.output
    (csv_path,) = tmp_path.glob("alpha-lr-*-learning-curve.csv")
    with open(csv_path) as f:
        points = list(csv.DictReader(f))
    sizes = sorted({int(p["train_size"]) for p in points})
    assert sizes == [30, 95, 300]
    assert len(points) == 6 and {p["seed"] for p in points} == {"0", "1"}
    for p in points:
        assert int(p["n_fit"]) + int(p["n_val"]) == int(p["train_size"])
        assert 0 <= float(p["accuracy"]) <= 1
    assert min(float(p["accuracy"]) for p in points if p["train_size"] == "300") >= 0.9
    with Image.open(csv_path.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.size[0] >= 300
    assert "csv: " in result.output and "png: " in result.output


def test_learning_curve_sizes_are_log_spaced_and_end_at_all_rows():
    sizes = learning_curve.sizes_for(50_000, 100, 6)
    assert len(sizes) == 6 and sizes[0] == 100 and sizes[-1] == 50_000
    for a, b in zip(sizes, sizes[1:]):
        assert b / a == pytest.approx(500 ** (1 / 5), rel=0.01)
    assert learning_curve.sizes_for(80, 100, 4) == [80]
