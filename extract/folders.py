"""Folders of photos with one subfolder per class, optionally under train/ (val/, test/), as a `Dataset`.

The layout is checked (split folders, the same classes in each, a readable image in every class),
a split without its own folder is carved from train (stratified, seeded), and each batch is decoded
by a pool of threads. The fingerprint hashes every file's bytes (extract.index keeps the digests).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from extract.data import Batch, Dataset, Split
from extract.index import hash_files, read_index, remember
from featurecache.cifar import CIFAR10_DIRNAME
from featurecache.errors import SettingError, UserError
from featurecache.images import escape_name, load_image, source_path, subfolders, walk_images

SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
SPLIT_ORDER = ("train", "val", "test")


@dataclass
class _Listing:
    """What one split folder holds: rows (escaped paths relative to the data root) and labels."""

    files: list[str]
    labels: np.ndarray            # (n,) int64
    not_images: list[str]         # files that are not images, skipped


def _list_split(root: str, folder: str, class_names: list[str], seen: set[str]) -> _Listing:
    """Images of each class folder under `folder`; refuses a class without one readable image."""
    files, labels, not_images = [], [], []
    # every class folder counts as seen before any is walked: a link from one class into another adds nothing
    seen.update(os.path.realpath(os.path.join(folder, name)) for name in class_names)
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            raise UserError(f"class folder {class_dir} is missing; every split needs the same class subfolders")
        images, others = walk_images(class_dir, seen)
        rel = [escape_name(os.path.relpath(p, root)) for p in others]
        not_images.extend(rel)
        if not images:
            if not others:
                raise UserError(f"class folder {class_dir} is empty; add images to it or remove it")
            shown = ", ".join(rel[:5]) + (f" and {len(rel) - 5} more" if len(rel) > 5 else "")
            raise UserError(
                f"class folder {class_dir} has no readable image ({len(rel)} file(s) skipped, not images: {shown}); "
                "add images to it or remove it"
            )
        files.extend(escape_name(os.path.relpath(p, root)) for p in images)
        labels.extend([label] * len(images))
    return _Listing(files, np.asarray(labels, dtype=np.int64), not_images)


def decode_workers(workers: int | None) -> int:
    """--decode-workers: the number given, or every core this process may run on."""
    if workers is not None:
        return max(1, int(workers))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


class FolderReader:
    """Rows [start, stop) decoded by a pool of `workers` threads (PIL's decoders and resize release
    the GIL), returned in row order whatever the order they finish in.

    The pool starts on the first read and is not pickled: Ray ships readers to its tasks, and each
    process gets a pool of its own."""

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, size: int, workers: int = 1):
        self.root, self.files, self.labels, self.size, self.workers = root, files, labels, size, workers
        self.pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "pool": None}

    def decode(self, i: int) -> np.ndarray | None:
        try:
            return load_image(source_path(self.root, self.files[i]), self.size)
        except Exception:  # noqa: BLE001 - broken past its header: skipped and listed, never a crash
            return None

    def __call__(self, start: int, stop: int) -> Batch:
        if self.pool is None and self.workers > 1:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        rows = range(start, stop)
        decoded = self.pool.map(self.decode, rows) if self.pool else map(self.decode, rows)
        images, keep, skipped = [], [], []
        for i, image in zip(rows, decoded):
            if image is None:
                skipped.append(self.files[i])
            else:
                images.append(image)
                keep.append(i)
        pixels = np.stack(images) if images else np.zeros((0, self.size, self.size, 3), np.uint8)
        return Batch(pixels, self.labels[keep], [self.files[i] for i in keep], skipped)


def _split_off(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), stratified and seeded; ceil(fraction x n) test rows as classify/training/data.py takes."""
    n, n_classes = len(labels), len(np.unique(labels))
    counts = np.bincount(labels)
    n_test = int(np.ceil(test_fraction * n))
    if (counts[counts > 0] < 2).any() or n_test < n_classes or n - n_test < n_classes:
        raise SettingError(
            f"test_fraction={test_fraction} of {n} images leaves a class without a training or "
            "test image; give every class at least two images, pass a fraction nearer 0.5, or add train/ and test/ "
            "folders"
        )
    train, test = train_test_split(np.arange(n), test_size=n_test, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def _subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """`limit` rows with the class proportions of `labels`, seeded, in the folder's order."""
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    n_classes = len(np.unique(labels))
    if limit < n_classes:
        raise UserError(f"--limit {limit} is fewer than the {n_classes} classes; pass at least {n_classes}")
    try:
        rows, _ = train_test_split(np.arange(n), train_size=limit, stratify=labels, random_state=seed)
    except ValueError:  # a class of one image, or too few rows left out to stratify: a plain seeded sample
        rows, _ = train_test_split(np.arange(n), train_size=limit, random_state=seed)
    return np.sort(rows)


def _split_folders(root: str, seen: set[str]) -> dict[str, str]:
    """{"train"|"val"|"test": folder} when the top level is split folders; {} when it is classes."""
    top = subfolders(root, seen)
    named = {os.path.basename(p): SPLIT_NAMES.get(os.path.basename(p).lower()) for p in top}
    splits = {n: s for n, s in named.items() if s}
    if not splits:
        for p in top:  # class folders: let the walker enter them
            seen.discard(os.path.realpath(p))
        return {}
    others = sorted(n for n, s in named.items() if not s)
    if others:
        raise UserError(
            f"{root} mixes split folders ({', '.join(sorted(splits))}) with other folders ({', '.join(others)}); "
            "put class folders only inside train/ (and val/, test/), or use class folders only"
        )
    found: dict[str, str] = {}
    for name, split in sorted(splits.items()):
        if split in found:
            raise UserError(
                f"{root} has two {split} folders ({os.path.basename(found[split])}, {name}); keep one of them"
            )
        found[split] = os.path.join(root, name)
    if "train" not in found:
        raise UserError(f"{root} has {', '.join(sorted(splits))} but no train/ folder; add train/<class>/ folders")
    return found


def _class_folders(folder: str) -> dict[str, str]:
    """{class name (NFC-normalised) -> folder name as on disk}, sorted by class name.

    Folders copied from macOS often carry decomposed (NFD) names, Linux ones composed (NFC): the
    same class either way."""
    names = [os.path.basename(p) for p in subfolders(folder, set([os.path.realpath(folder)]))]
    return dict(sorted((unicodedata.normalize("NFC", n), n) for n in names))


def _layout(root: Path) -> tuple[dict[str, str], list[str], dict[str, dict[str, str]]]:
    """Split folders, class names and, per split, each class's folder name on disk; checked."""
    folders = _split_folders(str(root), {str(root)})
    class_root = folders.get("train", str(root))
    classes = _class_folders(class_root)
    class_names = list(classes)
    if len(class_names) < 2:
        loose, _ = walk_images(class_root, set()) if not class_names else ([], [])
        lacks = f"holds {len(loose)} loose image(s) and no class subfolders" if not class_names else "has one class subfolder"
        raise UserError(
            f"{class_root} {lacks}; an image folder needs one subfolder per class (at least two: "
            f"{class_root}/cats/, {class_root}/dogs/), directly or under train/ (and test/), "
            f"or pass a {CIFAR10_DIRNAME} folder"
        )
    on_disk = {}
    for split, folder in (folders or {"train": str(root)}).items():
        these = _class_folders(folder)
        if list(these) != class_names:
            only = sorted(set(class_names) ^ set(these))
            raise UserError(
                f"{class_root} and {folder} have different class folders (only in one of them: "
                f"{', '.join(ascii(n) for n in only[:5])}); give every split the same subfolders"
            )
        on_disk[split] = these
    return folders, class_names, on_disk


def _listings(root: Path, folders: dict[str, str], on_disk: dict[str, dict[str, str]],
              test_fraction: float, seed: int) -> dict[str, _Listing]:
    """Files and labels per split; a split without its own folder is carved from train (stratified)."""
    seen = {str(root)} | {os.path.realpath(f) for f in folders.values()}
    listings = {s: _list_split(str(root), folders[s], list(on_disk[s].values()), seen)
                for s in SPLIT_ORDER if s in folders}
    if "test" not in folders:
        train = listings.pop("train") if folders else _list_split(str(root), str(root), list(on_disk["train"].values()), seen)
        tr, te = _split_off(train.labels, test_fraction, seed)
        val = listings.pop("val", None)
        listings = {"train": _Listing([train.files[i] for i in tr], train.labels[tr], train.not_images)}
        if val is not None:
            listings["val"] = val
        listings["test"] = _Listing([train.files[i] for i in te], train.labels[te], [])
    return listings


def load_image_folder(
    path: str | os.PathLike,
    size: int,
    limit: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    index: str | os.PathLike | None = None,
    verify: bool = False,
    workers: int | None = None,
) -> Dataset:
    """Photos in class subfolders: `root/<class>/` split into train and test by `test_fraction`
    (stratified, seeded), or `root/train/<class>/` with `test/` and/or `val/` beside it
    (Train, training, valid, validation, Testing... in any case).

    Class names are the folder names (NFC-normalised) in sorted order; sources are paths relative
    to root. `limit` keeps a stratified, seeded subset of each split. The fingerprint hashes every
    file's bytes; `index` is a JSON file where digests are kept between runs so that only
    files whose size or mtime changed are read again (all of them with `verify`). `workers`
    threads decode each batch (`decode_workers`: default every core)."""
    workers = decode_workers(workers)
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise SettingError(f"data_dir={str(root)!r} does not exist or is not a folder")
    folders, class_names, on_disk = _layout(root)
    listings = _listings(root, folders, on_disk, test_fraction, seed)
    splits, used = {}, {}
    for split, listing in listings.items():
        rows = _subset(listing.labels, limit, seed) if limit is not None else np.arange(len(listing.files))
        files, lab = [listing.files[i] for i in rows], listing.labels[rows]
        used[split] = files
        splits[split] = Split(lab, files, FolderReader(root, files, lab, size, workers))
    index_data = read_index(index) if index is not None else None
    contents = hash_files(root, [f for files in used.values() for f in files], index_data, verify)
    digest = hashlib.sha256()
    for split, files in used.items():
        for f in files:
            digest.update(f"{split}\0{f}\0{contents[f]}\n".encode())
    fingerprint = digest.hexdigest()
    if index_data is not None:
        remember(index_data, fingerprint, {f: contents[f] for files in used.values() for f in files})
    return Dataset(name=root.name, kind="folder", location=str(root), class_names=class_names, image_size=size,
                   fingerprint=fingerprint, splits=splits,
                   not_images=[f for listing in listings.values() for f in listing.not_images],
                   index=str(index) if index is not None else None, index_data=index_data)
