"""Run records that do not match their schema: listed as skipped with what is wrong, never a crash
of the report or of a later classify in the same folder (classify.runs.record.RunRecord.load); and a run
joined back to a cache that is no longer the one it used: refused (classify.runs.identity.run_cache)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from classify.commands import report
from classify.cli import cli as classify_cli
from classify.runs.identity import run_cache, run_cache_problem
from classify.runs.record import RunRecord, RunRecordError as RecordError
from classify.runs.saved import load_run
from conftest import CIFAR_FIXTURE, ROOT, classify_run, run_extract
from featurecache.errors import UserError

# (what is changed in a real record, a few words of what the skip line says)
BREAKAGES = [
    (("metrics", "accuracy", None), "metrics.accuracy is null"),
    (("metrics", "accuracy", "x"), "metrics.accuracy is \"x\""),
    (("metrics", "accuracy", 7.5), "metrics.accuracy is 7.5"),
    (("metrics", None, "fine"), "metrics is a string"),
    (("config", None, "x"), "config is a string"),
    (("cache", "attrs", "x"), "cache.attrs is a string"),
    (("hyperparameters", None, [1, 2]), "hyperparameters is a list"),
    (("files", None, ["a"]), "files is a list"),
    (("class_names", None, []), "class_names is not a list of names"),
]


@pytest.fixture(scope="module")
def one_run(tiny_cache, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    classify_run(tiny_cache, folder, "lr")
    return folder


def broken_copy(one_run: Path, folder: Path, change) -> tuple[Path, Path]:
    """The run's folder copied to `folder`, plus a second record there with one field of the wrong type."""
    shutil.copytree(one_run, folder)
    good = next(folder.glob("*-run.json"))
    record = json.loads(good.read_text())
    key, inner, value = change
    if inner is None:
        record[key] = value
    else:
        record[key][inner] = value
    bad = folder / "broken-run.json"
    bad.write_text(json.dumps(record))
    return good, bad


@pytest.mark.parametrize("change, words", BREAKAGES, ids=[w for _, w in BREAKAGES])
def test_a_record_of_the_wrong_types_is_skipped_with_its_path_and_what_is_wrong(one_run, tmp_path, change, words):
    good, bad = broken_copy(one_run, tmp_path / "reports", change)
    r = subprocess.run([sys.executable, "-m", "featurecache", "report", "--out-dir", str(tmp_path / "reports")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "(1 run(s))" in r.stdout
    assert f"skipped: {bad}: {words}" in r.stderr, r.stderr
    assert words in (tmp_path / "reports" / "index.html").read_text().replace("&quot;", '"')
    with pytest.raises(RecordError, match="is not a run record classify can read"):
        RunRecord.load(bad)
    assert RunRecord.load(good).metrics.accuracy >= 0


def test_a_later_classify_in_a_folder_with_a_broken_record_still_writes_its_page(one_run, tiny_cache, tmp_path):
    _, bad = broken_copy(one_run, tmp_path / "reports", ("metrics", "accuracy", None))
    result = CliRunner().invoke(classify_cli, ["--model", "lr", "--C", "0.5", "--features", str(tiny_cache),
                                               "--out-dir", str(tmp_path / "reports")])
    assert result.exit_code == 0 and result.exception is None, result.output
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "2 run(s)" in page and "broken-run.json: metrics.accuracy is null" in page


def test_loading_a_broken_record_is_one_line(one_run, tmp_path):
    _, bad = broken_copy(one_run, tmp_path / "reports", ("cache", "attrs", "x"))
    r = subprocess.run([sys.executable, "-m", "featurecache", "predict", "--run", str(bad), str(ROOT / "tests" / "fixtures")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("Error: ") and "cache.attrs is a string" in lines[0]
    with pytest.raises(RecordError):
        load_run(bad)


def test_the_report_command_lists_unparseable_files_too(tmp_path):
    (tmp_path / "notes-run.json").write_text("{not json")
    r = CliRunner().invoke(report.cli, ["--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert f"skipped: {tmp_path / 'notes-run.json'}: not JSON" in r.stderr


# --------------------------------------------------------------------------- a run joined back to its cache


@pytest.fixture
def run_on_a_replaced_cache(tiny_cache, tmp_path) -> tuple[Path, Path]:
    """An lr run on a copy of the fixture cache, then that cache re-extracted over the same path with
    --seed 1 --force (as the issue did): (run record, cache path)."""
    cache = tmp_path / "features" / "c.h5"
    cache.parent.mkdir()
    shutil.copy(tiny_cache, cache)
    record = classify_run(cache, tmp_path / "reports", "lr")
    again = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--seed", "1", "--force",
                         "--out", str(cache)])
    assert again.exit_code == 0, again.output
    return record, cache


def test_robustness_refuses_a_run_whose_cache_was_re_extracted(run_on_a_replaced_cache):
    record, cache = run_on_a_replaced_cache
    r = subprocess.run([sys.executable, "-m", "featurecache", "robustness", "--run", str(record), "--limit", "4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith("robustness: ")]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert lines[0].startswith(f"Error: the feature cache at {cache} is not the one {record.name} was trained on")
    assert "cache id" in lines[0] and "re-run classify" in lines[0]
    assert not list(record.parent.glob("*-robustness-*")), "nothing is written for a refused run"


def test_the_report_says_a_runs_cache_was_replaced(run_on_a_replaced_cache):
    record, cache = run_on_a_replaced_cache
    r = CliRunner().invoke(report.cli, ["--out-dir", str(record.parent)])
    assert r.exit_code == 0, r.output
    text = (record.parent / "index.html").read_text()
    assert "the file at this path is not this cache now: replaced: its cache id is" in text


def test_the_check_passes_on_the_runs_own_cache_and_names_a_missing_one(tiny_cache, tmp_path):
    record_path = classify_run(tiny_cache, tmp_path / "reports", "lr")
    record = RunRecord.load(record_path)
    opened = run_cache(record, record_path)
    assert opened.path == tiny_cache and run_cache_problem(record) is None
    opened.close()
    record.cache.path = str(tmp_path / "gone.h5")
    with pytest.raises(UserError, match="gone.h5 that .* was trained on is gone; re-extract it"):
        run_cache(record, record_path)
