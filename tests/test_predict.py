"""predict: a saved run classifies new photos exactly as classify did on the same images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PHOTOS_FIXTURE, classify_run, photo_cache


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """Real photos -> cache (random VGG16) -> saved LR run."""
    tmp = tmp_path_factory.mktemp("predict")
    cache = photo_cache(tmp)
    run = classify_run(cache, tmp / "reports")
    assert len(list((tmp / "reports").glob("*-run.json"))) == 1
    return cache, run


def invoke(args):
    from predict.cli import cli

    return CliRunner().invoke(cli, args)


def test_predict_agrees_with_the_classify_run_on_its_test_images(photo_run):
    from classify.saved import load_run
    from featurecache.cache import read_cache

    cache_path, run_path = photo_run
    cache, run = read_cache(cache_path), load_run(run_path)
    expected = run.predict_proba(cache.test.features)  # (n, C) from the cached features

    result = invoke(["--run", str(run_path), str(PHOTOS_FIXTURE / "test"), "--json"])
    assert result.exit_code == 0, result.output
    got = {str(Path(p["image"]).relative_to(PHOTOS_FIXTURE)): p for p in json.loads(result.output)["predictions"]}
    assert set(got) == set(cache.test.sources)
    for source, proba in zip(cache.test.sources, expected):
        p = got[source]
        assert p["class"] == run.class_names[int(np.argmax(proba))], source
        assert p["probability"] == pytest.approx(float(proba.max()), abs=0.02)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_prints_one_line_per_image_and_skips_broken_files(photo_run, tmp_path):
    _, run_path = photo_run
    good = sorted((PHOTOS_FIXTURE / "test" / "dogs").iterdir())[:2]
    broken = PHOTOS_FIXTURE / "train" / "cats" / "zz-broken.jpg"
    result = invoke(["--run", str(run_path), *map(str, good), str(broken)])
    assert result.exit_code == 0, result.output
    lines = [l for l in result.stdout.splitlines() if l.strip()]
    assert len(lines) == 2
    for line, path in zip(lines, good):
        image, cls, prob = line.rsplit(None, 2)
        assert image == str(path) and cls in ("cats", "dogs") and 0.5 <= float(prob) <= 1.0
    assert "skipped 1 unreadable file" in result.stderr and "zz-broken.jpg" in result.stderr


def test_predict_bad_input_is_one_line(photo_run, tmp_path):
    _, run_path = photo_run
    result = invoke(["--run", str(run_path), str(tmp_path / "nope.jpg")])
    assert result.exit_code != 0 and "does not exist" in result.output and "Traceback" not in result.output

    (tmp_path / "empty").mkdir()
    result = invoke(["--run", str(run_path), str(tmp_path / "empty")])
    assert result.exit_code != 0 and "holds no image files" in result.output

    fake = tmp_path / "fake-run.json"
    fake.write_text(json.dumps({"model": "lr"}))
    result = invoke(["--run", str(fake), str(PHOTOS_FIXTURE / "test")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
