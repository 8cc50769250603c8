"""Issue 5: corrupted batch files and corrupted caches give a clean `UserError` or a correct load.

"Correct" is defined against an independent decoding of the same bytes:
- a batch file: the loader's labels and pixels equal what `pickle.loads` of the
  corrupted bytes holds, laid out as documented (R, G, B planes of 32x32), and
  the untouched batches read exactly as before; a file cut short is always an error;
- a cache: `read_cache` returns arrays that keep every promise of its contract
  (2-D finite float32 features of the width the attributes state, int64 labels
  that index `class_names`, one source per row, our format attributes), the
  row counts stored in the file, and exactly the original features and labels
  (they carry HDF5 checksums); a file cut short is always an error.
HDF5 itself can crash on damaged metadata of old-format files; caches are
written with checksummed (HDF5 1.10) metadata, which this test relies on.
Anything else (another exception, a hang, a wrong load) fails the test.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurecache.cache import FORMAT, REQUIRED_ATTRS, read_cache
from extract.cli import cli
from extract.cifar import load_cifar10
from featurecache.errors import UserError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar-10-batches-py"
ORIGINAL = (FIXTURE / "data_batch_2").read_bytes()
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def batch_dir():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar-10-batches-py"
        shutil.copytree(FIXTURE, folder)
        yield folder


@pytest.fixture(scope="module")
def clean():
    data = load_cifar10(FIXTURE)
    return {s: (data.splits[s].labels, data.splits[s].read(0, len(data.splits[s])).images) for s in ("train", "test")}


def reference_decode(raw: bytes):
    """The documented format, decoded independently: (images, labels) or None if the bytes are no CIFAR batch."""
    try:
        d = pickle.loads(raw, encoding="bytes")
        data, labels = d[b"data"], d[b"labels"]
        if type(data) is not np.ndarray or data.dtype != np.uint8 or data.shape[1:] != (3072,) or data.ndim != 2:
            return None
        labels = list(labels)
        if len(labels) != len(data) or not all(type(x) is int or isinstance(x, np.integer) for x in labels):
            return None
        if labels and not all(0 <= int(x) <= 9 for x in labels):
            return None
        images = np.stack([np.dstack([r[:1024].reshape(32, 32), r[1024:2048].reshape(32, 32), r[2048:].reshape(32, 32)])
                           for r in data]) if len(data) else np.zeros((0, 32, 32, 3), np.uint8)
        return images, np.asarray(labels, dtype=np.int64)
    except Exception:  # noqa: BLE001 - anything the reference cannot decode is not a batch
        return None


def check_batch(folder: Path, raw: bytes, clean, must_fail: bool) -> None:
    (folder / "data_batch_2").write_bytes(raw)
    try:
        data = load_cifar10(folder)
        train = data.splits["train"]
        batch = train.read(0, len(train))
    except UserError as e:
        assert "\n" not in e.message and "data_batch_2" in e.message, e.message
        return
    assert not must_fail, "a cut-short batch file was accepted"
    want = reference_decode(raw)
    assert want is not None, "the loader accepted bytes that are not a CIFAR-10 batch"
    images, labels = want
    n = len(labels)
    clean_labels, clean_images = clean["train"]
    np.testing.assert_array_equal(train.labels, np.concatenate([clean_labels[:20], labels, clean_labels[40:]]))
    np.testing.assert_array_equal(batch.images, np.concatenate([clean_images[:20], images, clean_images[40:]]))
    assert batch.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.sources[20:20 + n] == [f"data_batch_2/{i}" for i in range(n)]
    np.testing.assert_array_equal(data.splits["test"].read(0, 20).images, clean["test"][1])


@FUZZ
@given(cut=st.integers(0, len(ORIGINAL) - 1))
def test_truncated_batch_files_are_refused(batch_dir, clean, cut):
    check_batch(batch_dir, ORIGINAL[:cut], clean, must_fail=True)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(ORIGINAL) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_batch_files_with_flipped_bytes(batch_dir, clean, flips):
    raw = bytearray(ORIGINAL)
    for at, mask in flips:
        raw[at] ^= mask
    check_batch(batch_dir, bytes(raw), clean, must_fail=False)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80), st.floats(allow_nan=True),
                    st.text(max_size=5), st.binary(max_size=5))
arrays = st.builds(
    lambda n, width, dtype, fill: np.full((n, width), fill % 256).astype(dtype),
    st.integers(0, 4), st.sampled_from([3072, 3071, 1024]), st.sampled_from([np.uint8, np.int64, np.float32]),
    st.integers(0, 255),
)
label_lists = st.one_of(st.lists(st.integers(-3, 12), max_size=5), st.lists(scalars, max_size=3), scalars,
                        st.builds(lambda a: np.asarray(a), st.lists(st.integers(0, 9), max_size=5)))
batches = st.one_of(
    st.fixed_dictionaries({b"data": arrays, b"labels": label_lists}),
    st.fixed_dictionaries({b"data": st.one_of(arrays, scalars, st.lists(st.integers(0, 255), max_size=4)),
                           b"labels": label_lists}),
    st.dictionaries(st.sampled_from([b"data", b"labels", "data", "labels", b"x"]), st.one_of(arrays, scalars), max_size=3),
    st.lists(scalars, max_size=3),
    scalars,
)


@FUZZ
@given(obj=batches)
def test_random_pickled_objects_as_batch_files(batch_dir, clean, obj):
    check_batch(batch_dir, pickle.dumps(obj, protocol=2), clean, must_fail=False)


# --------------------------------------------------------------------------- caches


class Original(bytes):
    """The pristine cache's bytes, with its arrays; a short repr in hypothesis reports."""

    def __repr__(self) -> str:
        return f"<cache of {len(self)} bytes>"


