"""The feature cache: one HDF5 file per extraction, and its checked reader.

Layout (format_version 1):
    /train/features  (N, D) float32 (or float16 with --store-dtype float16)
    /train/labels    (N,)   int64, in the data set's own order
    /train/sources   (N,)   str: "data_batch_1/17" for CIFAR-10, a path relative to the data folder otherwise
    /test/...        the same
    /val/...         the same, only when the data set has a validation split
    /train/view_features  (N, K, D) float32, only with --augment: K augmented views of each training
                     row, in the order of /train/features (which stays the un-augmented features)
    /test/view_features   (N, K', D), only with --test-views K': views for test-time augmentation
    /train/groups    (N,)   int64, optional (`write_groups`): the source image each row was made from,
                     where a data set holds several copies of one image (a tiled set's flips and
                     shifts); classify draws its validation split by these groups. Caches without it
                     read as before (`SplitData.groups` is None).
    root attributes: format="featurecache", format_version, dataset, data_kind, data_location,
    data_fingerprint, backbone, pooling, image_size, model_size, weights, seed, precision,
    runtime (tensorflow | openvino: what computed it), precision_runtime (the runtime where the
    precision is not float32, "" otherwise: float32 features agree across runtimes within rounding),
    class_names, feature_dim, n_train, n_test, skipped (JSON), config (JSON), versions (JSON), created,
    augment ("flip,crop", "" without views), views, rotate_degrees, test_views.

Files are written with HDF5 1.10 metadata (checksummed object headers) and
fletcher32 checksums on features, labels and sources, so damage is reported
as an error instead of being read as numbers (or crashing the HDF5 library).
Strings (sources and attributes) are fixed-length UTF-8, stored inline under
those checksums; h5py hands them back as bytes, `read_cache` as str. Caches
with variable-length strings, as the first writer made them, still read.

A cache is written aside (`<name>.tmp`) and renamed into place only when
complete, so a file at the cache's path is always a finished one; an
interrupted extraction leaves `<name>.partial/` beside it instead.

h5py and numpy only: `classify` reads caches without importing TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featurecache.errors import UserError
from featurecache.files import atomic_path, write_text

# what h5py raises on a damaged file, depending on where the damage is
_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError)

FORMAT = "featurecache"
FORMAT_VERSION = 1
SPLITS = ("train", "test")
REQUIRED_ATTRS = ("dataset", "backbone", "pooling", "image_size", "weights", "class_names")
# settings that define a cache: a cache is reused only if all of these match
IDENTITY_ATTRS = (
    "data_fingerprint", "backbone", "pooling", "image_size", "weights", "weights_sha256", "backbone_sha256",
    "feature_layer", "seed", "precision", "precision_runtime", "limit", "test_fraction", "store_dtype",
    "augment", "views", "rotate_degrees", "test_views",
)
# what a cache written before an identity attribute existed is taken to have had (no views)
IDENTITY_DEFAULTS = {"augment": "", "views": 0, "rotate_degrees": 0.0, "test_views": 0}
LATEST = "LATEST"  # features/LATEST names the cache the last extract run wrote


def features_dir() -> Path:
    """The features folder: ./features, or FEATURECACHE_FEATURES_DIR where set (tests point it elsewhere)."""
    return Path(os.environ.get("FEATURECACHE_FEATURES_DIR") or "features")


@dataclass
class SplitData:
    features: np.ndarray | None    # (N, D) float32; None when read with read_cache(features=False)
    labels: np.ndarray      # (N,) int64
    sources: np.ndarray     # (N,) str
    views: np.ndarray | None = None  # (N, K, D) float32 augmented views of each row, when the cache has them
    groups: np.ndarray | None = None  # (N,) int64 source-image id of each row, when the cache records one


@dataclass
class Cache:
    path: Path
    attrs: dict
    train: SplitData
    test: SplitData
    val: SplitData | None = None    # the data set's own validation split, when it has one
    file: "CacheFile | None" = None  # the open file the features are streamed from (read with features=False)

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    def __repr__(self) -> str:
        """One line for a notebook: the file, each split's rows, the classes and the backbone (not the arrays)."""
        splits = ", ".join(f"{name} {len(split.labels):,}" for name, split in
                           (("train", self.train), ("test", self.test), ("val", self.val)) if split is not None)
        return (f"Cache('{self.path}', {splits} rows x {self.attrs.get('feature_dim', '?')}, "
                f"{len(self.class_names)} classes, {self.attrs.get('backbone')} {self.attrs.get('pooling')} "
                f"{self.attrs.get('image_size')}px)")


