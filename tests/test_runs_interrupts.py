"""Ctrl-C and SIGTERM in the middle of a run (real processes): exit 130 with one line, the reports folder
exactly as it was, a comparison table that agrees with the run files beside it; and temporary files of
killed runs removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from classify.commands import compare
from classify.cli import cli
from conftest import Run, assert_rows_match_their_runs, invoke, snapshot, table_rows

pytestmark = pytest.mark.slow
LONG_MLP = ["--epochs", "2000", "--patience", "2000", "--hidden", "64"]  # minutes of epochs: stopped long before the end


def assert_interrupted(rc: int, err: str, signum: int) -> None:
    assert rc == 130, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: interrupted ({signal.Signals(signum).name})"), last
    assert "earlier results are unchanged" in last
    assert sum(line.startswith("Error") for line in err.splitlines()) == 1, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_training_leaves_the_reports_folder_as_it_was(signum, tiny_cache, tmp_path):
    out = tmp_path / "reports"
    assert invoke(cli, ["--model", "lr", "--features", tiny_cache, "--out-dir", out]).exit_code == 0
    before = snapshot(out)
    run = Run("classify", ["--model", "mlp", "--features", tiny_cache, "--out-dir", out, *LONG_MLP])
    run.wait_for("classify: mlp on")
    time.sleep(6)  # TensorFlow loaded, epochs under way
    rc, err = run.stop(signum)
    assert_interrupted(rc, err, signum)
    assert snapshot(out) == before  # same names, same bytes, no temporary files


def test_a_compare_stopped_during_its_mlp_keeps_a_table_that_agrees_with_its_runs(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    assert invoke(compare.cli, ["--features", tiny_cache, "--model", "lr", "--C", "1", "--out-dir", out]).exit_code == 0
    run = Run("featurecache", ["compare", "--features", tiny_cache, "--model", "lr", "--model", "mlp", "--out-dir", out, *LONG_MLP])
    run.wait_for("compare: mlp on")
    time.sleep(6)
    rc, err = run.stop(signal.SIGINT)
    assert_interrupted(rc, err, signal.SIGINT)
    rows = table_rows(out)
    assert sorted((r["model"], json.loads(r["hyperparameters"])["C"]) for r in rows) == [("lr", 0.01), ("lr", 1.0)]
    assert_rows_match_their_runs(out)  # each row's numbers and settings are those of the run record it names
    assert not list(out.glob("*-mlp-*")) and not list(out.glob(".*tmp*"))


def test_temporary_files_of_killed_runs_are_removed_by_the_next_run(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    stale = [out / f".base-lr-1234abcd-curves.{dead}.tmp.png", out / f".base-lr-1234abcd-model.{dead}.tmp.h5",
             out / f".comparison.{dead}.tmp.csv", out / f".write-test.{dead}"]
    live = out / f".base-rf-1234abcd-curves.{os.getpid()}.tmp.png"  # a run still going: left alone
    for path in [*stale, live]:
        path.write_bytes(b"partial")
    result = invoke(cli, ["--model", "lr", "--features", tiny_cache, "--out-dir", out])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and live.exists()
