"""Image sources: CIFAR-10 in its original python layout, and folders of photos.

Reads images only; writes nothing. Every loader presents each split as a
`Split`: the labels and row sources are known up front, the pixels are read
batch by batch (`Split.read(start, stop)`), so memory does not grow with the
number of images. No TensorFlow here: `classify` uses these loaders to show
misclassified images.

A loader checks what it reads and raises `UserError` naming the file at fault.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from featurecache.errors import UserError, reason

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILES = ["test_batch"]
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Batch:
    images: np.ndarray          # (n, h, w, 3) uint8
    labels: np.ndarray          # (n,) int64
    sources: list[str]          # where each row came from
    skipped: list[str] = field(default_factory=list)  # unreadable files, dropped


@dataclass
class Split:
    """One split (train or test): labels and sources up front, pixels on demand."""

    labels: np.ndarray                      # (N,) int64, in the data set's own order
    sources: list[str]                      # (N,) row provenance
    read: Callable[[int, int], Batch]       # rows [start, stop) -> Batch

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str                   # "cifar10", or the image folder's name
    kind: str                   # "cifar10" | "folder"
    location: str               # absolute path of what was read
    class_names: list[str]
    image_size: int | None      # native size of `read` (CIFAR-10: 32); folders: the size asked for
    fingerprint: str            # sha256 over the content used; compared when reusing a cache
    splits: dict[str, Split]


# --------------------------------------------------------------------------- CIFAR-10


class _CifarFiles:
    """Opens the batch pickles of a folder or of the .tar.gz archive by name."""

    def __init__(self, path: Path):
        self.path = path
        self.archive = path.is_file()
        if self.archive:
            try:
                with tarfile.open(path, "r:*") as tar:
                    self.members = {
                        Path(m.name).name: m.name
                        for m in tar.getmembers()
                        if m.isfile() and Path(m.name).parent.name == CIFAR10_DIRNAME
                    }
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise UserError(
                    f"{path} is not a readable CIFAR-10 archive (not gzip/tar: {e}); "
                    f"pass the cifar-10-python.tar.gz file or the {CIFAR10_DIRNAME} folder to --data-dir"
                ) from None

    def where(self, name: str) -> str:
        return f"{self.path}:{name}" if self.archive else str(self.path / name)

    def read_bytes(self, name: str) -> bytes:
        try:
            if self.archive:
                if name not in self.members:
                    raise FileNotFoundError(name)
                with tarfile.open(self.path, "r:*") as tar:
                    f = tar.extractfile(self.members[name])
                    return f.read()
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"CIFAR-10 batch file {self.where(name)} is missing; "
                f"--data-dir needs the complete {CIFAR10_DIRNAME} folder (data_batch_1..5, test_batch)"
            ) from None
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UserError(f"cannot read {self.where(name)} ({e}); re-download CIFAR-10 or fix the file") from None


# What a CIFAR-10 batch pickle may name: numpy's array and dtype rebuilders (as the
# original Python 2 download, numpy 1 and numpy 2 write them, and protocol 5's
# buffer form), `_codecs.encode` (bytes pickled by Python 3 at protocol 2) and
# the builtin containers. None of these can run code or touch files.
CIFAR_PICKLE_GLOBALS = frozenset(
    [(m, "_reconstruct") for m in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(m, "scalar") for m in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [(m, n) for m in ("builtins", "__builtin__")
       for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float")]
)


class _ForeignGlobal(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR-10 batch never needs."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a batch, refusing any global outside CIFAR_PICKLE_GLOBALS before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in CIFAR_PICKLE_GLOBALS:
            raise _ForeignGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Pickle bytes -> (images (n, 32, 32, 3) uint8, labels (n,) int64), checked.

    A batch is a pickle, and a crafted pickle can run any code while it loads:
    only the few globals a real batch needs are admitted (CIFAR_PICKLE_GLOBALS),
    so anything else is refused before an object is built."""
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _ForeignGlobal as e:
        raise UserError(
            f"{where} is not a plain CIFAR-10 batch: it asks to load {e}; refusing to run code from it; "
            "re-download CIFAR-10 or replace the file"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a broken file
        raise UserError(
            f"{where} is not a readable CIFAR-10 batch (truncated or corrupt: {type(e).__name__}); "
            "re-download CIFAR-10 or replace the file"
        ) from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise UserError(
            f"{where} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels'); "
            "point --data-dir at the original python version of CIFAR-10"
        )
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise UserError(
            f"{where} has data of shape {shape}, expected (n, 3072) uint8 rows; "
            "point --data-dir at the original python version of CIFAR-10"
        )
    data = np.asarray(data)  # a plain ndarray, not a subclass that reshapes differently
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError, OverflowError):  # ragged lists and the like
        labels = np.asarray(None)
    # refuse floats (0.5 would silently become 0) and ints beyond int64 (object arrays)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise UserError(f"{where} has labels that are not integers; replace the file")
    labels = labels.astype(np.int64)
    if len(labels) != len(data):
        raise UserError(f"{where} has {len(data)} images but {len(labels)} labels; replace the file")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(
            f"{where} has labels outside 0-9 (found {labels.min()}..{labels.max()}); "
            "this is not CIFAR-10: replace the file"
        )
    # rows are 1,024 red, 1,024 green, 1,024 blue values of a row-major 32x32 image
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _locate_cifar(path: Path) -> Path:
    if not path.exists():
        raise UserError(
            f"--data-dir {path} does not exist; pass the {CIFAR10_DIRNAME} folder, "
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
    files = _CifarFiles(path)
    digest = hashlib.sha256()
    splits = {}
    for split, names in (("train", CIFAR10_TRAIN_FILES), ("test", CIFAR10_TEST_FILES)):
        labels, sources, spans = [], [], []
        start = 0
        for name in names:
            images, lab = _parse_cifar_batch(files.read_bytes(name), files.where(name))
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


def _cifar_reader(files: _CifarFiles, spans, labels) -> Callable[[int, int], Batch]:
    cache: dict[str, np.ndarray] = {}  # keeps one batch file's pixels (~30 MB) at a time

    def pixels(name: str) -> np.ndarray:
        if name not in cache:
            cache.clear()
            cache[name] = _parse_cifar_batch(files.read_bytes(name), files.where(name))[0]
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


def cifar10_image(location: str, source: str) -> np.ndarray:
    """The (32, 32, 3) uint8 image a cache row's source ("data_batch_1/17") names."""
    name, index = source.rsplit("/", 1)
    return _cifar_batch_pixels(location, name)[int(index)]


@functools.lru_cache(maxsize=2)
def _cifar_batch_pixels(location: str, name: str) -> np.ndarray:
    """One batch file's pixels, kept while a gallery reads many rows of it (~30 MB each)."""
    files = _CifarFiles(Path(location))
    return _parse_cifar_batch(files.read_bytes(name), files.where(name))[0]


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
        raise UserError(
            f"could not download CIFAR-10 ({reason(e)}); pass --data-dir PATH to a local "
            f"{CIFAR10_DIRNAME} folder or cifar-10-python.tar.gz (make features DATA_DIR=PATH)"
        ) from None
    for candidate in (path, path / CIFAR10_DIRNAME, path.parent / CIFAR10_DIRNAME):
        if (candidate / "test_batch").exists():
            return candidate
    raise UserError(f"the CIFAR-10 download in {path} is incomplete; delete it and run again, or use --data-dir")


# --------------------------------------------------------------------------- image folders


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(root: Path, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Files under root/<class>/ (sorted), as paths relative to root, with labels."""
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            raise UserError(f"class folder {folder} is missing; every split needs the same class subfolders")
        found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not found:
            raise UserError(f"class folder {folder} is empty; add images to it or remove it")
        files.extend(str(p.relative_to(root)) for p in found)
        labels.extend([label] * len(found))
    return files, np.asarray(labels, dtype=np.int64)


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode any photo to (size, size, 3) uint8 RGB: EXIF orientation honoured, squashed to square."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode at reduced scale: much faster for big photos
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im)
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(im, dtype=np.uint8)


def _folder_reader(root: Path, files: list[str], labels: np.ndarray, size: int) -> Callable[[int, int], Batch]:
    def read(start: int, stop: int) -> Batch:
        images, keep, skipped = [], [], []
        for i in range(start, stop):
            try:
                images.append(load_image(root / files[i], size))
                keep.append(i)
            except Exception:  # noqa: BLE001 - not an image or broken: skipped and listed, never a crash
                skipped.append(files[i])
        pixels = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        return Batch(pixels, labels[keep], [files[i] for i in keep], skipped)

    return read


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(test_fraction * len(idx)))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        test.extend(rng.choice(idx, size=k, replace=False))
    test_mask = np.zeros(len(labels), bool)
    test_mask[np.asarray(test, dtype=np.int64)] = True
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def is_image_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / "train").is_dir() and (path / "test").is_dir():
        return True
    return bool(_class_dirs(path)) and not (path / "data_batch_1").exists()


def load_image_folder(
    path: str | os.PathLike, size: int, limit: int | None = None, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Photos in class subfolders: `root/train/<class>/`, `root/test/<class>/`, or
    `root/<class>/` split into train and test by `test_fraction` (stratified, seeded).
    Class names are the folder names in sorted order; sources are paths relative to root."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"--data-dir {root} does not exist or is not a folder")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if split_layout else root
    class_names = [p.name for p in _class_dirs(class_root)]
    if len(class_names) < 2:
        raise UserError(
            f"{class_root} has {len(class_names)} class subfolder(s); an image folder needs one subfolder "
            "per class (at least two), either directly or under train/ and test/"
        )
    if split_layout:
        test_names = [p.name for p in _class_dirs(root / "test")]
        if test_names != class_names:
            raise UserError(
                f"{root}/train and {root}/test have different class folders ({class_names} vs {test_names}); "
                "give both the same subfolders"
            )
        per_split = {s: _scan_classes(root / s, class_names) for s in ("train", "test")}
        per_split = {s: ([f"{s}/{f}" for f in files], lab) for s, (files, lab) in per_split.items()}
    else:
        files, lab = _scan_classes(root, class_names)
        tr, te = _stratified_split(lab, test_fraction, seed)
        per_split = {"train": ([files[i] for i in tr], lab[tr]), "test": ([files[i] for i in te], lab[te])}

    digest = hashlib.sha256()
    splits = {}
    for split, (files, lab) in per_split.items():
        n = len(files) if limit is None else min(limit, len(files))
        files, lab = files[:n], lab[:n]
        for f in files:
            digest.update(f"{split}/{f}:{(root / f).stat().st_size}\n".encode())
        splits[split] = Split(lab, files, _folder_reader(root, files, lab, size))
    return Dataset(
        name=root.name,
        kind="folder",
        location=str(root),
        class_names=class_names,
        image_size=size,
        fingerprint=digest.hexdigest(),
        splits=splits,
    )


def load_dataset(
    data_dir: str | os.PathLike | None,
    image_size: int,
    limit: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """CIFAR-10 (downloaded when data_dir is None) or a folder of photos, by what data_dir holds."""
    if data_dir is None:
        return load_cifar10(download_cifar10(), limit)
    path = Path(data_dir).expanduser()
    if path.is_dir() and is_image_folder(path) and not (path / CIFAR10_DIRNAME).is_dir():
        return load_image_folder(path, image_size, limit, test_fraction, seed)
    return load_cifar10(path, limit)


def source_image(kind: str, location: str, source: str, size: int = 64) -> np.ndarray:
    """The picture behind one cache row, for galleries: (h, w, 3) uint8."""
    if kind == "cifar10":
        return cifar10_image(location, source)
    return load_image(Path(location) / source, size)


__all__ = [
    "Batch", "Split", "Dataset", "CIFAR10_CLASSES", "load_cifar10", "load_image_folder",
    "load_dataset", "load_image", "download_cifar10", "source_image",
]
