"""Shards: one extraction spread over N independent commands, merged into one ordinary cache.

`python -m extract ... --shard i/N` extracts a fixed slice of every split: rows
[n*i//N, n*(i+1)//N) of a split of n rows. The slice depends only on i, N and
the split's size, so the N commands cover every row exactly once, whatever
runs them (a shell loop, a Slurm array, a Kubernetes job). Each writes
`<cache>.shard-i-of-N.h5`: an ordinary cache of its rows whose attributes add
`shard`, `num_shards` and `shard_rows` ({split: [start, stop, rows in split]}).

`python -m extract merge --out CACHE SHARDS...` checks that the shards share
one identity, cover every row exactly once and are each complete, then copies
them, split by split and in row order, into one cache that `classify` cannot
tell from a single-process one. The rows are copied, not linked as an HDF5
virtual dataset: a virtual dataset reads a missing source file as zeros.

Reads and writes HDF5 through `featurecache.cache`; no TensorFlow.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from extract.data import Dataset, Split
from featurecache.cache import IDENTITY_ATTRS, partial_dir, read_attrs, verify_cache, views_of
from featurecache.errors import SettingError, UserError

SHARD_ATTRS = ("shard", "num_shards", "shard_rows")
# how a shard seeded its augmented views: by the row's index in the whole split, as a single run does.
# Shards written before this attribute seeded them by the row in their slice, which merge refuses.
VIEW_SEEDS = ("view_seeds", "row in whole split")
# attributes every shard of one extraction shares, beyond IDENTITY_ATTRS
SHARED_ATTRS = ("dataset", "data_kind", "class_names", "feature_dim", "model_size")
MAX_SHARDS = 1_000_000  # N of --shard i/N: far more shards than any data set has rows to share out
COPY_ROWS = 65536  # rows per part when copying: memory holds one part, not a shard


@dataclass(frozen=True)
class Shard:
    index: int   # i, 0 .. count-1
    count: int   # N

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def rows(self, n: int) -> tuple[int, int]:
        """[start, stop) of this shard in a split of n rows: contiguous, balanced, from i, N and n only."""
        return n * self.index // self.count, n * (self.index + 1) // self.count

    def path(self, cache: str | Path) -> Path:
        """Where this shard of `cache` is written: features/x.h5 -> features/x.shard-1-of-3.h5."""
        cache = Path(cache)
        return cache.with_name(f"{cache.stem}.shard-{self.index}-of-{self.count}{cache.suffix or '.h5'}")


def parse_shard(text: str) -> Shard:
    """"i/N" -> Shard, with 0 <= i < N <= MAX_SHARDS; anything else is the user's mistake."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise SettingError(f"shard={text!r} is not of the form i/N; pass e.g. shard='0/4' for the first of "
                           "4 shards")
    if len(m.group(1).lstrip("0")) > 7 or len(m.group(2).lstrip("0")) > 7:  # never convert a 5,000-digit number
        raise SettingError(f"shard={text[:40] + ('...' if len(text) > 40 else '')!r} is out of range: N "
                           f"may be at most {MAX_SHARDS:,} and i must be below N; pass e.g. shard='0/4'")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n or n > MAX_SHARDS:
        raise SettingError(f"shard={text!r} is out of range: N must be 1..{MAX_SHARDS:,} and i one of "
                           f"0..N-1 (e.g. shard='0/{min(max(n, 1), MAX_SHARDS)}')")
    return Shard(i, n)


def shard_dataset(dataset: Dataset, shard: Shard) -> tuple[Dataset, dict]:
    """`dataset` with every split cut to this shard's rows, and the attributes that record the cut.

    The dataset keeps its fingerprint: every shard has the whole data set's identity, which is what
    `merge` checks and what the merged cache carries."""
    splits, ranges = {}, {}
    for name, split in dataset.splits.items():
        start, stop = shard.rows(len(split))
        splits[name] = slice_split(split, start, stop)
        ranges[name] = [start, stop, len(split)]
    attrs = {"shard": shard.index, "num_shards": shard.count, "shard_rows": ranges, VIEW_SEEDS[0]: VIEW_SEEDS[1]}
    return replace(dataset, splits=splits), attrs


def slice_split(split: Split, start: int, stop: int) -> Split:
    """Rows [start, stop) of `split` as a split of its own; reads go to the same files. It remembers where it
    starts, so its augmented views are seeded by their row in the whole split, as a single run seeds them."""
    read = split.read

    def read_slice(a: int, b: int):
        return read(start + a, start + b)

    return Split(split.labels[start:stop], list(split.sources[start:stop]), read_slice, split.first_row + start)


# --------------------------------------------------------------------------- merge


@dataclass
class Merged:
    out: Path
    shards: int
    rows: dict[str, int] = field(default_factory=dict)
    feature_dim: int = 0
    skipped: int = 0


