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
import json
import os
import pickle
import re
import tarfile
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.model_selection import train_test_split

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

@dataclass
class Batch:
    images: np.ndarray          # (n, h, w, 3) uint8
    labels: np.ndarray          # (n,) int64
    sources: list[str]          # where each row came from
    skipped: list[str] = field(default_factory=list)  # unreadable files, dropped


@dataclass
class Split:
    """One split (train, val or test): labels and sources up front, pixels on demand."""

    labels: np.ndarray                      # (N,) int64, in the data set's own order
    sources: list[str]                      # (N,) row provenance
    read: Callable[[int, int], Batch]       # rows [start, stop) -> Batch
    first_row: int = 0                      # index of row 0 in the whole split (a shard's slice starts later)

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
    splits: dict[str, Split]    # "train", optionally "val", "test", in that order
    not_images: list[str] = field(default_factory=list)  # files in a photo folder that are not images
    index: str | None = None    # photo folders: where per-file digests are kept between runs
    index_data: dict | None = None  # the digests, updated in memory; written by `save_index`

    def changes_since(self, fingerprint: str) -> str:
        """Which files were added, removed or changed since the data had `fingerprint` ("" if unknown)."""
        return changes_since(self.index_data, fingerprint, self.fingerprint) if self.index_data else ""

    def save_index(self) -> None:
        """Keep the digests for the next run; called once the run has something it keeps, so a run
        refused for bad input leaves nothing behind."""
        if self.index is not None and self.index_data is not None:
            _write_index(self.index, self.index_data)


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


# --------------------------------------------------------------------------- decoding


def _to_8bit(im):
    """High-bit-depth single-channel images (I;16*, I, F) -> mode L, scaled, not clipped.

    I;16: value / 257 (65535 -> 255, and a 16-bit copy of an 8-bit image gives its pixels back).
    I: a PNG's I is 16-bit grey (/257); otherwise values in 0..255 are taken as 8-bit, in
    0..65535 as 16-bit, anything else is stretched from its own min..max.
    F: values in 0..1 are scaled by 255, in 0..255 kept, anything else stretched from min..max."""
    from PIL import Image

    a = np.asarray(im).astype(np.float64)  # (h, w)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and (im.format == "PNG" or (lo >= 0 and 255 < hi <= 65535))):
        a = a / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif not (lo >= 0 and hi <= 255):
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


