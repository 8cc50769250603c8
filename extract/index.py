"""Content fingerprints of photo folders: per-file digests kept between runs in `<cache>.index.json`.

Only files whose size or mtime changed are read again; the file lists of the last few fingerprints
are kept too, to say what changed since a cache was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from featurecache.images import source_path

INDEX_VERSION = 1
KEPT_SNAPSHOTS = 3  # file lists of the last fingerprints, to say what changed since a cache was made


def index_path(cache: str | os.PathLike) -> Path:
    """Where the digests of a photo folder's files are kept beside its cache: `<cache>.index.json`."""
    cache = Path(cache)
    return cache.with_name(cache.name + ".index.json")


def read_index(index: str | os.PathLike | None) -> dict:
    try:
        data = json.loads(Path(index).read_text()) if index is not None else {}
        if data.get("version") == INDEX_VERSION and isinstance(data.get("files"), dict):
            return data
    except (OSError, ValueError, AttributeError):
        pass  # missing or damaged: every file is hashed again
    return {"version": INDEX_VERSION, "files": {}, "snapshots": {}}


def write_index(index: str | os.PathLike, data: dict) -> None:
    from featurecache.files import write_text

    try:
        Path(index).parent.mkdir(parents=True, exist_ok=True)
        write_text(index, json.dumps(data, separators=(",", ":"), allow_nan=False))
    except OSError:
        pass  # the index only saves time: a folder that cannot hold it costs a full hash next run


def hash_files(root: Path, files: list[str], index_data: dict | None = None, verify: bool = False) -> dict[str, str]:
    """{source: sha256 of its bytes} for files under root, streamed.

    With `index_data` (an index read by `read_index`), digests are reused for files whose
    (size, mtime_ns) have not changed since they were hashed, and it is updated in memory;
    `verify` hashes every file again."""
    from featurecache.files import sha256

    data = index_data if index_data is not None else read_index(None)
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
