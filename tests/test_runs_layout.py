"""Per-run folders and the typed run record.

A run writes its figures, reports and model into reports/<name>/; the top of the reports folder
holds only the page, best.json, the comparison, the run records and the latest-run pointers. A run
written flat by the code from before per-run folders (tests/fixtures/flat-run: `python -m classify
--model lr` on the CIFAR-10 fixture, --weights none, at commit 91d2df4) still loads, predicts and shows
on the page beside new runs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from classify.commands.report import cli as report_cli
from classify.runs.record import FORMAT_VERSION, SUFFIX, RunRecord, RunRecordError
from classify.runs.saved import load_run
from classify.commands import compare
from conftest import PHOTOS_FIXTURE, ROOT
from featurecache.files import Staged

FLAT = ROOT / "tests" / "fixtures" / "flat-run"
FLAT_RECORD = FLAT / "cifar10-vgg16-gap-32px-lr-7601d56b-run.json"
# what the top of a reports folder holds besides the run records and latest-run pointers
SHARED = {"index.html", "index.lock", "best.json", "comparison.csv", "comparison.md", "comparison.png", "comparison.lock"}


@pytest.fixture(scope="module")
def reports(tiny_cache, tmp_path_factory) -> Path:
    """`compare` of lr (C 1) and rf on the fixture cache: two runs in one reports folder."""
    out = tmp_path_factory.mktemp("layout") / "reports"
    r = CliRunner().invoke(compare.cli, ["--features", str(tiny_cache), "--model", "lr", "--model", "rf", "--C", "1",
                                         "--n-estimators", "20", "--out-dir", str(out)])
    assert r.exit_code == 0 and r.exception is None, r.output
    return out


def page_refs(folder: Path) -> list[str]:
    """Every file the page links to or shows (anchors left out), as paths from the page."""
    text = (folder / "index.html").read_text()
    return [unquote(ref) for ref in re.findall(r'(?:href|src)="([^"#][^"]*)"', text)]


def test_a_run_writes_its_files_into_its_own_folder(reports):
    records = sorted(reports.glob("*" + SUFFIX))
    assert len(records) == 2
    names = {p.name.removesuffix(SUFFIX) for p in records}
    top = {p.name for p in reports.iterdir()}
    assert {p.name for p in reports.iterdir() if p.is_dir()} == names   # one folder per run, nothing else
    assert {n for n in top - names if not n.endswith((SUFFIX, "-latest.json"))} <= SHARED
    for path in records:
        record = RunRecord.load(path)
        assert record.format_version == FORMAT_VERSION and record.folder == path.name.removesuffix(SUFFIX)
        written = {key: Path(value) for key, value in record.files.items() if key != "run"}
        assert {"confusion", "report_txt", "report_json", "model"} <= set(written)
        for key, value in written.items():
            assert value.parent == reports / record.folder and record.located(key) == value and value.is_file(), key
        assert record.located(record.model_file) == written["model"]
        run = load_run(path)
        assert run.model_path == written["model"]
        assert run.predict_proba(np.zeros((3, 512))).shape == (3, 10)


def test_a_flat_run_from_before_folders_loads_and_round_trips():
    on_disk = json.loads(FLAT_RECORD.read_text())
    record = RunRecord.load(FLAT_RECORD)
    assert on_disk["format_version"] == 1 and record.folder == "" and "folder" not in on_disk
    assert record.located("confusion") == FLAT / "cifar10-vgg16-gap-32px-lr-7601d56b-confusion.png"
    assert {k: v for k, v in record.to_dict().items() if k != "folder"} == on_disk   # nothing lost, nothing changed
    assert record.metrics.accuracy_ci == tuple(on_disk["metrics"]["accuracy_ci"])
    assert record.validation_accuracy == on_disk["metrics"]["val_accuracy"]
    run = load_run(FLAT_RECORD)
    proba = run.predict_proba(np.random.default_rng(0).normal(size=(4, 512)))
    assert proba.shape == (4, 10) and np.allclose(proba.sum(axis=1), 1)


def test_a_flat_run_shows_on_the_page_and_predicts_beside_new_runs(reports, tmp_path):
    from classify.commands.predict import cli as predict_cli

    mixed = tmp_path / "reports"
    shutil.copytree(reports, mixed)
    for p in FLAT.iterdir():
        shutil.copy(p, mixed / p.name)
    r = CliRunner().invoke(report_cli, ["--out-dir", str(mixed)])
    assert r.exit_code == 0 and "(3 run(s))" in r.stdout and "skipped" not in r.stderr, r.output
    refs = page_refs(mixed)
    assert FLAT_RECORD.name.replace(SUFFIX, "-confusion.png") in refs   # the flat run's figure, beside its record
    assert sum("/" in ref for ref in refs) >= 2 * 3                     # the new runs' files, in their folders
    assert all((mixed / ref).is_file() for ref in refs), [ref for ref in refs if not (mixed / ref).is_file()]
    assert 'id="run-cifar10-vgg16-gap-32px-lr-7601d56b"' in (mixed / "index.html").read_text()
    images = sorted((PHOTOS_FIXTURE / "test" / "dogs").iterdir())[:2]
    r = CliRunner().invoke(predict_cli, ["--run", str(mixed / FLAT_RECORD.name), *map(str, images), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    predictions = json.loads(r.stdout)["predictions"]
    assert len(predictions) == 2 and all(p["class"] in RunRecord.load(FLAT_RECORD).class_names for p in predictions)


def test_figures_left_in_a_runs_folder_appear_on_the_page(reports, tmp_path):
    out = tmp_path / "reports"
    shutil.copytree(reports, out)
    record = RunRecord.load(next(out.glob("*-lr-*" + SUFFIX)))
    figure = out / record.folder / f"{record.folder}-robustness-0123abcd.png"   # where robustness writes by default
    shutil.copy(record.located("confusion"), figure)
    assert CliRunner().invoke(report_cli, ["--out-dir", str(out)]).exit_code == 0
    text = (out / "index.html").read_text()
    assert "<h2>Robustness</h2>" in text and f"{record.folder}/{figure.name}" in page_refs(out)


def test_a_failed_write_removes_the_run_folder_it_made_and_keeps_one_that_was_there(tmp_path):
    with pytest.raises(RuntimeError), Staged() as staged:
        staged.aside(tmp_path / "new" / "a.txt").write_text("a")
        raise RuntimeError("the run failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "kept.txt").write_text("kept")
    with pytest.raises(RuntimeError), Staged() as staged:
        staged.aside(tmp_path / "old" / "a.txt").write_text("a")
        raise RuntimeError("the run failed")
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["kept.txt"]


@pytest.mark.parametrize("change, problem", [
    ({"format_version": FORMAT_VERSION + 1}, f"format_version {FORMAT_VERSION + 1}, from a newer featurecache"),
    ({"folder": "../elsewhere"}, "folder '../elsewhere' is not a folder name beside the record"),
    ({"metrics": {"accuracy": 0.5, "accuracy_ci": [0.4]}}, "metrics.accuracy_ci has 1 values, not 2"),
    ({"calibration": {"temperature": "warm"}}, "calibration.temperature is \"warm\", not a number"),
    ({"config": {"seed": "zero"}}, "config.seed is \"zero\", not a whole number"),
    ({"model": None}, "model is null, not a string"),
], ids=["newer", "folder", "interval", "calibration", "config", "model"])
def test_a_record_of_the_wrong_shape_is_one_error_naming_the_field(change, problem, tmp_path):
    path = tmp_path / ("x" + SUFFIX)
    path.write_text(json.dumps({**json.loads(FLAT_RECORD.read_text()), **change}))
    with pytest.raises(RunRecordError) as caught:
        RunRecord.load(path)
    assert caught.value.problem.startswith(problem) and str(path) in caught.value.message


def test_fields_a_reader_does_not_know_are_written_back_unchanged(tmp_path):
    data = {**json.loads(FLAT_RECORD.read_text()), "future_setting": {"eps": 4}}
    data["metrics"] = {**data["metrics"], "robust_accuracy": 0.25}
    record = RunRecord.from_dict(data)
    assert record.extra == {"future_setting": {"eps": 4}} and record.metrics.extra == {"robust_accuracy": 0.25}
    again = json.loads(record.save(tmp_path / ("y" + SUFFIX)).read_text())
    assert again["future_setting"] == {"eps": 4} and again["metrics"]["robust_accuracy"] == 0.25
    assert RunRecord.load(tmp_path / ("y" + SUFFIX)).metrics.numbers()["robust_accuracy"] == 0.25
