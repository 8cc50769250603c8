"""compare's worker process (classify.workflows.ahead), with real processes: runs trained there equal
runs trained alone, figures included; a worker killed part-way leaves its runs to the main thread;
Ctrl-C to the whole process group stops both with one line; a compare killed outright takes its
worker with it."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, Run, alone_run, assert_rows_match_their_runs, assert_same_run, blob_cache, table_rows

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


def compare(args: list) -> Run:
    """`featurecache compare ARGS` in a session of its own."""
    return Run("featurecache", ["compare", *args], new_session=True)


def worker_of(run: Run) -> int:
    """The pid of the compare's worker process, once it has said it started one."""
    run.wait_for("train ahead in a worker process")
    found = children(run.proc.pid)
    assert len(found) == 1, found
    return found[0]


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
    rc, err = compare(["--features", cache, "--model", "lr", "--model", "rf", "--n-estimators", "50",
                       "--out-dir", out]).finish()
    assert rc == 0, err
    assert "compare: lr, rf train ahead in a worker process" in err
    for model in ("lr", "rf"):
        b = alone_run(cache, model, tmp_path / f"alone-{model}", *(["--n-estimators", "50"] if model == "rf" else []))
        a = json.loads(next(out.glob(f"*-{model}-*-run.json")).read_text())
        assert_same_run(a, b)
        assert a["history"] == b["history"] and a["chosen"] == b["chosen"]
        folder_a, folder_b = out / a["folder"], tmp_path / f"alone-{model}" / b["folder"]
        for kind in ("confusion", "curves", "reliability"):   # drawn in the worker, the same pixels
            name = f"{a['folder']}-{kind}.png"
            assert (folder_a / name).read_bytes() == (folder_b / name).read_bytes(), kind
        assert (folder_a / f"{a['folder']}-report.txt").read_text() == (folder_b / f"{b['folder']}-report.txt").read_text()
    assert_rows_match_their_runs(out)   # each model file written from the worker's bytes is the one its record names


def test_a_worker_killed_part_way_leaves_its_runs_to_the_main_thread(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    run = compare(["--features", tiny_cache, "--model", "lr", "--model", "rf", "--n-estimators", "3000", "--out-dir", out])
    worker = worker_of(run)
    os.kill(worker, signal.SIGKILL)
    rc, err = run.finish()
    assert rc == 0, err
    assert "was not trained ahead: the worker process ended early (killed by SIGKILL); training it here" in err, err
    assert "Traceback" not in err
    assert sorted(r["model"] for r in table_rows(out)) == ["lr", "rf"]
    assert_rows_match_their_runs(out)


def test_ctrl_c_stops_the_compare_and_its_worker_with_one_line(tiny_cache, tmp_path):
    out = tmp_path / "reports"
    run = compare(["--features", tiny_cache, "--model", "lr", "--model", "mlp", "--model", "rf", *BUSY_RF, *LONG_MLP,
                   "--out-dir", out])
    worker = worker_of(run)
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
    run = compare(["--features", tiny_cache, "--model", "rf", "--model", "mlp", *BUSY_RF, *LONG_MLP,
                   "--out-dir", tmp_path / "reports"])
    worker = worker_of(run)
    time.sleep(1)
    assert alive(worker)
    run.proc.kill()
    run.finish()
    assert gone(worker), "the worker outlived its compare"


WORKER_SCRIPT = """
import json, sys
from conftest import blob_cache
from classify.options import make_config
from classify.training.train import load_for_training
from classify.workflows.ahead import NotAhead, train_ahead

cache = blob_cache(__import__("pathlib").Path(sys.argv[1]))
cfgs = [make_config(model="lr", features=str(cache), adversarial="fgsm"),   # fails: the blobs have no pictures
        make_config(model="rf", features=str(cache), n_estimators=30),
        make_config(model="mlp", features=str(cache))]
runs = [(load_for_training(cache, cfg), cfg) for cfg in cfgs]
ahead = train_ahead(runs, process=True)
failed, (rf, figures) = ahead[0].result(timeout=120), ahead[1].result(timeout=120)
print(json.dumps({"where": ahead.where, "indices": sorted(ahead), "failed": repr(failed),
                  "tensorflow": "tensorflow" in sys.modules, "rf_accuracy": rf.metrics["accuracy"],
                  "rf_format": rf.trained.format, "figures": sorted(figures.png),
                  "proba_again": bool((rf.trained.predict_proba(runs[1][0].test.features) == rf.proba).all())}))
"""


def test_a_run_that_fails_in_the_worker_comes_back_to_be_trained_here(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "blobs.h5")], cwd=ROOT / "tests",
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["where"] == "a worker process" and out["indices"] == [0, 1]   # the MLP stays in the main thread
    assert out["failed"] == "NotAhead(why=None)"    # no reason given: the main thread's own try raises the error
    assert not out["tensorflow"]                    # the worker trained the forest without it
    assert out["rf_format"] == "forest" and out["rf_accuracy"] > 0.9 and "confusion" in out["figures"]
    assert out["proba_again"]   # the model rebuilt from the worker's bytes predicts what it predicted there