class ImageProblem(OSError):
    """Why one image file cannot be used, in a few words ("not an image", "unreadable: ...", "too large: ..."):
    a reason to skip the file and say so, never a crash. An OSError, as Pillow's own failure to open one is."""


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode any photo to (size, size, 3) uint8 RGB: EXIF orientation honoured, squashed to square.

    Used by extract and predict alike. 16-bit and float images are scaled to 8 bits
    (see `_to_8bit`); transparent images are composited on white. A file that cannot be
    used raises ImageProblem with the reason; an image over Pillow's decompression-bomb
    limit (Image.MAX_IMAGE_PIXELS) is one, decoded by neither."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path) as im:
            return _decode(im, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels, " if found else ""
        raise ImageProblem(f"too large: {pixels}over the decompression-bomb limit of "
                           f"{Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise ImageProblem(unrecognised(path)) from None
    except Exception as e:  # noqa: BLE001 - a broken file fails in many ways; each is a reason to skip it
        raise ImageProblem(f"unreadable: {reason(e)}") from None


def open_image(path: str | os.PathLike):
    """Pillow's Image.open, with an image over the decompression-bomb limit an exception
    (DecompressionBombWarning or DecompressionBombError), never a printed warning."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _decode(im, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    if im.format == "JPEG":
        im.draft("RGB", (size, size))  # decode at reduced scale: much faster for big photos
    ImageOps.exif_transpose(im, in_place=True)  # in place: a copy of every photo cost a tenth of the decode
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != "RGB":   # convert() copies even an RGB image
        im = im.convert("RGB")
    im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def unrecognised(path: str | os.PathLike) -> str:
    """The skip reason for a file whose header Pillow does not recognise: an image ending makes it a broken
    image ("unreadable"), any other ending "not an image"."""
    if os.path.splitext(os.fspath(path))[1].lower() in image_suffixes():
        return "unreadable: Pillow does not recognise its contents as an image"
    return "not an image"


# --------------------------------------------------------------------------- walking folders

# names that systems and tools leave in photo folders; never images, skipped silently
JUNK_NAMES = {"__macosx", "thumbs.db", "desktop.ini"}
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
SPLIT_ORDER = ("train", "val", "test")


def image_suffixes() -> set[str]:
    """File name endings Pillow can open (.jpg, .jfif, .jpe, .png, .tif, ...), lower case."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _is_image_file(path: str, suffixes: set[str]) -> bool:
    """A known image ending and a header Pillow recognises (the pixels are not decoded)."""
    from PIL import Image

    if os.path.splitext(path)[1].lower() not in suffixes:
        return False
    try:
        with open_image(path):
            return True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return True    # an image, too large to decode: load_image says so
    except Exception:  # noqa: BLE001 - any failure to recognise the header means "not an image"
        return False


def _subfolders(folder: str, seen: set[str]) -> list[str]:
    """Visible child folders (symlinks followed) whose real path has not been seen, by name.

    Each one's real path is added to `seen`, so a link back up (`ln -s . loop`) or to a
    sibling is never entered twice."""
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _hidden(entry.name) or not entry.is_dir():
            continue
        real = os.path.realpath(entry.path)
        if real not in seen:
            seen.add(real)
            found.append(entry.path)
    return found


def walk_images(folder: str | os.PathLike, seen: set[str] | None = None) -> tuple[list[str], list[str]]:
    """Every image under `folder`, and every other file there, as paths (sorted, depth first).

    Follows symlinked files and folders but enters each real folder once; skips hidden
    entries (a leading dot), `__MACOSX`, `Thumbs.db` and `desktop.ini` silently. A file
    is an image when its ending is one Pillow knows and Pillow recognises its header;
    other files come back in the second list ("not images")."""
    folder = os.fspath(folder)
    seen = set() if seen is None else seen
    seen.add(os.path.realpath(folder))
    suffixes = image_suffixes()
    images, others = [], []

    def walk(path: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if _hidden(entry.name):
                continue
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in seen:
                    seen.add(real)
                    walk(entry.path)
            elif entry.is_file():
                (images if _is_image_file(entry.path, suffixes) else others).append(entry.path)

    walk(folder)
    return images, others


def escape_name(relative: str) -> str:
    """A relative path as printable UTF-8 text: undecodable bytes of a file name become \\xNN."""
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def source_path(root: str | os.PathLike, source: str) -> Path:
    """The file a row's source names under `root`, undoing `escape_name` where needed."""
    plain = Path(root) / source
    if plain.exists() or "\\x" not in source:
        return plain
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), source.encode("utf-8"))
    return Path(root) / os.fsdecode(raw)


# --------------------------------------------------------------------------- image folders


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
        raise UserError(
            f"--test-fraction {test_fraction} of {n} images leaves a class without a training or test image; "
            "give every class at least two images, pass a fraction nearer 0.5, or add train/ and test/ folders"
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
    top = _subfolders(root, seen)
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
    names = [os.path.basename(p) for p in _subfolders(folder, set([os.path.realpath(folder)]))]
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
        raise UserError(f"--data-dir {root} does not exist or is not a folder")
    folders, class_names, on_disk = _layout(root)
    listings = _listings(root, folders, on_disk, test_fraction, seed)
    splits, used = {}, {}
    for split, listing in listings.items():
        rows = _subset(listing.labels, limit, seed) if limit is not None else np.arange(len(listing.files))
        files, lab = [listing.files[i] for i in rows], listing.labels[rows]
        used[split] = files
        splits[split] = Split(lab, files, FolderReader(root, files, lab, size, workers))
    index_data = _read_index(index) if index is not None else None
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


# --------------------------------------------------------------------------- content fingerprints

INDEX_VERSION = 1
KEPT_SNAPSHOTS = 3  # file lists of the last fingerprints, to say what changed since a cache was made


def index_path(cache: str | os.PathLike) -> Path:
    """Where the digests of a photo folder's files are kept beside its cache: `<cache>.index.json`."""
    cache = Path(cache)
    return cache.with_name(cache.name + ".index.json")


def _read_index(index: str | os.PathLike | None) -> dict:
    try:
        data = json.loads(Path(index).read_text()) if index is not None else {}
        if data.get("version") == INDEX_VERSION and isinstance(data.get("files"), dict):
            return data
    except (OSError, ValueError, AttributeError):
        pass  # missing or damaged: every file is hashed again
    return {"version": INDEX_VERSION, "files": {}, "snapshots": {}}


def _write_index(index: str | os.PathLike, data: dict) -> None:
    from featurecache.files import write_text

    try:
        Path(index).parent.mkdir(parents=True, exist_ok=True)
        write_text(index, json.dumps(data, separators=(",", ":"), allow_nan=False))
    except OSError:
        pass  # the index only saves time: a folder that cannot hold it costs a full hash next run


def hash_files(root: Path, files: list[str], index_data: dict | None = None, verify: bool = False) -> dict[str, str]:
    """{source: sha256 of its bytes} for files under root, streamed.

    With `index_data` (an index read by `_read_index`), digests are reused for files whose
    (size, mtime_ns) have not changed since they were hashed, and it is updated in memory;
    `verify` hashes every file again."""
    from featurecache.files import sha256

    data = index_data if index_data is not None else _read_index(None)
    known = data["files"]
    out = {}
    for f in files:
        st = os.stat(source_path(root, f))
        entry = known.get(f)
        if verify or not (isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns]):
            entry = [st.st_size, st.st_mtime_ns, sha256(source_path(root, f))]
            known[f] = entry
        out[f] = entry[2]
    return out


def remember(data: dict, fingerprint: str, contents: dict[str, str]) -> None:
    """Keep which files (and digests) made `fingerprint`, for `changes_since` (in memory)."""
    snapshots = data.setdefault("snapshots", {})
    snapshots.pop(fingerprint, None)
    snapshots[fingerprint] = contents  # newest last
    for old in list(snapshots)[:-KEPT_SNAPSHOTS]:
        del snapshots[old]


def changes_since(index_data: dict, old: str, new: str, shown: int = 3) -> str:
    """What differs between the files behind fingerprints `old` and `new`, as one short phrase
    ("2 added: a.jpg, b.jpg; 1 changed: c.jpg"); "" when the index does not remember `old`."""
    snapshots = index_data.get("snapshots", {})
    if old not in snapshots or new not in snapshots:
        return ""
    a, b = snapshots[old], snapshots[new]

    def part(label: str, keys: list[str]) -> str:
        names = sorted(keys)
        return f"{len(names)} {label}: {', '.join(names[:shown])}{' ...' if len(names) > shown else ''}"

    added = [k for k in b if k not in a]
    removed = [k for k in a if k not in b]
    changed = [k for k in b if k in a and a[k] != b[k]]
    return "; ".join(part(label, keys) for label, keys in
                     (("added", added), ("removed", removed), ("changed", changed)) if keys)


# --------------------------------------------------------------------------- choosing a loader


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


def source_image(kind: str, location: str, source: str, size: int = 64) -> np.ndarray:
    """The picture behind one cache row, for galleries: (h, w, 3) uint8."""
    if kind == "cifar10":
        return cifar10_image(location, source)
    return load_image(source_path(location, source), size)


__all__ = [
    "Batch", "Split", "Dataset", "CIFAR10_CLASSES", "load_cifar10", "load_image_folder",
    "load_dataset", "load_image", "ImageProblem", "open_image", "unrecognised", "download_cifar10", "source_image",
    "walk_images", "image_suffixes",
    "index_path", "changes_since", "dataset_name", "source_path", "escape_name", "hash_files",
]
