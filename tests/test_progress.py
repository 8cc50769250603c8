"""Progress in a log: plain lines about every 10% (or 30 s) with a rate and the time left, when
stderr is not a terminal; a real extraction of 3,000 images through a pipe shows them."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import CIFAR_FIXTURE, ROOT
from featurecache.progress import Progress, duration

LINE = re.compile(r"^(?P<desc>[\w ]+): [\d,]+/[\d,]+ \w+ \(\d+%\), [\d.,e+-]+ \w+/s, (?P<tail>.+ left|done in .+)$")


def test_plain_lines_every_tenth_and_a_last_one():
    out = io.StringIO()
    with Progress("work", 200, "rows", stream=out) as p:
        for _ in range(200):
            p.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and all(LINE.match(x) for x in lines), lines
    assert lines[0].startswith("work: 20/200 rows (10%)") and lines[0].endswith(" left")
    assert lines[-1].startswith("work: 200/200 rows (100%)") and "done in" in lines[-1]


def test_a_step_inside_another_is_silent_and_time_also_triggers_a_line():
    out = io.StringIO()
    with Progress("outer", 2, "runs", stream=out, every_seconds=0.0) as outer:
        with Progress("inner", 1000, "epochs", stream=out) as inner:
            inner.update(1000)
        outer.update(1)  # below 10%? no: 1 of 2, and every_seconds 0 prints anyway
    lines = out.getvalue().splitlines()
    assert [x.split(":")[0] for x in lines] == ["outer", "outer"], lines
    assert duration(5) == "5 s" and duration(245) == "4 min 05 s" and duration(3720) == "1 h 02 min"


def cifar_of(n_train_batch: int, n_test: int, folder):
    """A CIFAR-10 folder in the original layout: the fixture's real images tiled to the sizes asked."""
    folder.mkdir(parents=True)
    shutil.copy(CIFAR_FIXTURE / "batches.meta", folder / "batches.meta")
    for name, n in [(f"data_batch_{i}", n_train_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(CIFAR_FIXTURE / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        reps = -(-n // len(batch[b"labels"]))
        data = np.tile(batch[b"data"], (reps, 1))[:n]
        labels = (batch[b"labels"] * reps)[:n]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": batch[b"batch_label"], b"labels": labels, b"data": data}, f, protocol=2)
    return folder


@pytest.mark.slow
def test_an_extract_into_a_pipe_prints_progress_lines(tmp_path):
    data = cifar_of(500, 500, tmp_path / "cifar-10-batches-py")   # 2,500 train + 500 test images
    r = subprocess.run([sys.executable, "-m", "extract", "--data-dir", str(data), "--weights", "none",
                        "--backbone", "mobilenetv2",  # about 1% of VGG16's work at 32 px: a fast real model
                        "--precision", "float32", "--batch-size", "50", "--out", str(tmp_path / "c.h5")],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [m for m in map(LINE.match, r.stderr.splitlines()) if m]
    assert "train 2,500 x 1,280, test 500 x 1,280" in r.stdout
    assert sum(m["tail"].endswith(" left") for m in lines) >= 5, r.stderr
    assert {m["desc"] for m in lines} == {"extract train", "extract test"}
    assert "\r" not in r.stderr  # no terminal bar redrawn into the log
