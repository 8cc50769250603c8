"""featurecache's Python API (featurecache/api.py) on real files: caches written here, runs trained and
saved, photos extracted with random weights. Mistakes are one UserError in Python's terms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import featurecache as fc
from conftest import PHOTOS_FIXTURE, blob_cache
from featurecache.cache import Cache
from featurecache.errors import UserError


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A blob cache, and two lr runs of it in one reports folder: strong and weak regularisation."""
    root = tmp_path_factory.mktemp("api")
    cache = fc.load(blob_cache(root / "blobs.h5", spread=0.5))   # overlapping clusters: C matters
    reports = root / "reports"
    return cache, reports, [fc.train(cache, model="lr", out=reports, C=c, max_iter=100) for c in (1e-4, 1.0)]


def test_train_saves_a_run_whose_numbers_are_its_record(two_runs):
    cache, reports, runs = two_runs
    run = runs[1]
    record = json.loads(run.path.read_text())
    assert run.path.parent == reports.resolve() and run.model_path.is_file()
    assert run.accuracy == record["metrics"]["accuracy"] and run.model == "lr"
    assert record["hyperparameters"]["C"] == 1.0 and record["cache"]["path"] == str(cache.path)
    assert run.name == run.path.name[:-len("-run.json")] and run.name in repr(run)
    assert run.class_names == cache.class_names == ["class0", "class1", "class2"]
    proba = run.predict_proba(cache.test.features)
    assert proba.shape == (90, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.mean(proba.argmax(axis=1) == cache.test.labels) == pytest.approx(run.accuracy)


def test_load_run_reads_a_run_back_and_best_is_the_best_validation_accuracy(two_runs, capsys):
    cache, reports, runs = two_runs
    again = fc.load_run(runs[0].path)
    assert again.path == runs[0].path and again.accuracy == runs[0].accuracy
    best = max(runs, key=lambda r: r.val_accuracy)
    assert runs[0].val_accuracy != runs[1].val_accuracy
    assert fc.load_run("best", reports=reports, features=cache).path.name == best.path.name
    assert fc.load_run("best", reports=reports, features=cache.path).path.name == best.path.name
    assert f"run: {reports / best.path.name}" in capsys.readouterr().err   # which run was chosen, said


def test_train_takes_a_cache_path_and_load_reads_one(two_runs, tmp_path):
    cache, _, _ = two_runs
    loaded = fc.load(cache.path)
    assert isinstance(loaded, Cache) and loaded.train.features.shape == (300, 16)
    assert "train 300, test 90 rows x 16, 3 classes" in repr(loaded)
    run = fc.train(cache.path, model="knn", out=tmp_path)
    assert run.model == "knn" and run.path.parent == tmp_path and (tmp_path / "index.html").is_file()


@pytest.mark.parametrize("call, words", [
    (lambda c, t: fc.train(c, epoch=3), ["train()", "'epoch'", "epochs"]),
    (lambda c, t: fc.train(c, model="svm"), ["model='svm'", "'lr'"]),
    (lambda c, t: fc.extract(t / "nothing"), ["data_dir=", "does not exist"]),
    (lambda c, t: fc.extract(PHOTOS_FIXTURE, polling="max"), ["extract()", "'polling'", "pooling"]),
    (lambda c, t: fc.extract(PHOTOS_FIXTURE, out=t / "."), ["out=", "names no file"]),
    (lambda c, t: fc.load(t / "none.h5"), ["no feature cache at", "featurecache.extract"]),
    (lambda c, t: fc.train(t / "none.h5"), ["no feature cache at", "featurecache.extract"]),
    (lambda c, t: fc.load_run(t / "none-run.json"), ["no run record at", "'best'"]),
])
def test_mistakes_are_one_user_error_in_python_terms(two_runs, tmp_path, call, words):
    with pytest.raises(UserError) as e:
        call(two_runs[0], tmp_path)
    message = e.value.message
    assert "\n" not in message and " --" not in message, message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.slow
def test_predict_names_what_it_skipped_and_refuses_when_nothing_is_an_image(tmp_path):
    cache = fc.extract(PHOTOS_FIXTURE, weights="none", out=tmp_path / "photos.h5")
    assert cache.path == tmp_path / "photos.h5" and cache.train.features.shape == (15, 512)
    run = fc.train(cache, out=tmp_path / "reports")
    photos = tmp_path / "new"
    photos.mkdir()
    shutil.copy(PHOTOS_FIXTURE / "test" / "cats" / "cat.4001.jpg", photos / "a.jpg")
    (photos / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        predictions = run.predict(photos)
    assert [p["image"] for p in predictions] == [str(photos / "a.jpg")]
    assert predictions[0]["class"] in ("cats", "dogs") and len(predictions.skipped) == 1
    assert predictions.skipped[0]["file"].endswith("notes.txt")
    assert run.predict([photos / "a.jpg"])[0]["probability"] == predictions[0]["probability"]
    (photos / "a.jpg").unlink()
    with pytest.raises(UserError, match="none of the 1 file"):
        run.predict(photos)
