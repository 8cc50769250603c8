"""What a streamed run reports is what it did: the forest's rows fitted under a budget, the MLP's
batch size, and a budget that cannot hold."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from classify.cli import cli as classify_cli
from classify.training.config import ClassifyConfig
from classify.training.data import Stream, split_rows
from featurecache.cache import read_cache
from conftest import synthetic_cache


def run_record(out) -> dict:
    return json.loads(next(out.glob("*-run.json")).read_text())


def test_rf_under_a_budget_reports_the_rows_it_fitted(tmp_path):
    path = synthetic_cache(tmp_path / "c.h5", 2000, dim=256)
    result = CliRunner().invoke(classify_cli, ["--features", str(path), "--model", "rf", "--n-estimators", "10",
                                               "--max-memory", "1MB", "--out-dir", str(tmp_path / "r")])
    assert result.exit_code == 0 and result.exception is None, result.output
    record = run_record(tmp_path / "r")
    sub, metrics = record["chosen"]["subsample"], record["metrics"]
    assert sub["rows"] < sub["of"] == 1800
    assert metrics["fit_rows"] == metrics["n_fit"] == record["fit_rows"] == sub["rows"]
    assert metrics["fit_images"] == sub["images"] == sub["rows"]   # no views: one row per image
    assert metrics["n_val"] == sub["val_rows"] <= 200
    assert f"rf: fit on {sub['rows']:,} rows, validated on {sub['val_rows']:,}" in result.output
    assert f"subsample of {sub['rows']:,} of 1,800 training rows" in result.output


def test_streamed_mlp_batches_hold_the_batch_size_across_chunks(tmp_path):
    from classify.training.mlp import stream_datasets
    from featurecache.tfimport import tensorflow

    path = synthetic_cache(tmp_path / "c.h5", 1000, dim=16, n_test=50)
    labels = read_cache(path, features=False).train.labels
    rows = split_rows(labels, 0.1, 0)
    stream = Stream(path, labels, rows.fit, rows.val, 16, 0, 64, 10**9)   # chunks of 64 images
    train, _, n_fit, steps = stream_datasets(tensorflow(), stream, ClassifyConfig(model="mlp", batch_size=256))
    sizes = [len(y) for _, y in train.take(2 * steps).as_numpy_iterator()]
    assert n_fit == 900 and steps == 4
    assert sizes == [256, 256, 256, 132] * 2   # two passes, each as in memory: only the last batch is smaller


@pytest.mark.parametrize("budget, warned", [("200KB", False), ("50KB", True)])
def test_streamed_mlp_records_its_batch_size_and_warns_when_the_budget_cannot_hold(tmp_path, budget, warned):
    path = synthetic_cache(tmp_path / "c.h5", 3000, dim=16, n_test=50)
    result = CliRunner().invoke(classify_cli, ["--features", str(path), "--model", "mlp", "--epochs", "1",
                                               "--hidden", "8", "--batch-size", "256", "--max-memory", budget,
                                               "--out-dir", str(tmp_path / "r")])
    assert result.exit_code == 0 and result.exception is None, result.output
    chosen = run_record(tmp_path / "r")["chosen"]
    assert chosen["streamed"] and chosen["batch_size"] == 256
    budget_bytes = chosen["budget_bytes"]
    assert ("over_budget" in chosen) == warned == (chosen["held_bytes"] > budget_bytes)
    line = f"warning: streaming held up to {chosen['held_bytes']:,} bytes of features, more than --max-memory"
    assert (line in result.output) == warned, result.output
    if warned:
        assert "--batch-size 256 batches" in result.output and "or a smaller --batch-size" in result.output
