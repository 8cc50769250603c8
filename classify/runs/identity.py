"""What makes a cache the cache it is, and the one check that a run's cache is still the one it used.

A run record holds the path of the cache it was trained on and that cache's id (`cache_id`, a short
digest of its identity attributes, not of its file name). Whatever joins a run back to the cache at
that path (robustness reads its test rows and pictures; the report shows it as a run's source)
calls `run_cache` or `run_cache_problem` here, so a cache re-extracted with other settings, or
another file renamed over the path, is refused instead of being read as the run's own.

numpy, h5py and the standard library only: the report imports this without scikit-learn.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from classify.runs.record import RunRecord
from featurecache.cache import IDENTITY_ATTRS, CacheFile
from featurecache.errors import UserError
from featurecache.files import sha256

DIGEST_HEX = 8  # hex digits of a run's or cache's identity digest in file names and table rows


def json_default(value):
    """numpy values as plain JSON; anything else as its str."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def digest(data) -> str:
    """Short hex digest of JSON-able data (keys sorted), for names that change when the data does."""
    text = json.dumps(data, sort_keys=True, default=json_default, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]


@functools.lru_cache(maxsize=64)
def file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a file, remembered while its modification time and size stay the same."""
    return sha256(path)


def identity(attrs: dict, path: str | os.PathLike, opened: CacheFile | None = None) -> dict:
    """What makes a cache the cache it is: its identity attributes (data fingerprint, backbone,
    pooling, size, weights, precision, ...) and class names, not its file name. A cache without a
    data fingerprint (not written by extract) is identified by its bytes instead: those of the
    file `opened` when given (the one a streaming run read), else of the file at `path`."""
    ident = {k: attrs.get(k) for k in IDENTITY_ATTRS if attrs.get(k) is not None}
    ident.update(dataset=attrs.get("dataset"), feature_dim=attrs.get("feature_dim"),
                 class_names=list(attrs["class_names"]))
    if not attrs.get("data_fingerprint") and opened is not None:
        ident["file_sha256"] = opened.sha256()
    elif not attrs.get("data_fingerprint"):
        st = os.stat(path)
        ident["file_sha256"] = file_sha256(os.path.abspath(path), st.st_mtime_ns, st.st_size)
    return ident


def opened_cache(record: RunRecord) -> tuple[CacheFile | None, str | None]:
    """(the cache at a run record's cache path, opened, or None; why it is not the cache the run was
    trained on, in a few words ("gone", "replaced: ..."), or None when it is). The id is taken from
    the file opened, so what a caller then reads through it is what was checked."""
    path = Path(record.cache.path)
    if not path.is_file():
        return None, "gone"
    try:
        opened = CacheFile(path)
    except UserError as e:
        return None, f"unreadable: {e.message}"
    found, want = digest(identity(opened.attrs, path, opened)), record.cache_id
    if found != want:
        opened.close()
        return None, (f"replaced: its cache id is {found}, the run recorded {want} "
                      "(re-extracted with other settings, or another file put in its place)")
    return opened, None


def run_cache_problem(record: RunRecord) -> str | None:
    """Why the cache at a run record's cache path is not the cache the run was trained on, or None."""
    opened, problem = opened_cache(record)
    if opened is not None:
        opened.close()
    return problem


def run_cache(record: RunRecord, run_path: str | os.PathLike) -> CacheFile:
    """A run's cache, opened and checked to be the cache the run was trained on (read it through
    the `CacheFile` returned: `read_cache(run_cache(...))`); UserError otherwise."""
    path = Path(record.cache.path)
    opened, problem = opened_cache(record)
    if problem == "gone":
        raise UserError(f"the feature cache {path} that {Path(run_path).name} was trained on is gone; "
                        "re-extract it (the same extract command) and re-run classify")
    if problem:
        raise UserError(f"the feature cache at {path} is not the one {Path(run_path).name} was trained on ({problem}); "
                        "restore that cache, or re-run classify on the cache now there")
    return opened