def read_shard(path: Path) -> dict:
    """A shard file's attributes, checked to be a finished shard; one line naming it otherwise."""
    path = Path(path)
    if not path.is_file():
        if partial_dir(path).is_dir():
            raise UserError(f"shard {path} is incomplete (its extraction was interrupted); run its extraction "
                            "(`shard`) again to finish it, then merge")
        raise UserError(f"shard file {path} does not exist; pass the files written by extractions "
                        "with shard='i/N'")
    attrs = read_attrs(path)
    if any(k not in attrs for k in SHARD_ATTRS):
        raise UserError(f"{path} is not a shard (it has no shard attributes); pass files written by "
                        "extractions with shard='i/N', or use it as a cache as it is")
    try:
        attrs["shard_rows"] = {s: [int(v) for v in r] for s, r in json.loads(attrs["shard_rows"]).items()}
        assert all(len(r) == 3 for r in attrs["shard_rows"].values())
    except (TypeError, ValueError, AssertionError, AttributeError):
        raise UserError(f"{path} is damaged (unreadable shard_rows attribute); run its extraction "
                        "(`shard`) again with force=True") from None
    return attrs


def check_shards(paths: list[Path]) -> list[tuple[Path, dict]]:
    """The shards in order 0..N-1 once each checked to fit together; raises naming the first misfit."""
    if not paths:
        raise UserError("no shard files given; pass every <cache>.shard-i-of-N.h5 file of one extraction")
    shards = [(Path(p), read_shard(Path(p))) for p in paths]
    first_path, first = shards[0]
    count = int(first["num_shards"])
    by_index: dict[int, tuple[Path, dict]] = {}
    for path, attrs in shards:
        if int(attrs["num_shards"]) != count:
            raise UserError(f"{path} is shard {attrs['shard']}/{attrs['num_shards']} but {first_path} is one of "
                            f"{count}; merge the shards of one shard='i/N' series only")
        diff = [f"{k} {attrs.get(k, '')!r} != {first.get(k, '')!r}" for k in IDENTITY_ATTRS + SHARED_ATTRS
                if attrs.get(k, "") != first.get(k, "")]
        if diff:
            raise UserError(f"{path} was extracted with other settings than {first_path} ({'; '.join(diff[:2])}); "
                            "merge shards made by one extract command, or re-run the odd one with its settings")
        if any(views_of(attrs, split) for split in attrs["shard_rows"]) and attrs.get(VIEW_SEEDS[0]) != VIEW_SEEDS[1]:
            raise UserError(f"{path} holds augmented views seeded by the row in its shard, not in the whole split "
                            "(an older extract), so they differ from a single run's; run its extraction "
                            "(`shard`) again with force=True, then merge")
        i = int(attrs["shard"])
        if i in by_index:
            raise UserError(f"shard {i}/{count} is given twice ({by_index[i][0]} and {path}); pass each shard once")
        by_index[i] = (path, attrs)
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(f"shard(s) {shown} missing: {len(missing)} of {count} not given; run the extraction with "
                        f"shard='{missing[0]}/{count}' (same other settings) and pass its file too")
    splits = first["shard_rows"].keys()
    for i in range(count):
        path, attrs = by_index[i]
        ranges = attrs["shard_rows"]
        want = {s: [*Shard(i, count).rows(first["shard_rows"][s][2]), first["shard_rows"][s][2]] for s in splits}
        kept = sum(int(attrs.get(f"n_{s}", 0)) for s in ranges)
        if ranges != want or kept + len(attrs.get("skipped") or []) != sum(b - a for a, b, _ in ranges.values()):
            raise UserError(f"shard {i}/{count} ({path}) does not hold its rows {want} completely; run its extraction "
                            f"with shard='{i}/{count}' again with force=True, then merge")
    return [by_index[i] for i in range(count)]


def merged_attrs(shards: list[tuple[Path, dict]]) -> dict:
    """Shard 0's attributes without the shard facts: those of a single-process cache of the same data."""
    attrs = {k: v for k, v in shards[0][1].items()
             if k not in SHARD_ATTRS + (VIEW_SEEDS[0],) and not k.startswith("n_")
             and k not in ("format", "format_version")}
    attrs["skipped"] = [s for _, a in shards for s in (a.get("skipped") or [])]
    if isinstance(attrs.get("config"), dict):
        attrs["config"] = {**attrs["config"], "shard": None, "merged_shards": len(shards)}
    attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return attrs