def partial_dir(path: str | os.PathLike) -> Path:
    """Where an unfinished extraction of `path` keeps its checkpoints."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _plain(value):
    """HDF5 attribute -> plain Python (str, int, float, list of str)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_cache(path: str | os.PathLike, attrs: dict, splits: dict[str, list[dict]], store_dtype: str = "float32") -> Path:
    """Assemble checkpoint parts into the final cache, atomically.

    `splits[name]` is a list of parts, each a dict with "features" (n, D),
    "labels" (n,) and "sources" (n,), or the path of an .npz file holding
    them, concatenated in order. Parts on disk are read one at a time, so
    memory holds one part, not the whole cache.
    """
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver=("v110", "latest")) as f:
        for split, parts in splits.items():
            heads = [_part(p, ("labels", "sources")) for p in parts]  # small: labels and names only
            n = sum(len(h["labels"]) for h in heads)
            width = max([len(s.encode()) for h in heads for s in h["sources"]] + [1])
            dim = int(attrs["feature_dim"])
            g = f.create_group(split)
            # fletcher32: a flipped bit in the numbers is an error on reading, not a silent change
            feats = _dataset(g, "features", (n, dim), store_dtype, 256)
            labels = _dataset(g, "labels", (n,), "int64", 65536)
            sources = _dataset(g, "sources", (n,), h5py.string_dtype("utf-8", width), 65536)
            # an empty split (a shard's empty slice) takes its number of views from the attributes
            n_views = _views_in(parts[0]) if parts else views_of(attrs, split)
            views = (_dataset(g, "view_features", (n, n_views, dim), store_dtype, max(1, 256 // n_views))
                     if n_views else None)
            row = 0
            for part in parts:
                part = _part(part, ("features", "labels", "sources") + (("view_features",) if n_views else ()))
                k = len(part["labels"])
                feats[row : row + k] = part["features"]
                if views is not None:
                    views[row : row + k] = part["view_features"]
                labels[row : row + k] = part["labels"]
                sources[row : row + k] = _fixed_utf8(part["sources"], sources.dtype.itemsize)
                row += k
            attrs[f"n_{split}"] = n
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, (dict, tuple)) or (isinstance(value, list) and key != "class_names"):
                value = json.dumps(value, allow_nan=False)
            if key == "class_names" or isinstance(value, str):
                value = _fixed_utf8(value)
                f.attrs.create(key, value, dtype=value.dtype)
                continue
            f.attrs[key] = value
        f.attrs.create("format", _fixed_utf8(FORMAT), dtype=_fixed_utf8(FORMAT).dtype)
        f.attrs["format_version"] = FORMAT_VERSION
    return path


def _dataset(group: h5py.Group, name: str, shape: tuple, dtype, rows: int) -> h5py.Dataset:
    """A checksummed (fletcher32) dataset of `shape`, chunked by up to `rows` rows. An empty one (a shard's
    empty slice) may grow, which lets its one-row chunk exceed its zero rows, as HDF5 requires."""
    chunks = (max(1, min(shape[0], rows)), *shape[1:])
    return group.create_dataset(name, shape, dtype=dtype, chunks=chunks, fletcher32=True,
                                maxshape=(None, *shape[1:]) if shape[0] == 0 else None)


def views_of(attrs: dict, split: str) -> int:
    """The number of augmented views a cache's attributes promise for `split` (0 for none)."""
    key = {"train": "views", "test": "test_views"}.get(split)
    try:
        return max(0, int(attrs.get(key, 0) or 0)) if key and attrs.get("augment") else 0
    except (TypeError, ValueError):
        return 0


def update_text_attrs(path: str | os.PathLike, values: dict[str, str]) -> None:
    """Rewrite text attributes of a finished cache in place (the data's new location, say): a few bytes
    of metadata, not the features, so a multi-gigabyte cache is not copied to change a path."""
    with h5py.File(path, "r+") as f:
        for key, value in values.items():
            encoded = _fixed_utf8(value)
            if key in f.attrs:
                del f.attrs[key]
            f.attrs.create(key, encoded, dtype=encoded.dtype)


def write_groups(path: str | os.PathLike, split: str, groups) -> None:
    """Record, in a finished cache, the source image of each row of `split` as an int64 id (rows
    with one id are copies of one image): /<split>/groups, checksummed, replacing any there."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or (groups.size and groups.dtype.kind not in "iu"):
        raise UserError(f"groups for /{split} must be one integer id per row, not an array of shape {groups.shape} "
                        f"and dtype {groups.dtype}")
    with h5py.File(path, "r+") as f:
        if split not in f or len(f[split]["labels"]) != len(groups):
            have = len(f[split]["labels"]) if split in f else 0
            raise UserError(f"{path} has {have} rows in /{split}, not the {len(groups)} the groups are given for")
        if "groups" in f[split]:
            del f[split]["groups"]
        _dataset(f[split], "groups", groups.shape, np.int64, 65536)[...] = groups.astype(np.int64)


def read_groups(g: h5py.Group, n: int, where: str) -> np.ndarray | None:
    """A split's /groups (int64, one per row), or None when the cache has none."""
    if "groups" not in g:
        return None
    try:
        groups = g["groups"][()]
    except _DAMAGE as e:
        raise UserError(f"{where} is damaged (cannot read its groups: {str(e)[:80]}); delete it and run extract again") from None
    if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
        raise UserError(f"{where} has groups of shape {groups.shape}, not one integer per row ({n}); "
                        "the file is damaged: delete it and run extract again")
    return groups.astype(np.int64)


def _fixed_utf8(values, width: int | None = None) -> np.ndarray:
    """Strings as fixed-length UTF-8, stored inline where the checksums cover them.

    Variable-length strings live in HDF5's global heap, which the checksums
    do not cover: one flipped byte there made h5py hang reading an attribute.
    """
    encoded = np.char.encode(np.asarray(values, dtype=str), "utf-8")
    return encoded.astype(h5py.string_dtype("utf-8", width or max(encoded.dtype.itemsize, 1)))


def _views_in(part) -> int:
    """K of a part's "view_features" (n, K, D), 0 when it has none (read without loading the array)."""
    if isinstance(part, dict):
        return part["view_features"].shape[1] if "view_features" in part else 0
    with np.load(part, allow_pickle=False) as z:
        if "view_features" not in z.files:
            return 0
        with z.zip.open("view_features.npy") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            shape = read(f)[0]  # the header only, not the array
        return int(shape[1])


def _part(part, keys=("features", "labels", "sources")) -> dict:
    """A part as arrays; an .npz path is read only for the members asked for."""
    if isinstance(part, dict):
        return part
    with np.load(part, allow_pickle=False) as z:
        return {k: z[k] for k in keys}


def read_attrs(path: str | os.PathLike) -> dict:
    """The root attributes of a cache, checked to be one of ours (no arrays read)."""
    path = Path(path)
    _check_exists(path)
    with _open(path) as f:
        return _attrs(f, path)


def _check_exists(path: Path) -> None:
    if path.is_file():
        return
    if partial_dir(path).is_dir():
        raise UserError(
            f"the cache {path} is incomplete (its extraction was interrupted); "
            "re-run the same extract command to resume it"
        )
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a feature cache; pass an .h5 file made by extract")
    raise UserError(f"no features at {path}: run `make features` first (or pass features=PATH)")


def _open(path: Path) -> h5py.File:
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 file; pass a cache made by extract, or delete it and run `make features`")
    try:
        return h5py.File(path, "r")
    except _DAMAGE as e:
        raise UserError(f"{path} is damaged ({(str(e).splitlines() or [type(e).__name__])[0][:80]}); "
                        "delete it and run extract again") from None


class CacheFile:
    """A cache opened once, for a reader that comes back to it many times (a classifier streaming
    it a chunk at a time): `read_cache`, `split_shapes` and `iter_rows` take one in place of a path
    and read the file opened here. A cache replaced at its path meanwhile (extract --force, or any
    file renamed over it) is never mixed in: the open file keeps the data it had; `replaced` says
    whether the path still names it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _check_exists(self.path)
        self.file = _open(self.path)
        self.attrs = _attrs(self.file, self.path)
        st = os.fstat(self.file.id.get_vfd_handle())
        self._inode = (st.st_dev, st.st_ino)

    def replaced(self) -> bool:
        """Whether the path no longer names the file opened here (renamed over, or deleted)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def sha256(self) -> str:
        """Hex SHA-256 of the open file's bytes (the file opened, whatever is at the path now)."""
        fd, digest, offset = self.file.id.get_vfd_handle(), hashlib.sha256(), 0
        while block := os.pread(fd, 1 << 20, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def _opened(source: str | os.PathLike | CacheFile):
    """(h5py.File, path) of an open CacheFile (left open), or of a path opened for this read only."""
    if isinstance(source, CacheFile):
        yield source.file, source.path
        return
    path = Path(source)
    _check_exists(path)
    with _open(path) as f:
        yield f, path


# Our attributes are small: a damaged header can claim an attribute of billions
# of elements, and reading it would hang or exhaust memory, so sizes are checked first.
MAX_ATTR_ELEMENTS = 100_000


def _read_attr(f: h5py.File, name: str, path: Path):
    aid = f.attrs.get_id(name)
    elements = int(np.prod(aid.shape, dtype=np.float64)) if aid.shape else 1
    if elements > MAX_ATTR_ELEMENTS or aid.get_storage_size() > 8 * MAX_ATTR_ELEMENTS:
        raise UserError(f"{path} is damaged (attribute {name!r} claims {elements:,} elements); delete it and run extract again")
    return _plain(f.attrs[name])


def _attrs(f: h5py.File, path: Path) -> dict:
    try:
        attrs = {k: _read_attr(f, k, path) for k in f.attrs}
    except _DAMAGE as e:
        raise UserError(f"{path} is damaged (unreadable attributes: {str(e)[:80]}); delete it and run extract again") from None
    if attrs.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a featurecache cache (no format='{FORMAT}' attribute); "
            "pass a file made by extract, or run `make features`"
        )
    kinds = {"format_version": int, "image_size": int, "feature_dim": int, "n_train": int, "n_test": int,
             "dataset": str, "backbone": str, "pooling": str, "weights": str}
    wrong = [k for k, kind in kinds.items() if k in attrs and (type(attrs[k]) is not kind)]
    names = attrs.get("class_names")
    if names is not None and (not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names)):
        wrong.append("class_names")
    if wrong:
        raise UserError(f"{path} is damaged (attribute(s) {', '.join(wrong)} of the wrong type); delete it and run extract again")
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer featurecache (format {attrs['format_version']}); upgrade to read it")
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise UserError(f"{path} lacks the attribute(s) {', '.join(missing)}; delete it and run extract again")
    for key in ("skipped", "config", "versions"):
        if isinstance(attrs.get(key), str):
            try:
                attrs[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                pass
    return attrs


def verify_cache(path: str | os.PathLike, full: bool = False, block_bytes: int = 1 << 26) -> dict:
    """A finished cache's attributes, once its layout is checked against them: every split holds
    `n_<split>` rows of features, labels and sources, `feature_dim` wide, and the augmented views its
    attributes promise. With `full`, every stored number is read too (in blocks of `block_bytes`), so
    HDF5's checksums catch a flipped byte. Raises UserError naming the first fault; what a reuse of a
    cache checks before it says "up to date"."""
    path = Path(path)
    _check_exists(path)
    with _open(path) as f:
        attrs = _attrs(f, path)
        try:
            for split in SPLITS + (("val",) if "val" in f else ()):
                _verify_split(f, split, attrs, full, block_bytes)
        except UserError as e:
            raise UserError(f"{path} {e.message}") from None
        except _DAMAGE as e:
            raise UserError(f"{path} is damaged ({str(e)[:80]})") from None
    return attrs


def _verify_split(f: h5py.File, split: str, attrs: dict, full: bool, block_bytes: int) -> None:
    if split not in f or not all(k in f[split] for k in ("features", "labels", "sources")):
        raise UserError(f"has no complete /{split}")
    g, n, dim = f[split], attrs.get(f"n_{split}"), attrs.get("feature_dim")
    shapes = {k: g[k].shape for k in ("features", "labels", "sources")}
    if shapes != {"features": (n, dim), "labels": (n,), "sources": (n,)}:
        raise UserError(f"holds /{split} of shapes {shapes}, not the {n} rows x {dim} its attributes say")
    k = views_of(attrs, split)
    have = g["view_features"].shape if "view_features" in g else None
    if k and have != (n, k, dim):
        held = f"of shape {have}" if have else "none"
        raise UserError(f"says it holds {k} augmented view(s) of each /{split} row but has /{split}/view_features "
                        f"{held}, not ({n}, {k}, {dim})")
    for name in ["features", "labels", "sources"] + (["view_features"] if have else []) if full else []:
        ds = g[name]
        step = max(1, block_bytes // max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize))
        for a in range(0, n, step):
            block = ds[a : a + step]
            if name in ("features", "view_features") and not np.isfinite(block).all():
                raise UserError(f"holds NaN or infinite values in /{split}/{name}")


def read_cache(path: str | os.PathLike | CacheFile, expect: dict | None = None, features: bool = True) -> Cache:
    """Load and check a finished cache; `expect` lists attributes it must have.

    With `features=False` only labels and sources are read (each split's `features` and `views`
    are None): a classifier that streams the features with `iter_rows` loads the rest this way.

    Every way a file can be wrong (missing, unfinished, not HDF5, truncated,
    foreign, inconsistent counts, non-finite values) raises `UserError`.
    """
    with _opened(path) as (f, path):
        attrs = _attrs(f, path)
        for key, want in (expect or {}).items():
            if attrs.get(key) != want:
                raise UserError(
                    f"{path} was made with {key}={attrs.get(key)!r}, not {want!r}; "
                    "pass the matching cache or re-run extract with those settings"
                )
        data = {}
        for split in SPLITS + (("val",) if "val" in f else ()):
            data[split] = _read_split(f, split, path, len(attrs["class_names"]), features)
    if not features:
        return Cache(path, attrs, data["train"], data["test"], data.get("val"))
    dims = {s: d.features.shape[1] for s, d in data.items()}
    if len(set(dims.values())) != 1 or ("feature_dim" in attrs and dims["train"] != attrs["feature_dim"]):
        raise UserError(f"{path} has feature widths {dims} that disagree with its attributes; delete it and run extract again")
    return Cache(path, attrs, data["train"], data["test"], data.get("val"))


def _read_split(f: h5py.File, split: str, path: Path, n_classes: int, load: bool = True) -> SplitData:
    try:
        g = f[split]
        # without `load`, an empty (0, D) slice stands in for the features, for the shape checks below
        feats = g["features"][()] if load else g["features"][:0]
        labels = g["labels"][()]
        sources = g["sources"].asstr()[()] if "sources" in g else np.asarray([str(i) for i in range(len(labels))])
    except KeyError:
        raise UserError(
            f"{path} has no /{split}/features and /{split}/labels; it is not a complete feature cache: "
            "delete it and run extract again"
        ) from None
    except _DAMAGE as e:
        raise UserError(f"{path} is damaged (cannot read /{split}: {str(e)[:80]}); delete it and run extract again") from None
    if feats.ndim != 2 or labels.ndim != 1 or np.ndim(sources) != 1:
        raise UserError(
            f"{path} /{split} has features of shape {feats.shape} and labels of shape {labels.shape}, "
            "not (N, D) and (N,); the file is damaged: delete it and run extract again"
        )
    n_rows = g["features"].shape[0]
    if n_rows != len(labels) or len(sources) != len(labels):
        raise UserError(
            f"{path} /{split} has {n_rows} feature rows but {len(labels)} labels; "
            "the file is inconsistent: delete it and run extract again"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and (labels.min() < 0 or labels.max() >= n_classes)):
        raise UserError(f"{path} /{split}/labels are not class indices 0..{n_classes - 1}; delete it and run extract again")
    if not np.issubdtype(feats.dtype, np.floating):
        raise UserError(f"{path} /{split}/features are not floating point; delete it and run extract again")
    if not np.isfinite(feats).all():
        raise UserError(
            f"{path} /{split}/features hold NaN or infinite values (float16 overflow or a broken run); "
            "re-run extract with --force (and --precision float32)"
        )
    groups = read_groups(g, len(labels), f"{path} /{split}")
    if not load:
        return SplitData(None, labels.astype(np.int64), np.asarray(sources), None, groups)
    views = None
    if "view_features" in g:
        try:
            views = g["view_features"][()]
        except _DAMAGE as e:
            raise UserError(f"{path} is damaged (cannot read /{split}/view_features: {str(e)[:80]}); "
                            "delete it and run extract again") from None
        if views.ndim != 3 or views.shape[0] != len(labels) or views.shape[2] != feats.shape[1]:
            raise UserError(f"{path} /{split}/view_features has shape {views.shape}, not ({len(labels)}, K, "
                            f"{feats.shape[1]}); the file is damaged: delete it and run extract again")
        if not np.isfinite(views).all():
            raise UserError(f"{path} /{split}/view_features hold NaN or infinite values; "
                            "re-run extract with --force (and --precision float32)")
        views = views.astype(np.float32, copy=False)
    return SplitData(feats.astype(np.float32, copy=False), labels.astype(np.int64), np.asarray(sources), views, groups)


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path` lies in `folder` (or below it), after resolving both."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def set_latest(features_dir: str | os.PathLike, cache: str | os.PathLike) -> str | None:
    """Record `cache` as the one `classify` uses by default: `features/LATEST`, relative to the folder.

    Only a cache inside the features folder becomes the default: one written elsewhere (a scratch
    `--out`) is used where named and leaves LATEST alone, which is then said in the returned note.
    Written atomically, and only when it changes, so an up-to-date re-run in a read-only folder writes
    nothing. Returns a note for the user when LATEST was left alone or could not be written, else None."""
    features_dir = Path(features_dir)
    pointer = features_dir / LATEST
    if not inside(features_dir, cache):
        return (f"note: {cache} is outside {features_dir}/, so it does not become the default cache "
                f"({pointer} is unchanged); pass --features {cache} to use it")
    text = str(Path(cache).resolve().relative_to(features_dir.resolve()))
    try:
        if pointer.is_file() and pointer.read_text().strip() == text:
            return None
        features_dir.mkdir(parents=True, exist_ok=True)
        write_text(pointer, text + "\n")
    except (OSError, UserError) as e:
        return f"note: could not record {cache} in {pointer} ({getattr(e, 'strerror', None) or e}); pass --features to classify"
    return None


def caches_in(folder: str | os.PathLike) -> list[Path]:
    """The finished caches (`*.h5`, shards left out) in a folder, newest first."""
    found = [p for p in Path(folder).glob("*.h5") if p.is_file() and ".shard-" not in p.name]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _no_default(where: Path, problem: str) -> UserError:
    """One line: what is wrong with LATEST, and the `features` to pass for each cache in the folder."""
    found = caches_in(where)
    if not found:
        return UserError(f"{problem}; run `make features` again (there are no caches in {where}/), "
                         "or pass features=PATH")
    listed = ", ".join(f"features={str(p)!r}" for p in found[:6]) + (" ..." if len(found) > 6 else "")
    return UserError(f"{problem}; run `make features` again to record one, or pass one of the caches in "
                     f"{where}/: {listed}")


def default_cache(folder: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The cache `classify` uses when none is named, and why, in words:
    (features/x.h5, "features/LATEST → features/x.h5, written 2026-12-04 17:10").

    A missing, empty or dangling LATEST is one UserError that names it and lists the caches in the
    folder with the `features` to pass."""
    import datetime as dt

    where = Path(folder) if folder is not None else features_dir()
    pointer = where / LATEST
    if not pointer.is_file():
        if not caches_in(where):
            raise UserError(f"no feature cache in {where}/: run `make features` first (or pass features=PATH)")
        raise _no_default(where, f"{pointer} does not exist, so there is no default cache")
    name = pointer.read_text().strip()
    if not name:
        raise _no_default(where, f"{pointer} is empty")
    path = Path(name) if Path(name).is_absolute() else where / name
    if not path.is_file():
        raise _no_default(where, f"{pointer} names {path}, which does not exist")
    written = dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return path, f"{pointer} \u2192 {path}, written {written}"


def latest(folder: str | os.PathLike | None = None) -> Path:
    """The cache `classify` uses by default: the one features/LATEST names (see `default_cache`)."""
    return default_cache(folder)[0]


# --------------------------------------------------------------------------- streaming reader


@dataclass
class SplitShape:
    """How big a split of a cache is, read from its dataset headers (no arrays read)."""

    rows: int        # N
    dim: int         # D
    views: int       # K of /split/view_features (N, K, D), 0 when it has none
    itemsize: int    # bytes per stored value (4 for float32, 2 for float16)


def split_shapes(path: str | os.PathLike | CacheFile) -> dict[str, SplitShape]:
    """split name -> SplitShape for every split of a cache, from the headers only: what the
    classifiers size their memory budget on before reading any features."""
    with _opened(path) as (f, path):
        _attrs(f, path)
        out = {}
        for split in SPLITS + (("val",) if "val" in f else ()):
            try:
                feats = f[split]["features"]
                views = f[split]["view_features"].shape[1] if "view_features" in f[split] else 0
            except _DAMAGE:
                raise UserError(f"{path} has no readable /{split}/features; delete it and run extract again") from None
            if len(feats.shape) != 2:
                raise UserError(f"{path} /{split}/features has shape {feats.shape}, not (N, D); "
                                "delete it and run extract again")
            out[split] = SplitShape(int(feats.shape[0]), int(feats.shape[1]), int(views), int(feats.dtype.itemsize))
        return out


@dataclass
class Chunk:
    """Consecutive rows of one split, read together by `iter_rows`."""

    rows: np.ndarray               # (k,) indices into the split, ascending
    features: np.ndarray           # (k, D) float32
    labels: np.ndarray             # (k,) int64
    views: np.ndarray | None = None  # (k, K, D) float32, when asked for and the cache has them


def iter_rows(path: str | os.PathLike | CacheFile, split: str, rows: np.ndarray | None = None, chunk: int = 4096,
              views: bool = False):
    """Yield the given rows of a split (all rows when None; ascending order) as `Chunk`s of at most
    `chunk` rows, with their augmented views when `views` is true and the cache has them.

    The file is read in contiguous slices of at most `chunk` rows, so memory holds one chunk
    (chunk x D floats, times K + 1 with views) however large the cache is: the classifiers
    stream a feature matrix larger than their memory budget through this. Damaged or
    non-finite values raise UserError, as `read_cache` does. Pass a `CacheFile` to read the same
    open file on every call."""
    chunk = max(1, int(chunk))
    with _opened(path) as (f, path):
        attrs = _attrs(f, path)
        n_classes = len(attrs["class_names"])
        try:
            g = f[split]
            feats, labels = g["features"], g["labels"]
            view_ds = g["view_features"] if views and "view_features" in g else None
        except _DAMAGE:
            raise UserError(f"{path} has no /{split}/features and /{split}/labels; it is not a complete feature "
                            "cache: delete it and run extract again") from None
        n = feats.shape[0]
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= n or (np.diff(rows) <= 0).any()):
            raise ValueError(f"rows must be ascending indices below {n}")   # a caller's bug, not the user's
        start = 0
        while start < len(rows):
            # the rows that fall in one slice of at most `chunk` rows of the file
            lo = int(rows[start])
            stop = int(np.searchsorted(rows, lo + chunk, side="left"))
            take = rows[start:stop]
            hi = int(take[-1]) + 1
            try:
                block = feats[lo:hi]                       # (hi - lo, D)
                y = labels[lo:hi]
                v = view_ds[lo:hi] if view_ds is not None else None   # (hi - lo, K, D)
            except _DAMAGE as e:
                raise UserError(f"{path} is damaged (cannot read /{split} rows {lo}..{hi}: {str(e)[:80]}); "
                                "delete it and run extract again") from None
            local = take - lo
            if len(local) != hi - lo:
                block, y = block[local], y[local]
                v = v[local] if v is not None else None
            if not np.isfinite(block).all() or (v is not None and not np.isfinite(v).all()):
                raise UserError(f"{path} /{split}/features hold NaN or infinite values (float16 overflow or a "
                                "broken run); re-run extract with --force (and --precision float32)")
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise UserError(f"{path} /{split}/labels are not class indices 0..{n_classes - 1}; "
                                "delete it and run extract again")
            yield Chunk(take, block.astype(np.float32, copy=False), y.astype(np.int64),
                        None if v is None else v.astype(np.float32, copy=False))
            start = stop
