"""Issue 12: two extracts on one cache, a killed lock holder, and full disks, with real processes.

The data is the tiled CIFAR-10 folder of test_extract_resume (500 train + 100 test rows, a few
seconds of work in parts of 16 rows).
"""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from featurecache.cache import partial_dir, read_cache
from conftest import ROOT
from conftest import assert_identical_cache as assert_same_cache
from conftest import big_cifar_command as command
from conftest import process_env as env
from conftest import run_process as run

pytestmark = pytest.mark.slow


def start(cmd, tmp_path, **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def wait_for_part(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(partial_dir(out).glob("train-*.npz")):
        if proc.poll() is not None:
            pytest.fail("extract ended before writing a checkpoint:\n" + proc.stderr.read())
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint part after {timeout} s")
        time.sleep(0.02)


def test_two_extracts_on_one_cache_both_succeed_and_build_it_once(big_cifar, reference, tmp_path):
    out = tmp_path / "f.h5"
    cmd = command(big_cifar, out)
    first = start(cmd, tmp_path)
    log = tmp_path / "second.err"
    try:
        wait_for_part(first, out)
        first.send_signal(signal.SIGSTOP)  # hold the first mid-run, lock in hand, until the second waits
        with open(log, "w") as err:
            second = subprocess.Popen(cmd, cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE, stderr=err, text=True)
            deadline = time.monotonic() + 120
            while "waiting for process" not in log.read_text():
                assert second.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            first.send_signal(signal.SIGCONT)
            a_out, a_err = first.communicate(timeout=300)
            b_out, _ = second.communicate(timeout=300)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    b_err = log.read_text()
    assert first.returncode == 0, a_err
    assert second.returncode == 0, b_err
    for text in (a_err, b_err):
        assert "Traceback" not in text
    assert f"waiting for process {first.pid}, which is writing {out}" in b_err
    assert "already up to date" in b_out and "wrote" in a_out
    assert_same_cache(read_cache(out), reference)
    assert not partial_dir(out).exists()


def test_no_wait_refuses_at_once_naming_the_writer(big_cifar, tmp_path):
    out = tmp_path / "f.h5"
    cmd = command(big_cifar, out)
    first = start(cmd, tmp_path)
    try:
        wait_for_part(first, out)
        first.send_signal(signal.SIGSTOP)  # still writing, lock in hand, for as long as the check takes
        second = run(cmd + ["--no-wait"], tmp_path)
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        first.wait()
    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and f"being written by another extract (process {first.pid})" in lines[-1]
    assert "Traceback" not in second.stderr


def test_a_lock_left_by_a_killed_process_blocks_nothing(big_cifar, reference, tmp_path):
    out = tmp_path / "f.h5"
    cmd = command(big_cifar, out)
    first = start(cmd, tmp_path)
    wait_for_part(first, out)
    first.kill()  # SIGKILL: no cleanup at all, the lock file and the pid file stay behind
    first.wait()
    assert Path(str(out) + ".lock").exists()
    again = run(cmd, tmp_path)  # would hang (and hit run's timeout) if the stale lock blocked it
    assert again.returncode == 0, again.stderr
    assert "waiting" not in again.stderr and "train: resuming at row" in again.stderr
    assert_same_cache(read_cache(out), reference)


def limited(kbytes: int):
    """preexec_fn: a file-size limit in the child (Python ignores SIGXFSZ, so writes fail with EFBIG)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kbytes * 1024, resource.RLIM_INFINITY))
    return apply


def one_error_line(p: subprocess.CompletedProcess | subprocess.Popen, stderr: str) -> str:
    assert p.returncode == 1, stderr
    assert "Traceback" not in stderr and "Segmentation" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, stderr
    return lines[-1]


def test_a_full_disk_during_checkpoints_is_one_line_and_leaves_no_temporary_file(big_cifar, tmp_path):
    out = tmp_path / "f.h5"
    p = start(command(big_cifar, out), tmp_path, preexec_fn=limited(10))  # a part is ~33 KB
    _, err = p.communicate(timeout=300)
    line = one_error_line(p, err)
    assert "no room to write in" in line and str(partial_dir(out)) in line and "File too large" in line
    assert not list(partial_dir(out).glob("*.tmp*")) and not list(partial_dir(out).glob(".*"))
    assert not out.exists()


def test_a_full_disk_at_assembly_keeps_the_parts_and_a_rerun_finishes_the_same_cache(big_cifar, reference, tmp_path):
    out = tmp_path / "f.h5"
    cmd = command(big_cifar, out)
    p = start(cmd, tmp_path, preexec_fn=limited(200))  # every part fits, the 1.2 MB cache does not
    _, err = p.communicate(timeout=300)
    line = one_error_line(p, err)
    assert "no room to write in" in line and "MB more are needed" in line and "finished parts are kept" in line
    assert not out.exists() and len(list(partial_dir(out).glob("*.npz"))) >= 30
    again = run(cmd, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "every row resumed from checkpoints" in again.stdout
    assert_same_cache(read_cache(out), reference)
