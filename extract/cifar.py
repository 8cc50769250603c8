"""CIFAR-10 as a data set: its local folder or archive, or Keras' download, as a `Dataset`.

Reads every batch file once to check it and collect the labels (featurecache.cifar reads the
files safely); pixels are read again, one batch file at a time, when `Split.read` is called.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from extract.data import Batch, Dataset, Split
from featurecache.cifar import (CIFAR10_CLASSES, CIFAR10_DIRNAME, CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES,
                                CifarFiles, parse_cifar_batch)
from featurecache.errors import SettingError, reason

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def _locate_cifar(path: Path) -> Path:
    if not path.exists():
        raise SettingError(
            f"data_dir={str(path)!r} does not exist; pass the {CIFAR10_DIRNAME} folder, "
            "the cifar-10-python.tar.gz archive, or a folder of class subfolders"
        )
    if path.is_dir() and not (path / "data_batch_1").exists() and (path / CIFAR10_DIRNAME).is_dir():
        return path / CIFAR10_DIRNAME
    return path


def load_cifar10(path: str | os.PathLike, limit: int | None = None) -> Dataset:
    """CIFAR-10 from a local `cifar-10-batches-py` folder or `cifar-10-python.tar.gz`.

    Reads every batch once to check it and collect the labels; pixels are read
    again, one batch file at a time, when `Split.read` is called.
    """
    path = _locate_cifar(Path(path).expanduser().resolve())
    files = CifarFiles(path)
    digest = hashlib.sha256()
    splits = {}
    for split, names in (("train", CIFAR10_TRAIN_FILES), ("test", CIFAR10_TEST_FILES)):
        labels, sources, spans = [], [], []
        start = 0
        for name in names:
            images, lab = parse_cifar_batch(files.read_bytes(name), files.where(name))
            digest.update(name.encode())
            digest.update(images.tobytes())
            digest.update(lab.tobytes())
            labels.append(lab)
            sources.extend(f"{name}/{i}" for i in range(len(lab)))
            spans.append((name, start, start + len(lab)))
            start += len(lab)
        labels = np.concatenate(labels)
        n = len(labels) if limit is None else min(limit, len(labels))
        splits[split] = Split(labels[:n], sources[:n], _cifar_reader(files, spans, labels))
    return Dataset(
        name="cifar10",
        kind="cifar10",
        location=str(path),
        class_names=list(CIFAR10_CLASSES),
        image_size=32,
        fingerprint=digest.hexdigest(),
        splits=splits,
    )


def _cifar_reader(files: CifarFiles, spans, labels) -> Callable[[int, int], Batch]:
    cache: dict[str, np.ndarray] = {}  # keeps one batch file's pixels (~30 MB) at a time

    def pixels(name: str) -> np.ndarray:
        if name not in cache:
            cache.clear()
            cache[name] = parse_cifar_batch(files.read_bytes(name), files.where(name))[0]
        return cache[name]

    def read(start: int, stop: int) -> Batch:
        parts, sources = [], []
        for name, lo, hi in spans:
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                parts.append(pixels(name)[a - lo : b - lo])
                sources.extend(f"{name}/{i}" for i in range(a - lo, b - lo))
        return Batch(np.concatenate(parts), labels[start:stop].copy(), sources)

    return read


def download_cifar10() -> Path:
    """Fetch CIFAR-10 through Keras' own download and cache (~/.keras/datasets)."""
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / CIFAR10_DIRNAME
    if (cached / "test_batch").exists():
        return cached
    try:
        from featurecache.tfimport import keras

        path = Path(
            keras().utils.get_file(
                fname=CIFAR10_DIRNAME, origin=CIFAR10_URL, untar=True, file_hash=CIFAR10_SHA256
            )
        )
    except Exception as e:  # noqa: BLE001 - no network, proxy, disk full: all mean "use local files"
        raise SettingError(
            f"could not download CIFAR-10 ({reason(e)}); pass data_dir=PATH to a local "
            f"{CIFAR10_DIRNAME} folder or cifar-10-python.tar.gz (make features DATA_DIR=PATH)"
        ) from None
    for candidate in (path, path / CIFAR10_DIRNAME, path.parent / CIFAR10_DIRNAME):
        if (candidate / "test_batch").exists():
            return candidate
    raise SettingError(f"the CIFAR-10 download in {path} is incomplete; delete it and run again, "
                       "or pass `data_dir`")
