"""What --engine ray says about its pool: too many --workers for the cores, a run too small to have a
steady rate, and Ray's own notices kept out of the terminal unless --verbose."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CIFAR_FIXTURE, ROOT
from extract.ray_engine import RaySummary, fit_workers


def test_more_workers_than_cores_is_cut_here_with_a_note_and_warned_on_a_cluster():
    workers, note = fit_workers(16, cpus=2, gpus=0, joined=False)
    assert workers == 2 and "--workers 16" in note and "2 CPU" in note
    workers, note = fit_workers(16, cpus=2, gpus=0, joined=True)
    assert workers == 16 and note.startswith("warning:") and "--workers 2" in note
    assert fit_workers(4, cpus=32, gpus=2, joined=False)[0] == 2
    assert fit_workers(2, cpus=2, gpus=0, joined=False) == (2, "")


def test_a_run_with_no_rows_after_the_first_batch_reports_no_steady_rate():
    small = RaySummary(status="built", out=ROOT, workers=2, computed=16, ray_init_s=15.7, first_batch_s=36.0,
                       steady_rows=0, steady_s=0.002)
    assert "0 img/s" not in small.pool_line() and "first batch" in small.pool_line()
    big = RaySummary(status="built", out=ROOT, workers=2, computed=1000, steady_rows=872, steady_s=16.7)
    assert "52 img/s over the pool" in big.pool_line()
    slow = RaySummary(status="built", out=ROOT, workers=2, computed=20, steady_rows=4, steady_s=2.0)
    assert "2 img/s over the pool" in slow.pool_line()


@pytest.mark.slow
def test_a_small_ray_run_with_too_many_workers_is_quiet_and_says_so(tmp_path):
    """A real `--engine ray --workers 4` run on this machine: the pool is cut to its CPUs with a note, and
    neither Ray's core nor its raylet prints to the terminal."""
    pytest.importorskip("ray")
    import os

    cpus = os.cpu_count() or 1
    r = subprocess.run([sys.executable, "-m", "extract", "--data-dir", str(CIFAR_FIXTURE), "--weights", "none",
                        "--precision", "float32", "--limit", "8", "--out", str(tmp_path / "r.h5"), "--engine", "ray",
                        "--workers", str(cpus + 2)], cwd=ROOT, capture_output=True, text=True, timeout=400,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    assert f"--workers {cpus + 2} is more than this machine's" in text and "0 img/s" not in text
    ray_lines = [line for line in text.splitlines() if "(raylet)" in line or ".cc:" in line or "WARNING" in line]
    assert not ray_lines, ray_lines
