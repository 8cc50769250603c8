"""A cache replaced at its path while a streaming classify reads it (extract --force renames a new
file over it): the run keeps reading the file it opened, so it gives exactly the result of an
undisturbed run and says the path changed; it never mixes rows of the two files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import ROOT
from featurecache.cache import write_cache

# 2,000 x 32 float32 rows: a 60 KB budget streams them in chunks of 64 rows (32 reads a pass)
ARGS = ["--model", "lr", "--max-memory", "60KB", "--max-iter", "6", "--patience", "6"]


def separable_cache(path: Path, seed: int, n: int = 2000, dim: int = 32) -> Path:
    """Ten well-separated classes (a linear model scores far above chance), centres drawn from `seed`."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim)).astype(np.float32) * 2

    def part(m):
        y = rng.integers(0, 10, m)
        return {"features": (centers[y] + rng.normal(size=(m, dim))).astype(np.float32), "labels": y.astype(np.int64),
                "sources": np.array([f"r/{i}" for i in range(m)])}

    attrs = {"dataset": "synthetic", "backbone": "vgg16", "pooling": "gap", "image_size": 32, "weights": "none",
             "class_names": [f"c{i}" for i in range(10)], "feature_dim": dim, "data_fingerprint": f"synthetic-{seed}"}
    return write_cache(path, attrs, {"train": [part(n)], "test": [part(300)]})


def start(cache: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "classify", "--features", str(cache), "--out-dir", str(out), *ARGS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record_of(out: Path) -> dict:
    return json.loads(next(out.glob("*-run.json")).read_text())


def test_a_cache_renamed_over_mid_run_is_never_read(tmp_path):
    (tmp_path / "features").mkdir()
    old = separable_cache(tmp_path / "features" / "c.h5", seed=0)
    keep = shutil.copy(old, tmp_path / "old-copy.h5")
    new = separable_cache(tmp_path / "new.h5", seed=1)   # same shape, other classes: read by mistake, it is chance

    undisturbed = start(old, tmp_path / "a")
    out, err = undisturbed.communicate(timeout=600)
    assert undisturbed.returncode == 0 and "streaming it from the cache" in err, out + err

    run = start(old, tmp_path / "b")
    for line in run.stderr:   # the run has read the labels and opened the file; training starts now
        if "streaming it from the cache" in line:
            break
    os.replace(new, old)      # what extract --force does: a finished file renamed over the cache
    still_running = run.poll() is None
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err
    assert still_running, "the run ended before the file was replaced; the test proves nothing (make it longer)"
    a, b = record_of(tmp_path / "a"), record_of(tmp_path / "b")
    assert b["metrics"]["accuracy"] == a["metrics"]["accuracy"] > 0.5, (a["metrics"], b["metrics"])
    assert "was replaced while this run read it" in out
    assert b["history"] == a["history"] and b["chosen"]["epochs_run"] == a["chosen"]["epochs_run"]
    assert b["cache_id"] == a["cache_id"]   # the record names the cache that was read
    assert open(old, "rb").read() != open(keep, "rb").read()   # the path does hold the other file now