def stage_parts(shards: list[tuple[Path, dict]], staging: Path, dim: int, bar=None) -> dict[str, list[Path]]:
    """Every shard's rows (and their augmented views), split by split, as .npz parts in `staging`,
    checked on the way.

    HDF5's fletcher32 checksums make a damaged shard an error here; rows that are not finite or
    a shard whose row count disagrees with its attributes are refused, so no zeros slip through.
    `bar.update(rows)` is called as rows are copied (featurecache.progress)."""
    import h5py

    splits: dict[str, list[Path]] = {s: [] for s in shards[0][1]["shard_rows"]}
    for path, attrs in shards:
        label = f"shard {attrs['shard']}/{attrs['num_shards']} ({path})"
        try:
            with h5py.File(path, "r") as f:
                for split in splits:
                    splits[split] += stage_split(f[split], split, attrs, label, staging, dim, bar)
        except UserError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise UserError(f"{label} is damaged ({str(e)[:80]}); run its extract command again with force=True, "
                            "then merge") from None
    return splits


def stage_split(g, split: str, attrs: dict, label: str, staging: Path, dim: int, bar=None) -> list[Path]:
    """One shard's rows of one split, with the views its attributes promise, as .npz parts of COPY_ROWS rows."""
    from featurecache.files import room_error

    n, k = int(attrs[f"n_{split}"]), views_of(attrs, split)
    views = g["view_features"] if k else None
    if (g["features"].shape != (n, dim) or len(g["labels"]) != n or len(g["sources"]) != n
            or (k and (views is None or views.shape != (n, k, dim)))):
        raise UserError(f"{label} holds {g['features'].shape} /{split} rows (views: "
                        f"{None if views is None else views.shape}), not ({n}, {dim}) with {k} view(s) each; "
                        "run its extract command again with force=True, then merge")
    out, step = [], max(1, COPY_ROWS // (1 + k))  # a part's views count against the same memory
    for a in range(0, n, step):
        b = min(a + step, n)
        part = {"features": g["features"][a:b].astype(np.float32),
                "labels": g["labels"][a:b].astype(np.int64),
                "sources": np.asarray(g["sources"].asstr()[a:b], dtype=str)}
        if views is not None:
            part["view_features"] = views[a:b].astype(np.float32)
        if not all(np.isfinite(part[key]).all() for key in ("features", "view_features") if key in part):
            raise UserError(f"{label} /{split} holds NaN or infinite features; run its extract "
                            "command again with force=True (and precision='float32'), then merge")
        path = staging / f"{split}-{attrs['shard']:05d}-{a // step:05d}.npz"
        try:
            np.savez(path, **part)
        except OSError as e:
            raise room_error(e, staging) from None
        out.append(path)
        if bar is not None:
            bar.update(b - a)
    return out


def check_reusable(out: Path, result: Merged) -> None:
    """`out`, a cache of the shards' settings, checked to be their merge before it is kept: not a shard,
    each split as many rows as the shards hold together, and every number read back under its checksum."""
    try:
        attrs = verify_cache(out, full=True)
        problem = ""
    except UserError as e:
        attrs, problem = {}, e.message.replace(f"{out} ", "", 1)
    if not problem and any(k in attrs for k in SHARD_ATTRS):
        problem = f"it is shard {attrs.get('shard')}/{attrs.get('num_shards')}, not a merged cache"
    if not problem:
        have = {s: attrs.get(f"n_{s}") for s in result.rows}
        if have != result.rows:
            problem = f"it holds {have} rows where the shards hold {result.rows}"
    if problem:
        raise UserError(f"{out} has these shards' settings but is not their merge ({problem[:200]}); add force=True "
                        "to merge again over it, or pass another `out`")


def merge(paths: list[str | Path], out: str | Path, force: bool = False,
          log=lambda msg: None) -> Merged:
    """Check the shards and copy them into the cache `out`; nothing is written unless every check passes."""
    from extract.pipeline import CacheLock, assemble, check_existing, check_out, remove_killed_writes

    out = check_out(out)
    shards = check_shards([Path(p) for p in paths])
    attrs = merged_attrs(shards)
    dim = int(attrs["feature_dim"])
    ident = {k: attrs.get(k, "") for k in IDENTITY_ATTRS}
    if any(out.resolve() == p.resolve() for p, _ in shards):
        raise SettingError(f"out={str(out)!r} is one of the shards; pass another path for the merged cache")
    result = Merged(out, len(shards), feature_dim=dim, skipped=len(attrs["skipped"]))
    for split in shards[0][1]["shard_rows"]:
        result.rows[split] = sum(int(a[f"n_{split}"]) for _, a in shards)
    if check_existing(out, ident, force):
        check_reusable(out, result)
        log(f"{out} already holds these shards' cache (checked: every row and checksum): nothing to do "
            "(force=True merges again)")
        return result
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".merging")
    with CacheLock(out, wait=True, log=log):
        remove_killed_writes(out, log)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            from featurecache.progress import progress

            with progress("merge", sum(result.rows.values()), "rows") as bar:
                parts = stage_parts(shards, staging, dim, bar)
            assemble(out, attrs, parts, attrs.get("store_dtype", "float32"), dim, sum(result.rows.values()))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return result


__all__ = ["Shard", "parse_shard", "shard_dataset", "slice_split", "merge", "check_shards", "Merged"]
