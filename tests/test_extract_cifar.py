"""Issue 2: the CIFAR-10 loader, the cache file, both poolings, --limit and the CLI end to end.

Real fixture images (tests/fixtures/cifar-10-batches-py: 100 train + 20 test
real CIFAR-10 images in the original pickle format), a real VGG16 with random
weights (--weights none), real HDF5 files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, error_line
from conftest import invoke_extract as invoke
from featurecache.cache import read_cache
from extract.cifar import load_cifar10
from extract.datasets import load_dataset
from featurecache.cifar import CIFAR10_CLASSES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def pickles(names):
    out = []
    for name in names:
        with open(FIXTURE / name, "rb") as f:
            out.append(pickle.load(f, encoding="bytes"))
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gap_cache(tmp_path_factory) -> Path:
    """The whole fixture through VGG16 (random weights, seed 0), GAP, 32 px, in a features/ folder."""
    out = tmp_path_factory.mktemp("gap") / "features" / "cifar10-vgg16-gap-32px.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--out", out)
    assert r.exit_code == 0, r.output
    return out


# --------------------------------------------------------------------------- the loader


def test_loader_labels_equal_the_pickles_labels_in_order():
    data = load_cifar10(FIXTURE)
    train = np.concatenate([d[b"labels"] for d in pickles(TRAIN_FILES)])
    test = np.asarray(pickles(["test_batch"])[0][b"labels"])
    assert len(train) == 100 and len(test) == 20
    np.testing.assert_array_equal(data.splits["train"].labels, train)
    np.testing.assert_array_equal(data.splits["test"].labels, test)
    assert data.splits["train"].labels.dtype == np.int64
    assert data.splits["train"].sources[:2] == ["data_batch_1/0", "data_batch_1/1"]
    assert data.splits["train"].sources[37] == "data_batch_2/17"
    assert data.splits["test"].sources[-1] == "test_batch/19"
    assert data.class_names == CIFAR10_CLASSES == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert data.image_size == 32 and data.kind == "cifar10" and data.name == "cifar10"


def test_loader_pixel_layout_is_r_g_b_planes_of_row_major_32x32():
    data = load_cifar10(FIXTURE)
    rows = np.concatenate([d[b"data"] for d in pickles(TRAIN_FILES)])  # (100, 3072) uint8
    batch = data.splits["train"].read(0, 100)
    assert batch.images.shape == (100, 32, 32, 3) and batch.images.dtype == np.uint8
    for i in (0, 37, 99):  # first image, one in data_batch_2, the last
        img, row = batch.images[i], rows[i]
        np.testing.assert_array_equal(img[:, :, 0], row[0:1024].reshape(32, 32))
        np.testing.assert_array_equal(img[:, :, 1], row[1024:2048].reshape(32, 32))
        np.testing.assert_array_equal(img[:, :, 2], row[2048:3072].reshape(32, 32))
    # a read spanning two batch files gives the same rows as the whole
    part = data.splits["train"].read(15, 45)
    np.testing.assert_array_equal(part.images, batch.images[15:45])
    assert part.sources == data.splits["train"].sources[15:45]
    test_rows = pickles(["test_batch"])[0][b"data"]
    np.testing.assert_array_equal(
        data.splits["test"].read(0, 20).images, test_rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def test_loader_reads_the_tar_gz_exactly_like_the_folder(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FIXTURE, arcname="cifar-10-batches-py")
    a, b = load_cifar10(FIXTURE), load_dataset(archive, 32)
    assert b.kind == "cifar10" and b.fingerprint == a.fingerprint
    for split in ("train", "test"):
        sa, sb = a.splits[split], b.splits[split]
        np.testing.assert_array_equal(sa.labels, sb.labels)
        assert sa.sources == sb.sources
        np.testing.assert_array_equal(sa.read(0, len(sa)).images, sb.read(0, len(sb)).images)
    # the parent folder of cifar-10-batches-py works as well
    c = load_dataset(FIXTURE.parent, 32)
    assert c.kind == "cifar10" and c.fingerprint == a.fingerprint


def test_loader_limit_takes_the_first_n_of_each_split():
    full, cut = load_cifar10(FIXTURE), load_cifar10(FIXTURE, limit=7)
    for split in ("train", "test"):
        assert len(cut.splits[split]) == 7
        np.testing.assert_array_equal(cut.splits[split].labels, full.splits[split].labels[:7])
        np.testing.assert_array_equal(cut.splits[split].read(0, 7).images, full.splits[split].read(0, 7).images)


# --------------------------------------------------------------------------- the cache file


def test_cache_layout_and_attributes(gap_cache):
    data = load_cifar10(FIXTURE)
    with h5py.File(gap_cache, "r") as f:
        for split, n in (("train", 100), ("test", 20)):
            assert f[f"{split}/features"].shape == (n, 512) and f[f"{split}/features"].dtype == np.float32
            assert f[f"{split}/labels"].shape == (n,) and f[f"{split}/labels"].dtype == np.int64
            assert f[f"{split}/sources"].shape == (n,) and h5py.check_string_dtype(f[f"{split}/sources"].dtype)
            np.testing.assert_array_equal(f[f"{split}/labels"][()], data.splits[split].labels)
            assert list(f[f"{split}/sources"].asstr()[()]) == data.splits[split].sources
        # strings are fixed-length UTF-8 (checksummed inline), which h5py returns as bytes
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items()}
    assert attrs["format"] == "featurecache" and attrs["format_version"] == 1
    assert attrs["dataset"] == "cifar10" and attrs["data_kind"] == "cifar10"
    assert attrs["backbone"] == "vgg16" and attrs["pooling"] == "gap"
    assert attrs["image_size"] == 32 and attrs["model_size"] == 32 and attrs["feature_dim"] == 512
    assert attrs["weights"] == "none" and attrs["seed"] == 0
    assert attrs["n_train"] == 100 and attrs["n_test"] == 20
    assert [c.decode() if isinstance(c, bytes) else c for c in attrs["class_names"]] == CIFAR10_CLASSES
    versions = json.loads(attrs["versions"])
    assert {"featurecache", "tensorflow", "keras", "h5py", "numpy", "python"} <= set(versions)
    assert versions["keras"].startswith("3.")
    created = datetime.fromisoformat(attrs["created"])
    assert abs(datetime.now(timezone.utc) - created) < timedelta(hours=1)
    config = json.loads(attrs["config"])
    assert config["backbone"] == "vgg16" and config["weights"] == "none" and config["seed"] == 0
    assert attrs["data_fingerprint"] == data.fingerprint

    cache = read_cache(gap_cache)  # the reader classify uses agrees with the raw file
    assert cache.class_names == CIFAR10_CLASSES
    assert cache.train.features.shape == (100, 512) and cache.test.features.shape == (20, 512)
    assert np.isfinite(cache.train.features).all() and cache.train.features.std() > 0
    np.testing.assert_array_equal(cache.train.labels, data.splits["train"].labels)
    assert cache.attrs["versions"]["keras"] == versions["keras"] and cache.attrs["skipped"] == []


def test_latest_moves_only_for_caches_in_the_features_folder(tmp_path, monkeypatch):
    from featurecache.cache import latest

    features = tmp_path / "features"
    monkeypatch.setenv("FEATURECACHE_FEATURES_DIR", str(features))
    inside = features / "x.h5"
    assert invoke("--data-dir", FIXTURE, "--weights", "none", "--limit", 4, "--out", inside).exit_code == 0
    elsewhere = tmp_path / "elsewhere" / "x.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--limit", 4, "--seed", 1, "--out", elsewhere)
    assert r.exit_code == 0, r.output
    assert (features / "LATEST").read_text().strip() == "x.h5"
    assert latest() == inside and not (elsewhere.parent / "LATEST").exists()
    assert f"pass --features {elsewhere} to use it" in r.stderr

    # an up-to-date re-run in a read-only folder writes nothing and succeeds
    features.chmod(0o555)
    try:
        again = invoke("--data-dir", FIXTURE, "--weights", "none", "--limit", 4, "--out", inside)
    finally:
        features.chmod(0o755)
    assert again.exit_code == 0 and again.exception is None, again.output
    assert "already up to date" in again.stdout


# --------------------------------------------------------------------------- poolings and --limit


def test_flatten_at_64_px_gives_2048_features(tmp_path):
    out = tmp_path / "flat64.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--pooling", "flatten", "--image-size", 64,
               "--limit", 4, "--out", out)
    assert r.exit_code == 0, r.output
    cache = read_cache(out)
    assert cache.train.features.shape == (4, 2048) and cache.test.features.shape == (4, 2048)
    assert cache.attrs["image_size"] == 64 and cache.attrs["pooling"] == "flatten"
    assert "2,048" in r.stdout


def test_gap_and_flatten_agree_at_32_px(tmp_path, gap_cache):
    """At 32 px VGG16's last map is 1x1: Flatten and GAP give the same 512 numbers (same seed)."""
    out = tmp_path / "flat32.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--pooling", "flatten", "--limit", 8, "--out", out)
    assert r.exit_code == 0, r.output
    flat, gap = read_cache(out), read_cache(gap_cache)
    assert flat.train.features.shape == (8, 512)
    np.testing.assert_allclose(flat.train.features, gap.train.features[:8], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(flat.test.features, gap.test.features[:8], rtol=1e-4, atol=1e-5)


def test_gap_at_64_px_still_gives_512_and_help_says_so(tmp_path):
    out = tmp_path / "gap64.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--image-size", 64, "--limit", 3, "--out", out)
    assert r.exit_code == 0, r.output
    assert read_cache(out).train.features.shape == (3, 512)
    help_text = " ".join(invoke("--help").output.split())
    assert "both give 512" in help_text and "2,048 at 64 px" in help_text


