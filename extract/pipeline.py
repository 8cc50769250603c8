"""The extraction run: stream images through a frozen backbone into a cache.

Rows flow loader -> `Extractor` -> checkpoint part, one batch at a time; the
next batch is read on a second thread while the model runs. Every
`checkpoint_every` rows the part is written to `<cache>.partial/` (written
aside, then renamed), so an interrupted run loses at most one part and the
same command resumes it. When every split is done, the parts are assembled
into the final HDF5 file, again written aside and renamed.

One run at a time writes a cache: `<cache>.lock` (a `filelock` lock, released
by the operating system when its holder dies) is held from the first write to
the last, and `<cache>.lock.pid` names the holder for anyone who waits.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from extract.config import ExtractConfig, augment_settings
from extract.data import Dataset
from featurecache.augment import AugmentSettings, view_seeds
from featurecache.cache import (IDENTITY_ATTRS, IDENTITY_DEFAULTS, partial_dir, read_attrs, update_text_attrs,
                                verify_cache, write_cache)
from featurecache.errors import SettingError, UserError
from featurecache.extractor import Extractor
from featurecache.files import atomic_path, check_writable, remove_stale_temps, room_error, versions
from featurecache.precision import default_batch_size
from featurecache.runtime import identity_runtime

MANIFEST = "manifest.json"


class NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class Summary:
    """What a run did; `status` is "built" or "up-to-date"."""

    status: str
    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    feature_dim: int = 0
    precision: str = ""
    runtime: str = ""
    batch_size: int = 0
    seconds: float = 0.0
    computed: int = 0              # rows run through the model by this run (resumed rows excluded)
    resumed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 and self.computed else 0.0

    def speed(self) -> str:
        """"1,245 img/s, 4.8 s", with enough digits for slow runs; what a fully resumed run (or a shard's empty
        slice) did."""
        if not self.computed:
            empty = self.rows and not any(self.rows.values()) and not any(self.resumed.values())
            return "no rows to compute" if empty else "every row resumed from checkpoints"
        ips = self.images_per_second
        return f"{ips:,.0f} img/s, {self.seconds:.1f} s" if ips >= 10 else f"{ips:.2g} img/s, {self.seconds:.1f} s"


# --------------------------------------------------------------------------- identity


def settings(cfg: ExtractConfig, extractor: Extractor, folder: bool) -> dict:
    """The settings that define a cache apart from its data: what its default name is made of
    (extract.naming). `folder`: the data is a photo folder (where --test-fraction applies)."""
    return {
        **extractor.identity(),
        "limit": cfg.limit if cfg.limit is not None else -1,
        "test_fraction": cfg.test_fraction if folder else -1.0,
        "store_dtype": cfg.store_dtype,
        **augment_settings(cfg).identity(),
    }


def identity(cfg: ExtractConfig, dataset: Dataset, extractor: Extractor) -> dict:
    """The settings that define a cache; a cache is reused only when all match."""
    return {"data_fingerprint": dataset.fingerprint, **settings(cfg, extractor, dataset.kind == "folder")}


def differences(have: dict, want: dict) -> list[str]:
    keys = [k for k in IDENTITY_ATTRS if k in want]
    # caches written before model files (or views) were supported lack the new keys: "" (no views) is their value
    old = {k: IDENTITY_DEFAULTS.get(k, "") for k in keys}
    # before the runtime was recorded, every cache was computed by TensorFlow
    old["precision_runtime"] = identity_runtime("tensorflow", have.get("precision", "float32"))
    return [f"{k} {have.get(k, old[k])!r} != {want[k]!r}" for k in keys if have.get(k, old[k]) != want[k]]


def check_out(out: str | os.PathLike) -> Path:
    """The cache path asked for, refused when it names no file ("" or a folder such as "." or "..")."""
    if not str(out).strip() or Path(out).name in ("", ".", ".."):
        raise SettingError(f"out={str(out)!r} names no file; pass the cache's file path, e.g. "
                           "out='features/x.h5'")
    return Path(out)


def check_existing(out: Path, ident: dict, force: bool, changes: Callable[[str], str] | None = None) -> bool:
    """True when `out` already holds this very cache. Raises if it holds another, or one whose arrays do
    not match its attributes (no views where it says views=2): such a file is never "up to date".

    `changes(old_fingerprint)` names the files that changed since the cache was made."""
    if not out.exists() or force:
        return False
    try:
        have = verify_cache(out)
    except UserError as e:
        raise SettingError(f"{out} exists but is not a usable cache ({e.message}); choose another `out` "
                           "(force=True would replace that file)", setting="out") from None
    diff = differences(have, ident)
    if diff:
        data_only = all(d.startswith("data_fingerprint ") for d in diff)
        changed = changes(have.get("data_fingerprint", "")) if changes and have.get("data_fingerprint") != ident["data_fingerprint"] else ""
        keep = f"out={str(free_name(out))!r} to keep both"
        raise SettingError(
            f"{out} holds a cache made with other settings ({'; '.join(diff[:3])})"
            + (f"; the data folder changed since: {changed}" if changed else "")
            + (f"; use force=True to rebuild it from the data as it is now, or pass {keep}" if data_only
               else f"; it is left as it is: pass {keep}"),
            setting="force" if data_only else "out",
        )
    return True


def free_name(out: Path) -> Path:
    """`out` with the first free "-2", "-3", ... before its suffix: another --out to suggest."""
    k = 2
    while out.with_name(f"{out.stem}-{k}{out.suffix}").exists():
        k += 1
    return out.with_name(f"{out.stem}-{k}{out.suffix}")


# --------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """`<cache>.partial/`: a manifest (identity, batch size, rows per part) and one .npz per part."""

    def __init__(self, out: Path):
        self.folder = partial_dir(out)

    def path(self, split: str, k: int) -> Path:
        return self.folder / f"{split}-{k:05d}.npz"

    def manifest(self) -> dict | None:
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
            int(manifest["batch_size"]), int(manifest["part_rows"]), dict(manifest["identity"])
            return manifest
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def prepare(self, manifest: dict, force: bool) -> dict:
        """Create or reopen the folder; returns the manifest in force (a resumed run keeps the first's)."""
        if self.folder.exists() and force:
            shutil.rmtree(self.folder)
        if self.folder.exists():
            old = self.manifest()
            if old is None:
                # parts of unknown batch size and settings cannot be trusted: start over
                shutil.rmtree(self.folder) if self.folder.is_dir() else self.folder.unlink()
            else:
                diff = differences(old["identity"], manifest["identity"])
                if diff:
                    raise SettingError(
                        f"{self.folder} holds an interrupted extraction with other settings "
                        f"({'; '.join(diff[:3])}); re-run it with those settings to resume, or add force=True to "
                        "start over")
                return old
        self.folder.mkdir(parents=True, exist_ok=True)
        self.save_json(MANIFEST, manifest)
        return manifest

    def save_json(self, name: str, data: dict) -> None:
        try:
            with atomic_path(self.folder / name) as tmp:
                tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
        except OSError as e:
            raise room_error(e, self.folder) from None

    def save(self, path: Path, part: dict) -> None:
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **part)
        except OSError as e:
            need = sum(a.nbytes for a in part.values())
            raise room_error(e, self.folder, need) from None

    @staticmethod
    def load(path: Path, rows: int, dim: int, views: int = 0) -> dict | None:
        """Check a part of `rows` rows (kept + skipped) and `dim` features (and `views` views of each): its row
        count and skipped files (not its features: memory holds at most one part), or None when it must be
        computed again."""
        keys = ("features", "labels", "sources", "skipped") + (("view_features",) if views else ())
        try:
            with np.load(path, allow_pickle=False) as z:
                part = {k: z[k] for k in keys}
        except Exception:  # noqa: BLE001 - an unreadable part is simply computed again
            return None
        n = len(part["labels"])
        ok = (part["features"].shape == (n, dim) and part["features"].dtype == np.float32
              and part["labels"].ndim == 1 and len(part["sources"]) == n and n + len(part["skipped"]) == rows
              and (not views or (part["view_features"].shape == (n, views, dim)
                                 and part["view_features"].dtype == np.float32)))
        return {"n": n, "skipped": [str(s) for s in part["skipped"]]} if ok else None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------- one writer per cache


