"""What a streamed run reports is what it did: the forest's rows fitted under a budget, the MLP's
batch size, and a budget that cannot hold."""

from __future__ import annotations

import json

from click.testing import CliRunner

from classify.cli import cli as classify_cli
from test_classify_stream import synthetic_cache


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
