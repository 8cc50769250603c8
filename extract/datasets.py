"""Image sources: CIFAR-10 in its original python layout, and folders of photos; which one a path holds.

Reads images only; writes nothing. Every loader presents each split as a `Split` (extract.data):
the labels and row sources are known up front, the pixels are read batch by batch. A loader checks
what it reads and raises `UserError` naming the file at fault.

    extract.cifar     CIFAR-10 (folder, archive or Keras' download)
    extract.folders   folders of photos in class subfolders
    extract.index     the photo folders' content-hash index
"""

from __future__ import annotations

import os
from pathlib import Path

from extract.cifar import download_cifar10, load_cifar10
from extract.data import Dataset
from extract.folders import load_image_folder
from featurecache.cifar import CIFAR10_DIRNAME, CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES

def _holds_cifar(path: Path) -> bool:
    names = set(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES + ["batches.meta", CIFAR10_DIRNAME])
    return any((path / n).exists() for n in names)


def is_image_folder(path: Path) -> bool:
    """A folder that is not CIFAR-10's python layout is read as a folder of photos."""
    return path.is_dir() and not _holds_cifar(path)


def dataset_name(data_dir: str | os.PathLike | None) -> str:
    """The name `load_dataset` will give this data ("cifar10" or the photo folder's name), without reading it."""
    if data_dir is None:
        return "cifar10"
    path = Path(data_dir).expanduser()
    return path.resolve().name if is_image_folder(path) else "cifar10"


def load_dataset(
    data_dir: str | os.PathLike | None,
    image_size: int,
    limit: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    index: str | os.PathLike | None = None,
    verify: bool = False,
    workers: int | None = None,
) -> Dataset:
    """CIFAR-10 (downloaded when data_dir is None) or a folder of photos, by what data_dir holds.

    `index`, `verify` and `workers` (decode threads) apply to photo folders: see `load_image_folder`.
    CIFAR-10's pixels are raw bytes, one unpickle per 10,000-image file: nothing to decode per image."""
    if data_dir is None:
        return load_cifar10(download_cifar10(), limit)
    path = Path(data_dir).expanduser()
    if is_image_folder(path):
        return load_image_folder(path, image_size, limit, test_fraction, seed, index, verify, workers)
    return load_cifar10(path, limit)