def test_limit_keeps_the_first_rows_and_their_features(tmp_path, gap_cache):
    out = tmp_path / "limit.h5"
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--limit", 10, "--out", out)
    assert r.exit_code == 0, r.output
    cut, full = read_cache(out), read_cache(gap_cache)
    for split in ("train", "test"):
        a, b = getattr(cut, split), getattr(full, split)
        assert len(a.labels) == 10
        np.testing.assert_array_equal(a.labels, b.labels[:10])
        np.testing.assert_array_equal(a.sources, b.sources[:10])
        np.testing.assert_allclose(a.features, b.features[:10], rtol=1e-4, atol=1e-5)
    assert cut.attrs["limit"] == 10


# --------------------------------------------------------------------------- the command end to end


def test_cli_end_to_end_default_name_latest_reuse_and_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATURECACHE_FEATURES_DIR")
    args = ["--data-dir", FIXTURE, "--weights", "none", "--limit", 12, "--batch-size", 8, "--precision", "float32"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    out = Path("features/cifar10-vgg16-gap-32px-random-limit12.h5")  # random weights and --limit are in the name
    assert out.is_file() and not Path(f"{out}.partial").exists()
    assert f"wrote {out}: train 12 x 512, test 12 x 512" in r.stdout
    assert "Traceback" not in r.output
    assert Path("features/LATEST").read_text().strip() == out.name
    first = sha(out)
    stat = out.stat()

    # the same command again, in a fresh process: nothing to do, no model built, TensorFlow never imported
    code = ("import sys\nfrom extract.cli import cli\n"
            "try:\n    cli([" + ", ".join(repr(str(a)) for a in args) + "])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('TF:', 'tensorflow' in sys.modules)\n")
    again = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout and "wrote" not in again.stdout and "TF: False" in again.stdout
    assert out.stat().st_mtime_ns == stat.st_mtime_ns and out.stat().st_ino == stat.st_ino and sha(out) == first

    # --force rebuilds: a new file with the same rows
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert "wrote" in forced.stdout and out.stat().st_ino != stat.st_ino
    a = read_cache(out)
    assert len(a.train.labels) == 12 and a.attrs["created"]


def test_other_settings_against_an_existing_out_are_refused_and_leave_it_alone(tmp_path, gap_cache):
    out = tmp_path / "c.h5"
    out.write_bytes(gap_cache.read_bytes())
    (tmp_path / "LATEST").write_text("keep\n")
    before = sha(out)
    for extra, named in ((["--pooling", "flatten"], "pooling"), (["--seed", "1"], "seed"),
                         (["--limit", "5"], "limit"), (["--image-size", "48"], "image_size")):
        r = invoke("--data-dir", FIXTURE, "--weights", "none", "--out", out, *extra)
        assert r.exit_code != 0, (extra, r.output)
        msg = error_line(r)
        assert "other settings" in msg and named in msg and "--force" not in msg
        assert f"--out {tmp_path / 'c-2.h5'} to keep both" in msg
        assert sha(out) == before
        assert (tmp_path / "LATEST").read_text() == "keep\n"
        assert not (tmp_path / "c.h5.partial").exists()


def test_an_empty_latest_says_what_is_wrong(tmp_path, monkeypatch):
    from featurecache.cache import latest
    from featurecache.errors import UserError

    (tmp_path / "LATEST").write_text("\n")
    monkeypatch.setenv("FEATURECACHE_FEATURES_DIR", str(tmp_path))
    with pytest.raises(UserError, match="LATEST is empty; run `make features` again"):
        latest()


def test_speed_line_for_slow_and_resumed_runs():
    from extract.pipeline import Summary

    assert Summary("built", Path("x"), computed=600, seconds=4.8).speed() == "125 img/s, 4.8 s"
    assert Summary("built", Path("x"), computed=3, seconds=12.0).speed() == "0.25 img/s, 12.0 s"
    assert Summary("built", Path("x"), computed=0, seconds=0.3).speed() == "every row resumed from checkpoints"
