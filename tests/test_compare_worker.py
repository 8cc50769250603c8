"""compare's worker process (classify.workflows.ahead), with real processes: runs trained there equal
runs trained alone, figures included; a worker killed part-way leaves its runs to the main thread;
Ctrl-C to the whole process group stops both with one line; a compare killed outright takes its
worker with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from classify.cli import cli as classify_cli
from conftest import ROOT, assert_rows_match_their_runs, blob_cache, invoke, table_rows

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker process is forked on Linux only")
BUSY_RF = ["--n-estimators", "20000"]   # a forest that keeps the worker busy for many seconds
LONG_MLP = ["--epochs", "2000", "--patience", "2000", "--hidden", "64"]


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Compare:
    """`featurecache compare` in a session of its own, stderr collected as it comes."""

    def __init__(self, args: list):
        self.proc = subprocess.Popen([sys.executable, "-m", "featurecache", "compare", *map(str, args)], cwd=ROOT,
                                     text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None, "".join(self.err)
            assert time.monotonic() < end, f"no {text!r} after {timeout} s: " + "".join(self.err)
            time.sleep(0.05)

    def worker(self) -> int:
        self.wait_for("train ahead in a worker process")
        found = children(self.proc.pid)
        assert len(found) == 1, found
        return found[0]

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        time.sleep(0.2)
        return rc, "".join(self.err)


def gone(pid: int, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def test_runs_trained_in_the_worker_equal_runs_trained_alone(tmp_path):
    cache = blob_cache(tmp_path / "blobs.h5", n_train=400, n_test=120, spread=1.0)
    out = tmp_path / "compare"
    rc, err = Compare(["--features", cache, "--model", "lr", "--model", "rf", "--n-estimators", "50",
                       "--out-dir", out]).finish()
    assert rc == 0, err
    assert "compare: lr, rf train ahead in a worker process" in err
    for model in ("lr", "rf"):
        alone = tmp_path / f"alone-{model}"
        args = ["--model", model, "--features", cache, "--out-dir", alone] + (["--n-estimators", "50"] if model == "rf" else [])
        assert invoke(classify_cli, args).exit_code == 0
        a = json.loads(next(out.glob(f"*-{model}-*-run.json")).read_text())
        b = json.loads(next(alone.glob(f"*-{model}-*-run.json")).read_text())
        assert a["run_id"] == b["run_id"] and a["history"] == b["history"] and a["chosen"] == b["chosen"]
        for key in ("accuracy", "accuracy_ci", "macro_f1", "ece", "val_accuracy"):
            assert a["metrics"][key] == b["metrics"][key], (model, key)
        folder_a, folder_b = out / a["folder"], alone / b["folder"]
        for kind in ("confusion", "curves", "reliability"):   # drawn in the worker, the same pixels
            name = f"{a['folder']}-{kind}.png"
            assert (folder_a / name).read_bytes() == (folder_b / name).read_bytes(), kind
        assert (folder_a / f"{a['folder']}-report.txt").read_text() == (folder_b / f"{b['folder']}-report.txt").read_text()
    assert_rows_match_their_runs(out)   # each model file written from the worker's bytes is the one its record names


def test_a_worker_killed_part_way_leaves_its_runs_to_the_main_thread(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    run = Compare(["--features", tiny_cache, "--model", "lr", "--model", "rf", "--n-estimators", "3000", "--out-dir", out])
    worker = run.worker()
    os.kill(worker, signal.SIGKILL)
    rc, err = run.finish()
    assert rc == 0, err
    assert "was not trained ahead: the worker process ended early (killed by SIGKILL); training it here" in err, err
    assert "Traceback" not in err
    assert sorted(r["model"] for r in table_rows(out)) == ["lr", "rf"]
    assert_rows_match_their_runs(out)


def test_ctrl_c_stops_the_compare_and_its_worker_with_one_line(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    run = Compare(["--features", tiny_cache, "--model", "lr", "--model", "mlp", "--model", "rf", *BUSY_RF, *LONG_MLP,
                   "--out-dir", out])
    worker = run.worker()
    run.wait_for("compare: mlp on")   # lr written, the forest growing in the worker, epochs under way here
    time.sleep(3)
    assert alive(worker)
    os.killpg(run.proc.pid, signal.SIGINT)   # what a terminal's Ctrl-C does: the whole process group
    rc, err = run.finish()
    assert rc == 130, err
    assert "Traceback" not in err and sum(line.startswith("Error") for line in err.splitlines()) == 1, err
    assert err.strip().splitlines()[-1].startswith("Error: interrupted (SIGINT)")
    assert gone(worker), "the worker outlived its compare"
    assert [r["model"] for r in table_rows(out)] == ["lr"]
    assert_rows_match_their_runs(out)
    assert not list(out.glob("*-rf-*")) and not list(out.glob("*-mlp-*")) and not list(out.rglob(".*tmp*"))


def test_a_compare_killed_outright_takes_its_worker_with_it(tiny_cache, tmp_path):
    run = Compare(["--features", tiny_cache, "--model", "rf", "--model", "mlp", *BUSY_RF, *LONG_MLP,
                   "--out-dir", tmp_path / "reports"])
    worker = run.worker()
    time.sleep(1)
    assert alive(worker)
    run.proc.kill()
    run.finish()
    assert gone(worker), "the worker outlived its compare"
