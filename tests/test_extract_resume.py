"""Issue 5: interrupted extractions resume to the very cache an uninterrupted run gives.

Real `python -m extract` processes are killed part-way (SIGKILL, SIGTERM,
SIGINT) once a checkpoint part is on disk. The data is a CIFAR-10-format
folder made in tmp_path from the real fixture images (tiled and shifted so
every row differs), big enough that a run takes several seconds.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from click.testing import CliRunner

from featurecache.cache import partial_dir, read_cache
from extract.cli import cli
from featurecache.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar-10-batches-py"
PER_BATCH = 100  # 500 train rows, 100 test rows: ~60 checkpoint parts, a few seconds of work

pytestmark = pytest.mark.slow


def _load(name):
    with open(FIXTURE / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.fixture(scope="module")
def big_cifar(tmp_path_factory) -> Path:
    """A CIFAR-10 folder in the original format with PER_BATCH rows per batch, cut from the fixture images."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rows = np.concatenate([_load(n)[b"data"] for n in names])  # (120, 3072) uint8
    labels = np.concatenate([_load(n)[b"labels"] for n in names])
    folder = tmp_path_factory.mktemp("big") / "cifar-10-batches-py"
    folder.mkdir()
    for b, name in enumerate(names):
        idx = np.arange(b * PER_BATCH, (b + 1) * PER_BATCH)
        # image i is fixture image i % 120, shifted by i // 120 pixels: every row is different
        data = np.stack([np.roll(rows[i % len(rows)], 97 * (i // len(rows))) for i in idx])
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(labels[i % len(labels)]) for i in idx],
                         b"data": data}, f, protocol=2)
    return folder


def command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "extract", "--data-dir", str(data), "--weights", "none", "--out", str(out),
            "--batch-size", "8", "--checkpoint-every", "16", "--precision", "float32"]


def env(tmp_path: Path) -> dict:
    e = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home"), "PYTHONUNBUFFERED": "1"}
    e.pop("FEATURECACHE_TF_LOGS", None)
    return e


def run(cmd, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=300)


def start_and_stop(cmd, tmp_path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the command, wait until a checkpoint part is on disk, then send `sig`."""
    # Ctrl-C as in a terminal: a shell script's background jobs inherit SIGINT ignored (and Python keeps
    # it so), which would make this test depend on how the suite itself was started
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    try:
        while not list(partial_dir(out).glob("train-*.npz")):
            if proc.poll() is not None:
                pytest.fail("extract ended before writing a checkpoint:\n" + proc.stderr.read())
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint part after 120 s")
            time.sleep(0.02)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def reference(big_cifar, tmp_path_factory):
    """An uninterrupted run of the same command."""
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "ref.h5"
    r = run(command(big_cifar, out), tmp)
    assert r.returncode == 0, r.stderr
    assert "resuming" not in r.stderr
    return read_cache(out)


def assert_same_cache(a, b):
    for split in ("train", "test"):
        x, y = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.sources, y.sources)
        np.testing.assert_array_equal(x.features, y.features)  # bit for bit: same weights, same batches


def test_sigkill_then_the_same_command_resumes_to_the_uninterrupted_cache(big_cifar, reference, tmp_path):
    out = tmp_path / "features" / "c.h5"
    cmd = command(big_cifar, out)
    killed = start_and_stop(cmd, tmp_path, out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists(), "the run finished before it was killed: make the data bigger"
    parts = sorted(p.name for p in partial_dir(out).glob("*.npz"))
    assert parts and parts[0] == "train-00000.npz"

    # classify refuses the unfinished cache with a one-line hint
    with pytest.raises(UserError, match=r"incomplete .* re-run the same extract command to resume it"):
        read_cache(out)

    resumed = run(cmd, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "train: resuming at row " in resumed.stderr, resumed.stderr
    done = int(resumed.stderr.split("train: resuming at row ")[1].split()[0].replace(",", ""))
    assert done >= 16 and done % 16 == 0 and done < 5 * PER_BATCH
    assert f"wrote {out}: train {5 * PER_BATCH:,} x 512, test {PER_BATCH} x 512" in resumed.stdout
    assert not partial_dir(out).exists()
    assert_same_cache(read_cache(out), reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_exit_130_with_one_line_and_keep_checkpoints(big_cifar, reference, tmp_path, sig):
    out = tmp_path / "c.h5"
    cmd = command(big_cifar, out)
    stopped = start_and_stop(cmd, tmp_path, out, sig)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr
    last = stopped.stderr.splitlines()[-1]
    assert last == (f"interrupted: finished checkpoints are kept in {partial_dir(out)}; "
                    "run the same command again to resume"), stopped.stderr
    assert stopped.stderr.count("interrupted") == 1
    assert not out.exists() and list(partial_dir(out).glob("train-*.npz"))
    manifest = partial_dir(out) / "manifest.json"

    if sig == signal.SIGTERM:
        # resumed with another --batch-size: the checkpoint's batch size wins, so rows stay bit-identical
        r = CliRunner().invoke(cli, cmd[3:] + ["--batch-size", "32"])
        assert r.exit_code == 0, r.output
        assert "train: resuming at row" in r.stderr and ", batch 8," in r.stdout
        assert_same_cache(read_cache(out), reference)
    else:
        # other settings never resume someone else's checkpoints
        before = sorted(p.name for p in partial_dir(out).iterdir())
        r = CliRunner().invoke(cli, cmd[3:] + ["--seed", "1"])
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert "holds an interrupted extraction with other settings (seed 0 != 1)" in r.stderr.splitlines()[-1]
        assert sorted(p.name for p in partial_dir(out).iterdir()) == before and not out.exists()
        # a damaged manifest: the parts cannot be trusted, the run starts over and still gets it right
        manifest.write_text('{"identity": ')
        r = CliRunner().invoke(cli, cmd[3:])
        assert r.exit_code == 0, r.output
        assert "resuming" not in r.stderr
        assert_same_cache(read_cache(out), reference)
