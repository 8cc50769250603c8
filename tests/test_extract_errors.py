"""Issue 5: every mistake a user can make gets one line, a non-zero exit, no traceback,
and leaves earlier outputs as they were.

Bad data and options go through the real command (click's CliRunner); bad
caches go through `featurecache.cache.read_cache`, the reader `classify` uses.
Broken inputs are made in tmp_path from the real fixture files.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import error_line
from conftest import invoke_extract as invoke
from conftest import tree_digests as snapshot
from featurecache.cache import partial_dir, read_cache
from featurecache.errors import UserError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar-10-batches-py"
DEFAULT_NAME = "cifar10-vgg16-gap-32px.h5"


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / DEFAULT_NAME
    r = invoke("--data-dir", FIXTURE, "--weights", "none", "--limit", 6, "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch, good_cache):
    """A project folder whose features/ already holds a good cache under the default name, and LATEST."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATURECACHE_FEATURES_DIR")
    features = tmp_path / "features"
    features.mkdir()
    shutil.copy(good_cache, features / DEFAULT_NAME)
    (features / "LATEST").write_text(DEFAULT_NAME + "\n")
    before = snapshot(features)
    yield tmp_path
    assert snapshot(features) == before, "a failed run changed earlier outputs"


def refused(*args, code: int = 1) -> str:
    """Run extract with --weights none and return its error line (after checking exit code and no traceback)."""
    r = invoke(*args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    if code == 2:  # click's own parse-time check: usage, then one "Error:" line
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: "), r.output
        return line
    return error_line(r)


def cifar_copy(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "cifar-10-batches-py"
    shutil.copytree(FIXTURE, d)
    return d


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def fixture_batch(name: str = "data_batch_1") -> dict:
    with open(FIXTURE / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


# --------------------------------------------------------------------------- data


def test_missing_folder(workspace):
    msg = refused("--data-dir", workspace / "nowhere", "--weights", "none")
    assert "nowhere does not exist" in msg and "cifar-10-batches-py" in msg


def test_missing_archive(workspace):
    msg = refused("--data-dir", workspace / "cifar-10-python.tar.gz", "--weights", "none")
    assert "cifar-10-python.tar.gz does not exist" in msg


def test_missing_batch_file(workspace):
    d = cifar_copy(workspace)
    (d / "data_batch_3").unlink()
    msg = refused("--data-dir", d, "--weights", "none")
    assert "data_batch_3 is missing" in msg and "data_batch_1..5, test_batch" in msg


def test_missing_batch_file_in_archive(workspace):
    archive = workspace / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(FIXTURE.iterdir()):
            if p.name != "test_batch":
                tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
    msg = refused("--data-dir", archive, "--weights", "none")
    assert "test_batch is missing" in msg and str(archive) in msg


def test_truncated_batch_file(workspace):
    d = cifar_copy(workspace)
    raw = (d / "data_batch_2").read_bytes()
    (d / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    msg = refused("--data-dir", d, "--weights", "none")
    assert "data_batch_2" in msg and "truncated or corrupt" in msg


def test_empty_batch_file(workspace):
    d = cifar_copy(workspace)
    (d / "test_batch").write_bytes(b"")
    msg = refused("--data-dir", d, "--weights", "none")
    assert "test_batch" in msg and "not a readable CIFAR-10 batch" in msg


@pytest.mark.parametrize("obj", [[1, 2, 3], {b"images": np.zeros((2, 3072), np.uint8)}, "text", None])
def test_a_pickle_that_is_not_cifar10(workspace, obj):
    d = cifar_copy(workspace)
    write_pickle(d / "data_batch_4", obj)
    msg = refused("--data-dir", d, "--weights", "none")
    assert "data_batch_4 is not a CIFAR-10 batch" in msg and "b'data' and b'labels'" in msg


@pytest.mark.parametrize("data, shown", [
    (np.zeros((20, 3000), np.uint8), "(20, 3000)"),
    (np.zeros((20, 32, 32, 3), np.uint8), "(20, 32, 32, 3)"),
    (np.zeros((20, 3072), np.float32), "(20, 3072)"),
    ([[0] * 3072] * 20, "list"),
])
def test_wrong_shapes(workspace, data, shown):
    d = cifar_copy(workspace)
    batch = fixture_batch()
    batch[b"data"] = data
    write_pickle(d / "data_batch_1", batch)
    msg = refused("--data-dir", d, "--weights", "none")
    assert "data_batch_1 has data of shape" in msg and shown in msg and "(n, 3072) uint8" in msg


def test_label_count_disagrees_with_images(workspace):
    d = cifar_copy(workspace)
    batch = fixture_batch()
    batch[b"labels"] = batch[b"labels"][:-1]
    write_pickle(d / "data_batch_1", batch)
    msg = refused("--data-dir", d, "--weights", "none")
    assert "has 20 images but 19 labels" in msg


@pytest.mark.parametrize("bad, shown", [(10, "0..10"), (-1, "-1.."), (2**70, "integers"), ("cat", "integers")])
def test_labels_out_of_range_or_not_integers(workspace, bad, shown):
    d = cifar_copy(workspace)
    batch = fixture_batch("test_batch")
    batch[b"labels"] = [0] * 19 + [bad]
    write_pickle(d / "test_batch", batch)
    msg = refused("--data-dir", d, "--weights", "none")
    assert "test_batch has labels" in msg and shown in msg


def test_fractional_labels_are_refused(workspace):
    d = cifar_copy(workspace)
    batch = fixture_batch()
    batch[b"labels"] = [0.5] * 20
    write_pickle(d / "data_batch_1", batch)
    msg = refused("--data-dir", d, "--weights", "none")
    assert "data_batch_1 has labels that are not integers" in msg


@pytest.mark.parametrize("content", [b"this is not an archive\n" * 10, b"\x1f\x8b\x08" + bytes(200)])
def test_archive_not_gzip_or_tar(workspace, content):
    archive = workspace / "cifar-10-python.tar.gz"
    archive.write_bytes(content)
    msg = refused("--data-dir", archive, "--weights", "none")
    assert "not a readable CIFAR-10 archive" in msg and "not gzip/tar" in msg


def test_truncated_archive(workspace):
    archive = workspace / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FIXTURE, arcname="cifar-10-batches-py")
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) * 2 // 3])
    msg = refused("--data-dir", archive, "--weights", "none")
    assert "cifar-10-python.tar.gz" in msg and ("not gzip/tar" in msg or "cannot read" in msg)


def test_failed_cifar_download_says_use_data_dir(workspace, monkeypatch):
    from featurecache.tfimport import keras

    monkeypatch.setenv("KERAS_HOME", str(workspace / "empty-keras-home"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
                        "None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras().utils, "get_file", offline)
    msg = refused("--weights", "none")
    assert "could not download CIFAR-10 ([Errno -3] Temporary failure in name resolution)" in msg
    assert "--data-dir" in msg


# --------------------------------------------------------------------------- weights


def test_weights_path_that_does_not_exist(workspace):
    msg = refused("--data-dir", FIXTURE, "--weights", workspace / "vgg16.weights.h5")
    assert "vgg16.weights.h5 is not a file" in msg and "imagenet, none" in msg


@pytest.fixture(scope="module")
def foreign_weights(tmp_path_factory) -> dict[str, Path]:
    from featurecache.tfimport import keras

    k = keras()
    folder = tmp_path_factory.mktemp("weights")
    vgg19 = k.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    vgg19.save_weights(folder / "vgg19.weights.h5")
    tiny = k.Sequential([k.Input((4,)), k.layers.Dense(3)])
    tiny.save_weights(folder / "tiny.weights.h5")
    (folder / "junk.weights.h5").write_bytes(b"not weights at all" * 50)
    return {"vgg19": folder / "vgg19.weights.h5", "tiny": folder / "tiny.weights.h5",
            "junk": folder / "junk.weights.h5"}


@pytest.mark.parametrize("which", ["vgg19", "tiny", "junk"])
def test_weights_that_do_not_fit_the_backbone(workspace, foreign_weights, which):
    out = workspace / "features" / "other.h5"
    msg = refused("--data-dir", FIXTURE, "--weights", foreign_weights[which], "--limit", 2, "--out", out)
    assert f"--weights {foreign_weights[which]} does not fit vgg16" in msg
    assert not out.exists() and not partial_dir(out).exists()  # no half-started checkpoint either


def test_failed_imagenet_download_says_use_weights(workspace, monkeypatch):
    from featurecache.tfimport import keras

    keras()
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    out = workspace / "features" / "other.h5"
    msg = refused("--data-dir", FIXTURE, "--weights", "imagenet", "--limit", 2, "--out", out)
    assert not out.exists() and not partial_dir(out).exists()
    assert "could not get the ImageNet weights for vgg16 ([Errno -3] Temporary failure in name resolution)" in msg
    assert "--weights PATH" in msg and "--weights none" in msg


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, named", [
    (["--backbone", "alexnet"], "--backbone"),
    (["--pooling", "max"], "--pooling"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "-32"], "--image-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-5"], "--limit"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--test-fraction", "0"], "--test-fraction"),
    (["--test-fraction", "1"], "--test-fraction"),
    (["--test-fraction", "1.5"], "--test-fraction"),
    (["--test-fraction", "-0.2"], "--test-fraction"),
    (["--precision", "int8"], "--precision"),
])
def test_bad_options_fail_at_parse_time(workspace, args, named):
    msg = refused("--data-dir", FIXTURE, "--weights", "none", *args, code=2)
    assert f"Invalid value for '{named}'" in msg


def test_output_folder_that_cannot_be_written(workspace):
    blocker = workspace / "a-file"
    blocker.write_text("not a folder")
    msg = refused("--data-dir", FIXTURE, "--weights", "none", "--out", blocker / "sub" / "c.h5")
    assert "cannot write" in msg and str(blocker) in msg and "--out" in msg
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to any folder")
def test_read_only_output_folder(workspace):
    ro = workspace / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        msg = refused("--data-dir", FIXTURE, "--weights", "none", "--out", ro / "c.h5")
        assert "cannot write" in msg and "--out" in msg
    finally:
        ro.chmod(0o700)


def test_out_that_is_a_folder(workspace):
    folder = workspace / "features" / "a-folder.h5"
    folder.mkdir()
    try:
        r = invoke("--data-dir", FIXTURE, "--weights", "none", "--out", folder)
        assert r.exit_code != 0 and "Traceback" not in r.output
        assert "a-folder.h5" in r.stderr and "directory" in r.stderr.lower() + "folder"
        assert folder.is_dir() and not any(folder.iterdir())
    finally:
        folder.rmdir()


def test_out_that_is_not_a_cache_is_not_overwritten(workspace):
    other = workspace / "notes.h5"
    other.write_text("my notes")
    msg = refused("--data-dir", FIXTURE, "--weights", "none", "--out", other)
    assert "exists but is not a usable cache" in msg and "--force" in msg
    assert other.read_text() == "my notes"


# --------------------------------------------------------------------------- caches, through read_cache


def cache_error(path, **kw) -> str:
    with pytest.raises(UserError) as e:
        read_cache(path, **kw)
    msg = e.value.message
    assert "\n" not in msg
    return msg


@pytest.fixture
def cache_copy(tmp_path, good_cache) -> Path:
    p = tmp_path / "copy.h5"
    shutil.copy(good_cache, p)
    return p


def test_cache_missing(tmp_path):
    msg = cache_error(tmp_path / "features" / "nothing.h5")
    assert "no features at" in msg and "nothing.h5" in msg and "make features" in msg


def test_cache_incomplete_says_rerun_the_same_extract(tmp_path):
    path = tmp_path / "c.h5"
    partial_dir(path).mkdir()
    msg = cache_error(path)
    assert "incomplete" in msg and "re-run the same extract command" in msg


def test_cache_not_hdf5(tmp_path):
    path = tmp_path / "c.h5"
    path.write_text("train,test\n1,2\n")
    before = path.read_bytes()
    assert "is not an HDF5 file" in cache_error(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("keep", [0.95, 0.5, 0.1])
def test_cache_truncated(cache_copy, keep):
    raw = cache_copy.read_bytes()
    cache_copy.write_bytes(raw[: int(len(raw) * keep)])
    msg = cache_error(cache_copy)
    assert "copy.h5" in msg and ("damaged" in msg or "not an HDF5 file" in msg)


def test_cache_foreign_hdf5_without_our_attributes(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["train/features"] = np.zeros((3, 4), np.float32)
        f["train/labels"] = np.zeros(3, np.int64)
    assert "not a featurecache cache" in cache_error(path)


def test_cache_missing_attributes(cache_copy):
    with h5py.File(cache_copy, "a") as f:
        del f.attrs["class_names"]
        del f.attrs["pooling"]
    msg = cache_error(cache_copy)
    assert "lacks the attribute(s)" in msg and "pooling" in msg and "class_names" in msg


@pytest.mark.parametrize("dataset", ["test/features", "train/labels", "test"])
def test_cache_missing_datasets(cache_copy, dataset):
    with h5py.File(cache_copy, "a") as f:
        del f[dataset]
    split = dataset.split("/")[0]
    msg = cache_error(cache_copy)
    assert f"no /{split}/features and /{split}/labels" in msg


def test_cache_feature_and_label_counts_disagree(cache_copy):
    with h5py.File(cache_copy, "a") as f:
        labels = f["train/labels"][()]
        del f["train/labels"]
        f["train/labels"] = labels[:-1]
    msg = cache_error(cache_copy)
    assert "/train has 6 feature rows but 5 labels" in msg


def test_cache_labels_outside_the_classes(cache_copy):
    with h5py.File(cache_copy, "a") as f:
        f["test/labels"][0] = 10
    assert "/test/labels are not class indices 0..9" in cache_error(cache_copy)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_cache_non_finite_features(cache_copy, value):
    with h5py.File(cache_copy, "a") as f:
        f["train/features"][2, 7] = value
    msg = cache_error(cache_copy)
    assert "/train/features hold NaN or infinite values" in msg and "--force" in msg


def test_cache_feature_widths_disagree(cache_copy):
    with h5py.File(cache_copy, "a") as f:
        feats = f["test/features"][()]
        del f["test/features"]
        f["test/features"] = feats[:, :100]
    assert "feature widths" in cache_error(cache_copy)


def test_cache_with_other_settings_than_expected(cache_copy):
    msg = cache_error(cache_copy, expect={"backbone": "resnet50"})
    assert "backbone='vgg16', not 'resnet50'" in msg
