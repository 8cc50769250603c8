"""Two compares started together on one --out-dir (real processes): the table keeps the rows of both."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, assert_rows_match_their_runs, blob_cache, table_rows

pytestmark = pytest.mark.slow


def test_compares_started_together_keep_each_others_rows(tmp_path):
    cache = blob_cache(tmp_path / "blobs.h5")
    out = tmp_path / "reports"
    common = ["--features", str(cache), "--out-dir", str(out), "--n-estimators", "10", "--max-iter", "50"]
    # each compare writes the table after each of its runs: four read-merge-writes racing for one file
    jobs = [["--model", "rf", "--seed", "1", "--model", "lr"], ["--model", "lr", "--model", "rf"]]
    procs = [subprocess.Popen([sys.executable, "-m", "featurecache", "compare", *job, *common], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for job in jobs]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = table_rows(out)
    assert sorted((r["model"], r["seed"]) for r in rows) == [("lr", "0"), ("lr", "1"), ("rf", "0"), ("rf", "1")]
    assert_rows_match_their_runs(out)
    assert (out / "comparison.lock").exists() and not list(out.glob(".*tmp*"))