class CacheLock:
    """An exclusive `filelock` lock on `<cache>.lock` with the holder's pid in `<cache>.lock.pid`.

    The pid lives in a sidecar file because some filelock releases truncate the lock file itself on
    every attempt."""

    def __init__(self, out: Path, wait: bool, log: Callable[[str], None]):
        from filelock import FileLock

        self.lock = FileLock(str(out) + ".lock")
        self.pid_file = Path(str(out) + ".lock.pid")
        self.out, self.wait, self.log = out, wait, log

    def __enter__(self) -> "CacheLock":
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            holder = self.pid_file.read_text().strip() if self.pid_file.is_file() else "unknown"
            if not self.wait:
                raise SettingError(f"{self.out} is being written by another extract (process {holder}); "
                                   "wait for it, or run again without no_wait=True to wait automatically") from None
            self.log(f"waiting for process {holder}, which is writing {self.out} ...")
            self.lock.acquire()
        try:
            self.pid_file.write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the pid is a courtesy to waiters; the lock itself is what counts
        return self

    def __exit__(self, *exc) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.lock.release()


# --------------------------------------------------------------------------- the run


class LocalEngine:
    """Computes the missing parts in this process, in order: the next batch loads on a second thread while
    the model runs. Another engine (extract.ray_engine.RayEngine) offers the same three methods."""

    def check(self) -> None:
        """Whatever the engine needs, checked before anything is written."""

    def summary(self, **fields) -> Summary:
        return Summary(**fields)

    def compute(self, dataset: Dataset, extractor: Extractor, checkpoints: Checkpoints, manifest: dict, dim: int,
                summary: Summary, make_bar, log, augment: AugmentSettings | None = None) -> dict[str, list[Path]]:
        """Every split's checkpoint parts (with their augmented views), those on disk reused; returns their
        paths in row order."""
        with ThreadPoolExecutor(max_workers=1) as reader:
            return {split: extract_split(split, data, extractor, checkpoints, manifest, dim, reader, summary,
                                         make_bar, log, augment)
                    for split, data in dataset.splits.items()}


