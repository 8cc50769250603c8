"""A full disk while a run writes its files: one line, exit 1, no traceback, earlier files untouched.

The child process gets a file-size limit (RLIMIT_FSIZE) and ignores SIGXFSZ, so the write that
crosses the limit fails with EFBIG, as a write to a full disk fails with ENOSPC."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest

from classify.cli import cli
from conftest import ROOT, invoke, snapshot

pytestmark = pytest.mark.slow


def limited(max_bytes: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return preexec


def classify(args, limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classify", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, preexec_fn=limited(limit) if limit else None)


# (model, options, file-size limit): the limit lets the figures through and stops the model file
# (rf: h5py, mlp: Keras' zip archive), or stops the first figure (lr: matplotlib)
CASES = [
    ("rf", ["--n-estimators", "500"], 60_000),
    ("mlp", ["--epochs", "2"], 500_000),
    ("lr", [], 12_000),
]


@pytest.mark.parametrize("model, options, limit", CASES, ids=[c[0] for c in CASES])
def test_a_full_disk_gives_one_line_and_keeps_earlier_files(model, options, limit, blobs, tmp_path):
    out = tmp_path / "reports"
    args = ["--model", model, "--features", blobs, "--out-dir", out, *options]
    done = invoke(cli, args)  # the earlier run, in-process
    assert done.exit_code == 0, done.output
    before = snapshot(out)
    r = classify([*args, "--seed", "1"], limit)  # another run: new files, none of which fits
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: no room to write in") and "File too large" in lines[-1], lines[-1]
    assert sum(line.startswith("Error") for line in lines) == 1, r.stderr
    assert snapshot(out) == before  # same names, same bytes, no temporary files left
