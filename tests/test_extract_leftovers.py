"""What a killed extraction leaves beside its cache is removed by the next run that writes that cache.

The writer is a real process killed with SIGKILL while its `.x.<pid>.tmp.h5` is open; the next run
is a real extraction of the same cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import CIFAR_FIXTURE, ROOT, invoke_extract
from featurecache.cache import read_cache

# a real write_cache in a child, stalled reading its first part: a FIFO no one writes to
STALLED_WRITE = """
import sys
from featurecache.cache import write_cache
write_cache(sys.argv[1], {"feature_dim": 4}, {"train": [sys.argv[2]]})
"""


def killed_while_writing(cache: Path, tmp_path: Path) -> Path:
    """Start a process writing `cache`, SIGKILL it once its temporary file exists; that file."""
    fifo = tmp_path / "never-written.npz"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", STALLED_WRITE, str(cache), str(fifo)], cwd=ROOT)
    temp = cache.with_name(f".{cache.stem}.{child.pid}.tmp{cache.suffix}")
    deadline = time.monotonic() + 60
    while not temp.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert temp.exists(), "the writer died before it opened its temporary file"
    return temp


def test_next_run_removes_the_temporary_of_a_write_killed_with_sigkill(tmp_path):
    cache = tmp_path / "x.h5"
    dead = killed_while_writing(cache, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = cache.with_name(f".x.{sleeper.pid}.tmp.h5")   # a live process's: never touched
        other = tmp_path / f".y.{dead.name.split('.')[2]}.tmp.h5"   # another cache's: not this run's to judge
        live.write_bytes(b"live"), other.write_bytes(b"other")
        r = invoke_extract("--data-dir", CIFAR_FIXTURE, "--weights", "none", "--precision", "float32",
                           "--limit", "3", "--out", cache)
        assert r.exit_code == 0, r.output
        assert not dead.exists() and f"removed {dead}" in r.output
        assert live.read_bytes() == b"live" and other.read_bytes() == b"other"
        assert read_cache(cache).attrs["n_train"] == 3
    finally:
        sleeper.kill()
        sleeper.wait()