def run(cfg: ExtractConfig, dataset: Dataset, out: Path, extractor: Extractor,
        make_bar: Callable[[str, int, int], object] | None = None,
        log: Callable[[str], None] = lambda msg: None, extra_attrs: dict | None = None,
        engine: LocalEngine | None = None) -> Summary:
    """Extract features of every split of `dataset` into the cache `out`.

    `extra_attrs` are written into the cache beside the usual ones (a shard's `shard`, `num_shards`,
    `shard_rows`: see extract/shards.py); `engine` computes the parts (default: this process)."""
    out, engine = check_out(out), engine or LocalEngine()
    ident = identity(cfg, dataset, extractor)
    if check_existing(out, ident, cfg.force, dataset.changes_since):
        dataset.save_index()
        return up_to_date(out, ident, dataset.location, log)
    engine.check()
    check_writable(out.parent)
    model_size = extractor.sizes.model
    if not extractor.from_file and model_size != extractor.image_size:
        log(f"{extractor.name} needs at least {model_size} px: resizing {extractor.image_size} px images "
            f"up to {model_size} px")
    dim = extractor.feature_dim  # builds the model: a bad model or weights fail before anything is written
    with CacheLock(out, wait=not cfg.no_wait, log=log):
        remove_killed_writes(out, log)
        dataset.save_index()
        if not cfg.force and check_existing(out, ident, False):
            return up_to_date(out, ident, dataset.location, log)  # another run finished it while this one waited
        batch_size = cfg.batch_size or default_batch_size(extractor.precision, model_size, extractor.runtime)
        part_rows = -(-max(cfg.checkpoint_every, 1) // batch_size) * batch_size
        checkpoints = Checkpoints(out)
        manifest = checkpoints.prepare({"identity": ident, "batch_size": batch_size, "part_rows": part_rows},
                                       cfg.force)
        summary = engine.summary(status="built", out=out, feature_dim=dim, precision=extractor.precision,
                                 batch_size=manifest["batch_size"], runtime=extractor.runtime)
        extractor.batch_size = manifest["batch_size"]  # what OpenVINO compiles for
        started = time.perf_counter()
        parts = engine.compute(dataset, extractor, checkpoints, manifest, dim, summary, make_bar, log,
                               augment_settings(cfg))
        summary.seconds = time.perf_counter() - started
        attrs = {**cache_attrs(cfg, dataset, extractor, ident, dim, summary), **(extra_attrs or {})}
        assemble(out, attrs, parts, cfg.store_dtype, dim, sum(summary.rows.values()))
        checkpoints.remove()
    return summary


def remove_killed_writes(out: Path, log: Callable[[str], None]) -> None:
    """Remove what runs killed while writing `out` left: `.<stem>.<pid>.tmp.h5` beside it (a full-size
    cache killed in its final write) and temporary parts in its checkpoint folder, when their process
    is gone. Called under the cache's lock, so no live writer of `out` is touched."""
    for path in remove_stale_temps(out.parent, out) + remove_stale_temps(partial_dir(out)):
        log(f"removed {path}, left by a run that was killed while writing it")


def up_to_date(out: Path, ident: dict, location: str, log: Callable[[str], None]) -> Summary:
    """A cache that already holds these features. Its data may have moved (same content, new place):
    then the new place is recorded, so galleries and robustness find the images, and nothing is computed."""
    stale = Checkpoints(out)
    manifest = stale.manifest()
    if manifest is not None and not differences(manifest["identity"], ident):
        stale.remove()  # killed after the cache was renamed into place but before its checkpoints went
    old = read_attrs(out).get("data_location")
    if old and old != location:
        try:
            with CacheLock(out, wait=True, log=log):
                update_text_attrs(out, {"data_location": location})
            log(f"the data moved from {old} to {location}: same content, so the cache is kept and now records "
                "the new place (nothing recomputed)")
        except (OSError, UserError) as e:
            log(f"note: the data moved from {old} to {location}, but the cache could not record it ({e}); "
                "galleries will not find the images until it can")
    return Summary("up-to-date", out)


def extract_split(split: str, data, extractor: Extractor, checkpoints: Checkpoints, manifest: dict, dim: int,
                  reader: ThreadPoolExecutor, summary: Summary, make_bar, log,
                  augment: AugmentSettings | None = None) -> list[Path]:
    """Every part of one split: reused from disk up to the first missing one, computed after it.
    With `augment`, each part also holds the features of the split's augmented views (n, K, D)."""
    n, part_rows, batch_size = len(data), manifest["part_rows"], manifest["batch_size"]
    augment = augment or AugmentSettings()
    views = augment.views_of(split)
    starts = range(0, n, part_rows)
    done = [checkpoints.load(checkpoints.path(split, k), min(part_rows, n - a), dim, views)
            for k, a in enumerate(starts)]
    # resume after the last part on disk; parts are only ever written in order
    first_missing = next((k for k, p in enumerate(done) if p is None), len(done))
    summary.resumed[split] = min(first_missing * part_rows, n)
    if summary.resumed[split]:
        log(f"{split}: resuming at row {summary.resumed[split]:,} of {n:,} from {checkpoints.folder}")
    bar = (make_bar or (lambda *a: NoBar()))(split, n, summary.resumed[split])
    paths, summary.rows[split] = [], 0
    try:
        for k, start in enumerate(starts):
            path = checkpoints.path(split, k)
            if k < first_missing:
                part = done[k]
            else:
                arrays = extract_rows(extractor, data.read, start, min(start + part_rows, n), batch_size, dim,
                                      reader, bar, views=views and (split, data, augment))
                checkpoints.save(path, arrays)
                part = {"n": len(arrays["labels"]), "skipped": [str(x) for x in arrays["skipped"]]}
                summary.computed += part["n"] + len(part["skipped"])
            paths.append(path)
            summary.rows[split] += part["n"]
            summary.skipped.extend(part["skipped"])
    finally:
        bar.close()
    return paths


def extract_rows(extractor: Extractor, read, start: int, stop: int, batch_size: int, dim: int,
                 reader: ThreadPoolExecutor, bar, views=None) -> dict:
    """Features of rows [start, stop), batch by batch; the next batch loads while this one runs.

    `views`: (split name, the Split, AugmentSettings) to also compute K augmented views of each
    row, seeded by (seed, split, row index in the whole split, view), into "view_features" (n, K, D):
    a shard's slice draws the same views for a row as a single run does."""
    bounds = [(a, min(a + batch_size, stop)) for a in range(start, stop, batch_size)]
    feats, labels, sources, skipped, view_feats = [], [], [], [], []
    pending = reader.submit(read, *bounds[0])
    for i in range(len(bounds)):
        batch = pending.result()
        if i + 1 < len(bounds):
            pending = reader.submit(read, *bounds[i + 1])
        if len(batch.labels):
            feats.append(extractor(batch.images))  # (b, D) float32
            if views:
                split, data, augment = views
                lost = set(batch.skipped)
                rows = np.array([r for r in range(*bounds[i]) if data.sources[r] not in lost])  # kept rows
                assert len(rows) == len(batch.labels), "kept rows do not match the batch"
                rows = rows + data.first_row  # the row's index in the whole split, not in a shard's slice
                view_feats.append(np.stack(
                    [extractor.views(batch.images, view_seeds(extractor.seed, split, rows, v), augment)
                     for v in range(augment.views_of(split))], axis=1))  # (b, K, D) float32
        labels.append(batch.labels)
        sources.extend(batch.sources)
        skipped.extend(batch.skipped)
        bar.update(len(batch.labels) + len(batch.skipped))
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)  # (n, D)
    assert features.shape[1] == dim, f"model gave {features.shape[1]} features, expected {dim}"
    arrays = {
        "features": features.astype(np.float32, copy=False),
        "labels": np.concatenate(labels).astype(np.int64),
        "sources": np.asarray(sources, dtype=str),
        "skipped": np.asarray(skipped, dtype=str),
    }
    if views:
        k = views[2].views_of(views[0])
        arrays["view_features"] = (np.concatenate(view_feats) if view_feats
                                   else np.zeros((0, k, dim), np.float32)).astype(np.float32, copy=False)
    return arrays


