"""Issue 5: interrupted extractions resume to the very cache an uninterrupted run gives.

Real `python -m extract` processes are killed part-way (SIGKILL, SIGTERM,
SIGINT) once a checkpoint part is on disk. The data is a CIFAR-10-format
folder made in tmp_path from the real fixture images (tiled and shifted so
every row differs), big enough that a run takes several seconds.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from click.testing import CliRunner

from conftest import BIG_CIFAR_PER_BATCH as PER_BATCH
from conftest import ROOT
from conftest import assert_identical_cache as assert_same_cache
from conftest import big_cifar_command as command
from conftest import process_env as env
from conftest import run_process as run
from featurecache.cache import partial_dir, read_cache
from extract.cli import cli
from featurecache.errors import UserError

pytestmark = pytest.mark.slow


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