@pytest.fixture(scope="module")
def cache_bytes(tmp_path_factory) -> Original:
    out = tmp_path_factory.mktemp("fuzz") / "c.h5"
    r = CliRunner().invoke(cli, ["--data-dir", str(FIXTURE), "--weights", "none", "--limit", 5, "--out", str(out)])
    assert r.exit_code == 0, r.output
    raw = Original(out.read_bytes())
    raw.cache = read_cache(out)
    return raw


@pytest.fixture(scope="module")
def cache_path():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "c.h5"


def check_cache(path: Path, raw: bytes, must_fail: bool, original=None) -> None:
    path.write_bytes(raw)
    try:
        cache = read_cache(path)
    except UserError as e:
        assert "\n" not in e.message and str(path) in e.message, e.message
        return
    assert not must_fail, "a cut-short cache was accepted"
    attrs = cache.attrs
    assert attrs["format"] == FORMAT and all(k in attrs for k in REQUIRED_ATTRS)
    n_classes = len(cache.class_names)
    for split in ("train", "test"):
        d = getattr(cache, split)
        assert d.features.dtype == np.float32 and d.features.ndim == 2 and np.isfinite(d.features).all()
        assert d.features.shape[1] == attrs["feature_dim"]
        assert d.labels.dtype == np.int64 and d.labels.shape == (len(d.features),)
        assert len(d.labels) == 0 or (d.labels.min() >= 0 and d.labels.max() < n_classes)
        assert len(d.sources) == len(d.labels)
        assert len(d.labels) == attrs[f"n_{split}"]
        if original is not None:  # features and labels carry fletcher32 checksums: a load is the original numbers
            np.testing.assert_array_equal(d.features, getattr(original, split).features)
            np.testing.assert_array_equal(d.labels, getattr(original, split).labels)


@FUZZ
@given(data=st.data())
def test_truncated_caches_are_refused(cache_bytes, cache_path, data):
    cut = data.draw(st.integers(0, len(cache_bytes) - 1))
    check_cache(cache_path, cache_bytes[:cut], must_fail=True)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_caches_with_flipped_bytes(cache_bytes, cache_path, data):
    raw = bytearray(cache_bytes)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    check_cache(cache_path, bytes(raw), must_fail=False, original=cache_bytes.cache)


def test_the_pristine_cache_loads(cache_bytes, cache_path):
    check_cache(cache_path, cache_bytes, must_fail=False)
    with h5py.File(cache_path) as f:
        assert f["train/features"].shape == (5, 512)
