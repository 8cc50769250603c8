"""CIFAR-10's batch files (the original python layout), read safely: the format, not the data set.

    CIFAR10_CLASSES, CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILES, CIFAR10_DIRNAME   the layout's names
    CifarFiles          opens the batch pickles of a folder or of the .tar.gz archive by name
    parse_cifar_batch   pickle bytes -> (images, labels), checked; a pickle that asks for code is refused
    cifar10_image       the picture behind one cache row of a CIFAR-10 cache, for galleries

Shared by extract (which loads the data set from these files) and classify (which shows a cache's
rows). No TensorFlow here.
"""

from __future__ import annotations

import functools
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from featurecache.errors import SettingError, UserError

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILES = ["test_batch"]
CIFAR10_DIRNAME = "cifar-10-batches-py"


class CifarFiles:
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
                raise SettingError(
                    f"{path} is not a readable CIFAR-10 archive (not gzip/tar: {e}); "
                    f"pass the cifar-10-python.tar.gz file or the {CIFAR10_DIRNAME} folder as `data_dir`",
                    setting="data_dir"
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
            raise SettingError(
                f"CIFAR-10 batch file {self.where(name)} is missing; "
                f"`data_dir` needs the complete {CIFAR10_DIRNAME} folder (data_batch_1..5, test_batch)",
                setting="data_dir"
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


def parse_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
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
        raise SettingError(
            f"{where} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels'); "
            "point `data_dir` at the original python version of CIFAR-10", setting="data_dir"
        )
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise SettingError(
            f"{where} has data of shape {shape}, expected (n, 3072) uint8 rows; "
            "point `data_dir` at the original python version of CIFAR-10", setting="data_dir"
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


def cifar10_image(location: str, source: str) -> np.ndarray:
    """The (32, 32, 3) uint8 image a cache row's source ("data_batch_1/17") names."""
    name, index = source.rsplit("/", 1)
    return _cifar_batch_pixels(location, name)[int(index)]


@functools.lru_cache(maxsize=2)
def _cifar_batch_pixels(location: str, name: str) -> np.ndarray:
    """One batch file's pixels, kept while a gallery reads many rows of it (~30 MB each)."""
    files = CifarFiles(Path(location))
    return parse_cifar_batch(files.read_bytes(name), files.where(name))[0]
