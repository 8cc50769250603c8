"""The extraction run: stream images through a frozen backbone into a cache.

Rows flow loader -> model -> checkpoint part, one batch at a time; the next
batch is read on a second thread while the model runs. Every
`checkpoint_every` rows the part is written to `<cache>.partial/` (written
aside, then renamed), so an interrupted run loses at most one part and the
same command resumes it. When both splits are done, the parts are assembled
into the final HDF5 file, again written aside and renamed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from extract import __version__
from featurecache.backbones import check_weights, build_extractor, feature_dim, model_size
from featurecache.cache import file_sha256, IDENTITY_ATTRS, partial_dir, read_attrs, write_cache
from extract.config import ExtractConfig
from extract.datasets import Dataset
from featurecache.errors import UserError
from featurecache.precision import default_batch_size

MANIFEST = "manifest.json"


class _NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def identity(cfg: ExtractConfig, dataset: Dataset, precision: str) -> dict:
    """The settings that define a cache; a cache is reused only when all match."""
    weights = check_weights(cfg.weights, cfg.backbone)
    return {
        "data_fingerprint": dataset.fingerprint,
        "backbone": cfg.backbone,
        "pooling": cfg.pooling,
        "image_size": cfg.image_size,
        "weights": weights,
        "weights_sha256": file_sha256(weights) if weights not in ("imagenet", "none") else "",
        "seed": cfg.seed,
        "precision": precision,
        "limit": cfg.limit if cfg.limit is not None else -1,
        "test_fraction": cfg.test_fraction if dataset.kind == "folder" else -1.0,
        "store_dtype": cfg.store_dtype,
    }


def _differences(have: dict, want: dict) -> list[str]:
    keys = [k for k in IDENTITY_ATTRS + ("weights_sha256",) if k in want]
    return [f"{k} {have.get(k)!r} != {want[k]!r}" for k in keys if have.get(k) != want[k]]


def check_existing(out: Path, ident: dict, force: bool, changes: Callable[[str], str] | None = None) -> bool:
    """True when `out` already holds this very cache. Raises if it holds another.

    `changes(old_fingerprint)` names the files that changed since the cache was made."""
    if not out.exists() or force:
        return False
    try:
        have = read_attrs(out)
    except UserError as e:
        raise UserError(f"{out} exists but is not a usable cache ({e.message}); use --force to overwrite it or choose another --out") from None
    diff = _differences(have, ident)
    if diff:
        changed = changes(have.get("data_fingerprint", "")) if changes and have.get("data_fingerprint") != ident["data_fingerprint"] else ""
        raise UserError(
            f"{out} holds a cache made with other settings ({'; '.join(diff[:3])})"
            + (f"; the data folder changed since: {changed}" if changed else "")
            + "; use --force to overwrite it or choose another --out"
        )
    return True


def _save_part(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_part(path: Path, rows: int, dim: int) -> dict | None:
    """Check a checkpoint part of `rows` rows (kept + skipped) and `dim` features on disk.

    Returns its row count and skipped files (not its features: memory holds at
    most one part), or None when it is missing or unusable and must be computed again."""
    try:
        with np.load(path, allow_pickle=False) as z:
            part = {k: z[k] for k in ("features", "labels", "sources", "skipped")}
    except Exception:  # noqa: BLE001 - an unreadable part is simply computed again
        return None
    n = len(part["labels"])
    ok = (part["features"].shape == (n, dim) and part["features"].dtype == np.float32
          and part["labels"].ndim == 1 and len(part["sources"]) == n and n + len(part["skipped"]) == rows)
    return {"n": n, "skipped": [str(s) for s in part["skipped"]]} if ok else None


def _read_manifest(partial: Path) -> dict | None:
    try:
        manifest = json.loads((partial / MANIFEST).read_text())
        int(manifest["batch_size"]), int(manifest["part_rows"]), dict(manifest["identity"])
        return manifest
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _prepare_partial(partial: Path, manifest: dict, force: bool) -> dict:
    """Create or reopen the checkpoint folder; returns the manifest in force."""
    path = partial / MANIFEST
    if partial.exists() and force:
        shutil.rmtree(partial)
    if partial.exists():
        old = _read_manifest(partial)
        if old is None:
            # parts of unknown batch size and settings cannot be trusted: start over
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
        else:
            diff = _differences(old["identity"], manifest["identity"])
            if diff:
                raise UserError(
                    f"{partial} holds an interrupted extraction with other settings ({'; '.join(diff[:3])}); "
                    "re-run it with those settings to resume, or add --force to start over"
                )
            return old  # batch size and part size come from the first run: resumed rows stay identical
    partial.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return manifest


def versions() -> dict:
    import h5py

    from featurecache.tfimport import keras, tensorflow

    tf, keras = tensorflow(), keras()
    return {
        "featurecache": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
        "h5py": h5py.__version__, "numpy": np.__version__, "python": platform.python_version(),
    }


def run(
    cfg: ExtractConfig,
    dataset: Dataset,
    out: Path,
    precision: str,
    make_bar: Callable[[str, int, int], object] | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Extract features of every split of `dataset` into the cache `out`.

    Returns a summary dict: status ("built" | "up-to-date"), rows, seconds,
    images per second, resumed rows, skipped files.
    """
    out = Path(out)
    ident = identity(cfg, dataset, precision)
    if check_existing(out, ident, cfg.force, dataset.changes_since):
        stale = _read_manifest(partial_dir(out))
        if stale is not None and not _differences(stale["identity"], ident):
            # killed after the cache was renamed into place but before its checkpoints were removed
            shutil.rmtree(partial_dir(out), ignore_errors=True)
        return {"status": "up-to-date", "out": str(out)}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {out.parent} ({e.strerror}); choose a writable --out") from None

    msize = model_size(cfg.backbone, cfg.image_size)
    if msize != cfg.image_size:
        log(f"{cfg.backbone} needs at least {msize} px: resizing {cfg.image_size} px images up to {msize} px")
    # build the model first: weights that cannot be had or do not fit fail before any checkpoint exists
    input_size = dataset.image_size or msize
    model = build_extractor(cfg.backbone, cfg.pooling, input_size, cfg.image_size, cfg.weights, cfg.seed, precision)
    dim = feature_dim(cfg.backbone, cfg.pooling, cfg.image_size)

    batch_size = cfg.batch_size or default_batch_size(precision, msize)
    part_rows = -(-max(cfg.checkpoint_every, 1) // batch_size) * batch_size
    manifest = _prepare_partial(
        partial_dir(out),
        {"identity": ident, "batch_size": batch_size, "part_rows": part_rows},
        cfg.force,
    )
    batch_size, part_rows = manifest["batch_size"], manifest["part_rows"]
    predict = _compiled(model, input_size)

    started = time.perf_counter()
    computed, resumed = 0, {}
    parts: dict[str, list[Path]] = {}      # checkpoint files, assembled at the end
    rows: dict[str, int] = {}
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as reader:
        for split in dataset.splits:  # train, val (when the data has one), test
            data = dataset.splits[split]
            n = len(data)
            parts[split], rows[split] = [], 0
            starts = range(0, n, part_rows)
            done = [_load_part(partial_dir(out) / f"{split}-{k:05d}.npz", min(part_rows, n - a), dim)
                    for k, a in enumerate(starts)]
            # resume after the last part on disk; parts are only ever written in order
            first_missing = next((k for k, p in enumerate(done) if p is None), len(done))
            resumed[split] = min(first_missing * part_rows, n)
            if resumed[split]:
                log(f"{split}: resuming at row {resumed[split]:,} of {n:,} from {partial_dir(out)}")
            bar = (make_bar or (lambda *a: _NoBar()))(split, n, resumed[split])
            try:
                for k, start in enumerate(starts):
                    path = partial_dir(out) / f"{split}-{k:05d}.npz"
                    if k < first_missing:
                        summary = done[k]
                    else:
                        part = _extract_rows(predict, data.read, start, min(start + part_rows, n), batch_size, dim, reader, bar)
                        _save_part(path, **part)
                        summary = {"n": len(part["labels"]), "skipped": [str(x) for x in part["skipped"]]}
                        computed += len(part["labels"]) + len(part["skipped"])
                        del part
                    parts[split].append(path)
                    rows[split] += summary["n"]
                    skipped.extend(summary["skipped"])
            finally:
                bar.close()
    seconds = time.perf_counter() - started

    attrs = {
        "dataset": dataset.name,
        "data_kind": dataset.kind,
        "data_location": dataset.location,
        **ident,
        "model_size": msize,
        "class_names": dataset.class_names,
        "feature_dim": dim,
        "batch_size": batch_size,
        "skipped": skipped,
        "config": cfg.to_dict(),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_cache(out, attrs, parts, store_dtype=cfg.store_dtype)
    shutil.rmtree(partial_dir(out), ignore_errors=True)
    return {
        "status": "built",
        "out": str(out),
        "rows": rows,
        "feature_dim": dim,
        "precision": precision,
        "batch_size": batch_size,
        "seconds": seconds,
        "images_per_second": computed / seconds if seconds > 0 else 0.0,
        "resumed_rows": resumed,
        "skipped": skipped,
    }


def _compiled(model, input_size: int):
    """One traced graph for every batch size (no retracing for the last, short batch).

    Measured on the 2-core AVX-512 CPU (`python -m bench.sweep`), and left plain on purpose:
    XLA (`jit_compile=True`) runs VGG16 2.5x slower than oneDNN (bf16, 64 px: 76 vs 188 img/s);
    freezing the weights into constants saved the per-batch kernel casts (+5-10% at batch 32,
    nothing at 128) but doubled peak memory (1.7 GB vs 0.8 GB); 1 inter-op thread changed
    nothing; resizing in the graph costs nothing measurable against feeding resized images."""
    from featurecache.tfimport import tensorflow

    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.uint8)], reduce_retracing=True)
    def predict(images):
        return model(images, training=False)

    return lambda images: predict(images).numpy()  # (b, D) float32


def _extract_rows(predict, read, start: int, stop: int, batch_size: int, dim: int, reader: ThreadPoolExecutor, bar) -> dict:
    """Features of rows [start, stop), batch by batch; the next batch loads while this one runs."""
    bounds = [(a, min(a + batch_size, stop)) for a in range(start, stop, batch_size)]
    feats, labels, sources, skipped = [], [], [], []
    pending = reader.submit(read, *bounds[0])
    for i in range(len(bounds)):
        batch = pending.result()
        if i + 1 < len(bounds):
            pending = reader.submit(read, *bounds[i + 1])
        if len(batch.labels):
            feats.append(predict(batch.images))  # (b, D) float32
        labels.append(batch.labels)
        sources.extend(batch.sources)
        skipped.extend(batch.skipped)
        bar.update(len(batch.labels) + len(batch.skipped))
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)  # (n, D)
    assert features.shape[1] == dim, f"model gave {features.shape[1]} features, expected {dim}"
    return {
        "features": features.astype(np.float32, copy=False),
        "labels": np.concatenate(labels).astype(np.int64),
        "sources": np.asarray(sources, dtype=str),
        "skipped": np.asarray(skipped, dtype=str),
    }