def cache_attrs(cfg: ExtractConfig, dataset: Dataset, extractor: Extractor, ident: dict, dim: int,
                summary: Summary) -> dict:
    return {
        "dataset": dataset.name,
        "data_kind": dataset.kind,
        "data_location": dataset.location,
        **ident,
        **extractor.record(),
        "class_names": dataset.class_names,
        "feature_dim": dim,
        "batch_size": summary.batch_size,
        "skipped": summary.skipped,
        "config": cfg.to_dict(),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def assemble(out: Path, attrs: dict, parts: dict[str, list[Path]], store_dtype: str, dim: int, rows: int) -> None:
    """The parts into the final cache, after checking there is room for it: HDF5 can crash the process
    when a write fails half-way, so a full disk or a file-size limit is caught before it starts."""
    views = max(int(attrs.get("views", 0) or 0), int(attrs.get("test_views", 0) or 0))
    need = int(rows * dim * (1 + views) * np.dtype(store_dtype).itemsize * 1.02 + rows * 300 + (1 << 20))
    room = free_bytes(out.parent)
    if room is not None and room < need:
        raise room_error(OSError(28, os.strerror(28)), out.parent, need - room)
    try:
        write_cache(out, attrs, parts, store_dtype=store_dtype)
    except OSError as e:
        raise room_error(e, out.parent, need) from None


def free_bytes(folder: Path) -> int | None:
    """Bytes a file in `folder` may still grow to: free disk space, capped by the file-size limit."""
    import resource

    try:
        st = os.statvfs(folder)
        room = st.f_bavail * st.f_frsize
    except OSError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return room if soft == resource.RLIM_INFINITY else min(room, soft)
