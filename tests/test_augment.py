"""Issue 16: augmented feature caches, several views of each training image extracted once.

Real extractions of the fixture CIFAR-10 images (random VGG16 weights, float32), real HDF5 caches,
real classify runs; bad options are checked through the CLIs' one-line errors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CIFAR_FIXTURE, error_line, invoke_extract
from featurecache.augment import check_settings, view_seeds
from featurecache.cache import partial_dir, read_cache

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--data-dir", CIFAR_FIXTURE, "--weights", "none", "--precision", "float32", "--limit", "32",
        "--batch-size", "8", "--checkpoint-every", "8"]


def extract(out: Path, *extra) -> Path:
    r = invoke_extract(*BASE, "--out", out, *extra)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    """A plain cache, and two flip+crop caches (2 train views, 1 test view) made by the same command."""
    d = tmp_path_factory.mktemp("augment")
    aug = ("--augment", "flip,crop", "--views", "2", "--test-views", "1")
    return {"plain": extract(d / "plain.h5"), "aug": extract(d / "aug.h5", *aug),
            "again": extract(d / "again.h5", *aug)}


def arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ("train/features", "train/view_features", "test/features",
                                               "test/view_features") if name in f}


def test_layout_and_attributes(caches):
    cache = read_cache(caches["aug"])
    assert cache.train.views.shape == (32, 2, cache.train.features.shape[1])
    assert cache.test.views.shape == (20, 1, cache.test.features.shape[1])
    assert (cache.attrs["augment"], cache.attrs["views"], cache.attrs["test_views"]) == ("flip,crop", 2, 1)
    assert read_cache(caches["plain"]).train.views is None


def test_same_command_gives_bit_identical_views(caches):
    a, b = arrays(caches["aug"]), arrays(caches["again"])
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    # the views are not copies of the original: crop moved pixels
    assert not np.allclose(a["train/view_features"][:, 0], a["train/features"])


def test_train_features_equal_a_plain_extract(caches):
    assert np.array_equal(arrays(caches["aug"])["train/features"], arrays(caches["plain"])["train/features"])
    assert np.array_equal(arrays(caches["aug"])["test/features"], arrays(caches["plain"])["test/features"])


@pytest.fixture(scope="module")
def extractor():
    from featurecache.extractor import Extractor

    e = Extractor("vgg16", "gap", 32, "none", 0, "float32", native_size=32)
    return e


def fixture_images(n: int = 16) -> np.ndarray:
    from extract.datasets import load_dataset

    data = load_dataset(str(CIFAR_FIXTURE), 32, n, 0.2, 0)
    return data.splits["train"].read(0, n).images  # (n, 32, 32, 3) uint8


def test_views_depend_on_seed_row_and_view_not_on_the_batch(extractor):
    images = fixture_images()
    settings = check_settings("flip,crop,rotate,color,zoom", 2, 30, None)
    rows = np.arange(16)
    first = extractor.views(images, view_seeds(0, "train", rows, 0), settings)
    assert np.array_equal(first, extractor.views(images, view_seeds(0, "train", rows, 0), settings))
    # rows 5..9 alone (another batch) draw the same views as in the full batch
    assert np.array_equal(first[5:9], extractor.views(images[5:9], view_seeds(0, "train", rows[5:9], 0), settings))
    other_seed = extractor.views(images, view_seeds(1, "train", rows, 0), settings)
    other_view = extractor.views(images, view_seeds(0, "train", rows, 1), settings)
    for other in (other_seed, other_view):
        differs = np.linalg.norm(first - other, axis=1) > 1e-3 * np.linalg.norm(first, axis=1)
        assert differs.sum() >= 14, differs


def test_flip_views_are_the_original_or_the_mirrored_image(extractor):
    images = fixture_images()
    settings = check_settings("flip", 4, None, None)
    plain = extractor(images)                                  # (16, D)
    mirrored = extractor(np.ascontiguousarray(images[:, :, ::-1]))
    seen = {"original": 0, "mirrored": 0}
    for v in range(4):
        view = extractor.views(images, view_seeds(0, "train", np.arange(16), v), settings)
        for i in range(16):
            d_plain = np.linalg.norm(view[i] - plain[i]) / np.linalg.norm(plain[i])
            d_mirror = np.linalg.norm(view[i] - mirrored[i]) / np.linalg.norm(mirrored[i])
            assert min(d_plain, d_mirror) < 0.05, (v, i, d_plain, d_mirror)
            seen["original" if d_plain < d_mirror else "mirrored"] += 1
    assert min(seen.values()) >= 8, seen  # both happen: the flip is random, not constant


def test_no_validation_image_has_a_view_among_the_fitted_rows(caches):
    from classify.training.data import fit_rows, split_rows

    cache = read_cache(caches["aug"])
    rows = split_rows(cache.train.labels, 0.3, 0)
    X_fit, y_fit = fit_rows(cache.train.features, cache.train.labels, rows.fit, cache.train.views)
    assert len(X_fit) == len(rows.fit) * 3
    fitted = {row.tobytes() for row in X_fit}
    for i in rows.val:
        for vector in (cache.train.features[i], *cache.train.views[i]):
            assert vector.tobytes() not in fitted, i
    for i in rows.fit:
        assert all(v.tobytes() in fitted for v in cache.train.views[i])


def classify(*args):
    from classify.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def record(out_dir: Path) -> dict:
    (path,) = out_dir.glob("*-run.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("views, tta", [("all", True), ("none", False)])
def test_classify_fits_originals_plus_views(caches, tmp_path, views, tta):
    out = tmp_path / "reports"
    r = classify("--features", caches["aug"], "--out-dir", out, "--val-fraction", "0.3", "--views", views,
                 *(["--tta"] if tta else []))
    assert r.exit_code == 0, r.output
    rec = record(out)
    assert rec["fit_images"] == 22 and len(rec["val_images"]) == 10
    assert rec["fit_rows"] == rec["fit_images"] * (3 if views == "all" else 1)
    assert len(set(rec["val_images"])) == 10 and set(rec["val_images"]) <= set(range(32))
    assert rec["config"]["tta"] is tta


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, words", [
    (["--augment", "flip", "--views", "0"], "--views 0"),
    (["--augment", "flip,blur", "--views", "2"], "'blur'"),
    (["--augment", "rotate", "--views", "2", "--rotate-degrees", "-5"], "--rotate-degrees -5"),
    (["--augment", "rotate", "--views", "2", "--rotate-degrees", "720"], "--rotate-degrees 720"),
    (["--augment", "rotate", "--views", "2", "--rotate-degrees", "nan"], "--rotate-degrees nan"),
    (["--views", "2"], "--views needs --augment"),
    (["--test-views", "2"], "--test-views needs --augment"),
    (["--augment", "flip"], "needs --views"),
])
def test_bad_augmentation_options_are_one_line(tmp_path, args, words):
    out = tmp_path / "c.h5"
    r = invoke_extract("--data-dir", CIFAR_FIXTURE, "--weights", "none", "--out", out, *args)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    assert words in error_line(r, 1)
    assert not out.exists() and not partial_dir(out).exists()


def test_tta_without_test_views_is_refused_before_anything_is_written(caches, tmp_path):
    out = tmp_path / "reports"
    r = classify("--features", caches["plain"], "--out-dir", out, "--tta")
    assert r.exit_code == 1
    assert "--tta needs test views" in error_line(r, 1)
    assert not out.exists() or not list(out.glob("*"))


def test_other_augmentation_settings_refuse_the_cache(caches, tmp_path):
    r = invoke_extract(*BASE, "--out", caches["aug"], "--augment", "flip", "--views", "2", "--test-views", "1")
    assert "augment 'flip,crop' != 'flip'" in error_line(r, 1)
    r = invoke_extract(*BASE, "--out", caches["plain"], "--augment", "flip", "--views", "2")
    assert "views 0 != 2" in error_line(r, 1) or "augment '' != 'flip'" in error_line(r, 1)


# --------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_killed_augmented_extraction_resumes_to_the_same_cache(caches, tmp_path):
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "extract", *map(str, BASE), "--out", str(out), "--augment", "flip,crop",
           "--views", "2", "--test-views", "1", "--limit", "64"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while not list(partial_dir(out).glob("train-*.npz")):
            assert proc.poll() is None, "extract ended before writing a checkpoint: " + proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at row" in resumed.stderr
    whole = extract(tmp_path / "whole.h5", "--augment", "flip,crop", "--views", "2", "--test-views", "1",
                    "--limit", "64")
    a, b = arrays(out), arrays(whole)
    assert a.keys() == b.keys() and len(a) == 4
    for name in a:
        assert np.array_equal(a[name], b[name]), name
