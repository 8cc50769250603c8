"""Issue 13 item 7: CIFAR-10 batches are pickles, so they load through a restricted
unpickler: a crafted batch is refused in one line before it can run anything; real
batches, as the original download, numpy 1 and numpy 2 write them, still load."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_FIXTURE, CIFAR_SUBSET, error_line
from conftest import invoke_extract as invoke
from extract.cifar import load_cifar10
from featurecache.errors import UserError


class CreatesFile:
    """Unpickling this calls open(path, "w"): a file appears if the loader runs the pickle's code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class RunsShell:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


def cifar_copy(tmp_path: Path) -> Path:
    d = tmp_path / "cifar-10-batches-py"
    shutil.copytree(CIFAR_FIXTURE, d)
    return d


def real_batch(name: str = "data_batch_1") -> dict:
    with open(CIFAR_FIXTURE / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.mark.parametrize("where", ["top", "labels"])
def test_crafted_batch_creates_no_file_and_gives_one_line(tmp_path, where):
    d = cifar_copy(tmp_path)
    victim = tmp_path / "pwned.txt"
    batch = real_batch()
    payload = CreatesFile(victim)
    (d / "data_batch_2").write_bytes(pickle.dumps(payload if where == "top" else {**batch, b"labels": payload}))
    # an ordinary pickle.load would create the file: the payload is real
    pickle.loads((d / "data_batch_2").read_bytes())
    assert victim.exists()
    victim.unlink()

    r = invoke("--data-dir", d, "--weights", "none", "--out", tmp_path / "x.h5")
    msg = error_line(r)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    assert not victim.exists() and not (tmp_path / "x.h5").exists()
    assert f"{d / 'data_batch_2'} is not a plain CIFAR-10 batch: it asks to load io.open" in msg
    assert "refusing to run code from it" in msg


def test_os_system_is_named_in_the_refusal(tmp_path):
    d = cifar_copy(tmp_path)
    (d / "test_batch").write_bytes(pickle.dumps(RunsShell(), protocol=2))
    with pytest.raises(UserError, match=r"test_batch is not a plain CIFAR-10 batch: it asks to load (posix|os)\.system"):
        load_cifar10(d)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy2_written_batches_load(tmp_path, protocol):
    """Batches re-pickled by this numpy (2.x: numpy._core paths; protocol 5: _frombuffer)."""
    d = cifar_copy(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = real_batch(name)
        batch[b"labels"] = np.asarray(batch[b"labels"], dtype=np.int64) if name == "test_batch" else batch[b"labels"]
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    want, got = load_cifar10(CIFAR_FIXTURE), load_cifar10(d)
    for split in ("train", "test"):
        np.testing.assert_array_equal(got.splits[split].labels, want.splits[split].labels)
        np.testing.assert_array_equal(got.splits[split].read(0, 20).images, want.splits[split].read(0, 20).images)
    assert got.fingerprint == want.fingerprint


def test_original_download_layout_loads():
    """The fixture batches are the original Python 2 pickles' layout (protocol 2, _codecs.encode)."""
    data = load_cifar10(CIFAR_FIXTURE)
    assert len(data.splits["train"]) == 100 and len(data.splits["test"]) == 20


@pytest.mark.skipif(not CIFAR_SUBSET.is_dir(), reason="../shared/data is not present")
def test_real_subset_batches_load():
    data = load_cifar10(CIFAR_SUBSET)
    assert len(data.splits["train"]) == 5000 and len(data.splits["test"]) == 1000
    assert data.splits["test"].read(990, 1000).images.shape == (10, 32, 32, 3)
