"""`--engine ray`: one extraction spread over the cores of this machine or a Ray cluster, with Ray Data.

    blocks of row indices --read_block (CPU tasks: read, decode, resize)--> rows with their indices
      --FeatureActor pool (N actors, each holding one Extractor)--> features with their indices
      --> the driver: the usual checkpoint parts (extract.pipeline.Checkpoints), then the usual cache

Ray Data does not keep row order, so every row carries its split and index; the
driver files rows into their checkpoint part and writes a part once it is
whole, sorted by index. A killed run resumes with the parts still missing.

Actors ask for one GPU each where the cluster has GPUs. On CPUs they ask for a
fraction of a CPU and TensorFlow gets a matching thread count, so that at least
one CPU stays free for the read tasks: a pool holding every CPU starves the
reads and hangs the dataset (ray-project/ray#44687).

`ray.init()` runs on this machine; `--address` or RAY_ADDRESS joins a cluster
started with `ray start --head`. Every node then needs this project installed,
the data path and the weights or model file at the same paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.data import Dataset, Split
from extract.pipeline import Checkpoints, NoBar, Summary
from featurecache.errors import SettingError, reason
from featurecache.extractor import Extractor
from featurecache.tfimport import fd2_to_devnull

INSTALL = "engine='ray' needs Ray, which is not installed: pip install -e '.[distributed]' (or make install)"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RaySummary(Summary):
    """A pipeline Summary plus how the pool ran; start-up is kept apart from the steady throughput."""

    workers: int = 0
    pool: dict = field(default_factory=dict)   # per actor: num_cpus, num_gpus, threads; decode_cpus per read task
    ray_init_s: float = 0.0                    # ray.init (starting or joining the cluster)
    first_batch_s: float = 0.0                 # from the dataset's start to its first features: actors loading
    steady_rows: int = 0                       # rows after the first batch
    steady_s: float = 0.0                      # seconds after the first batch

    @property
    def steady_images_per_second(self) -> float:
        return self.steady_rows / self.steady_s if self.steady_s > 0 else 0.0

    def pool_line(self) -> str:
        """How the pool ran, start-up apart from the steady rate; a run whose rows all came back in the first
        batch has no steady rate to report (not "0 img/s")."""
        start = (f"ray: {self.workers} workers, start-up {self.ray_init_s:.1f} s (ray.init) + "
                 f"{self.first_batch_s:.1f} s (actors loading, first batch)")
        if not self.computed:
            return start
        if not self.steady_rows or self.steady_s <= 0:
            return (f"{start}; every row came back with the first batch, too few to measure the pool's steady "
                    "rate (a larger run shows it)")
        ips = self.steady_images_per_second
        return f"{start}; after it {ips:.0f} img/s over the pool" if ips >= 10 else \
            f"{start}; after it {ips:.2g} img/s over the pool"


def import_ray(verbose: bool = False):
    """The `ray` module with Ray Data, or one line saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the C++ core's notices, written to fd 2
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra, not only ray core
    except ImportError:
        raise SettingError(INSTALL) from None
    return ray


def start(address: str | None, verbose: bool) -> float:
    """Start Ray on this machine or join the cluster at `address` (else RAY_ADDRESS); returns the seconds taken.

    Ray's own logs stay in its session folder unless `verbose`. A Ray already started in this process
    (tests start one with `ray.init(num_cpus=2)`) is used as it is."""
    ray = import_ray()
    started = time.perf_counter()
    if not verbose:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return 0.0
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    else:
        # workers on this machine import this checkout's code, as the driver does
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    try:
        with contextlib.nullcontext() if verbose else fd2_to_devnull():
            ray.init(address=address, log_to_driver=verbose, include_dashboard=False, configure_logging=True,
                     logging_level=logging.INFO if verbose else logging.ERROR)
    except Exception as e:  # noqa: BLE001 - every way a cluster can be out of reach is one line
        if address is None:
            raise SettingError(f"could not start Ray on this machine ({reason(e, 120)}); run with "
                               "verbose=True to see Ray's logs", setting="verbose") from None
        raise SettingError(f"cannot reach the Ray cluster at {address} ({reason(e, 120)}); start it "
                           "with `ray start --head` and pass the address it prints, or leave `address` "
                           "and RAY_ADDRESS unset to run on this machine", setting="address") from None
    if not verbose:
        quiet_raylet(ray)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    context.verbose_stats_logs = False
    return time.perf_counter() - started


def quiet_raylet(ray) -> None:
    """Stop the driver printing the raylet's pushed messages ("(raylet) WARNING: 8 PYTHON worker processes
    have been started ..."), which Ray prints whatever `log_to_driver` says. Ray has no option for it; this
    is the switch its own debugger (ray.util.rpdb) turns off for the same reason. A Ray without the switch
    keeps printing them, nothing worse."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if worker is not None and hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address must answer within `timeout` s: ray.init would otherwise retry for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not host or not port.isdigit():
        return  # Ray's own forms: let ray.init say what is wrong
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise SettingError(f"cannot reach the Ray cluster at {address} ({e.strerror or reason(e)}); start it with "
                           "`ray start --head` and pass the address it prints, or leave `address` and RAY_ADDRESS "
                           "unset to run on this machine", setting="address") from None


def fit_workers(workers: int, cpus: float, gpus: float, joined: bool) -> tuple[int, str]:
    """The number of actors to run and a note when it is not `workers`: more actors than CPUs (GPUs, where
    there are any) only share the same cores, each with its own model (16 on 2 cores ran 5x slower than 2:
    docs/distributed.md). On this machine the pool is cut to what it has; a cluster joined by address may
    grow, so there the note warns and the pool stays as asked."""
    room = int(gpus) if gpus >= 1 else max(1, int(cpus))
    if workers <= room:
        return workers, ""
    what = f"{gpus:g} GPU(s)" if gpus >= 1 else f"{cpus:g} CPU(s)"
    if joined:
        return workers, (f"warning: --workers {workers} is more than the cluster's {what} now; the extra actors "
                         f"wait or share them, which is slower unless the cluster grows (--workers {room} fits)")
    return room, (f"note: --workers {workers} is more than this machine's {what}: running {room} actor(s), as more "
                  "would only share the same cores and run slower")


def pool_resources(workers: int, cpus: float, gpus: float) -> dict:
    """What each actor and each read task asks for: a GPU per actor where there are GPUs; else a share of
    the CPUs that leaves one for reading, with as many TensorFlow threads as the share rounds to."""
    if gpus >= 1:
        return {"num_cpus": 1.0, "num_gpus": 1.0, "threads": max(1, int(cpus // workers) - 1),
                "decode_cpus": 1.0}
    threads = max(1, int(cpus // workers))
    share = max(0.1, min(float(threads), (cpus - 1) / workers)) if cpus > 1 else 0.5 / workers
    return {"num_cpus": round(share, 3), "num_gpus": 0.0, "threads": threads,
            "decode_cpus": round(max(0.1, min(1.0, cpus - share * workers)), 3)}


def extractor_spec(extractor: Extractor) -> dict:
    """The arguments that rebuild `extractor` in an actor: the same graph, sizes and weights."""
    return {"backbone": extractor.backbone, "pooling": extractor.pooling, "image_size": extractor.image_size,
            "weights": extractor.weights, "seed": extractor.seed, "precision": extractor.precision,
            "runtime": extractor.runtime,
            "feature_layer": extractor.feature_layer, "native_size": extractor.sizes.input}


def read_block(block: dict, splits: dict[str, Split], size: int) -> dict:
    """Ray Data task: blocks {split, start, stop} -> their rows, each with its split and index.

    Unreadable files come out as rows with ok=False and zero pixels; the driver lists them as skipped."""
    out: dict[str, list] = {"split": [], "row": [], "ok": [], "label": [], "source": [], "image": []}
    for name, start, stop in zip(block["split"], block["start"], block["stop"]):
        split, start, stop = splits[str(name)], int(start), int(stop)
        batch = split.read(start, stop)
        kept = iter(zip(batch.images, batch.labels, batch.sources))
        item = next(kept, None)
        for i in range(start, stop):
            ok = item is not None and item[2] == split.sources[i]
            out["split"].append(str(name))
            out["row"].append(i)
            out["ok"].append(ok)
            out["label"].append(int(item[1]) if ok else -1)
            out["source"].append(item[2] if ok else split.sources[i])
            out["image"].append(item[0] if ok else np.zeros((size, size, 3), np.uint8))
            if ok:
                item = next(kept, None)
    return {"split": np.asarray(out["split"], dtype=str), "row": np.asarray(out["row"], np.int64),
            "ok": np.asarray(out["ok"], bool), "label": np.asarray(out["label"], np.int64),
            "source": np.asarray(out["source"], dtype=str),
            "image": np.stack(out["image"]) if out["image"] else np.zeros((0, size, size, 3), np.uint8)}


class FeatureActor:
    """Ray Data actor: loads the backbone once, then (rows with pixels) -> (rows with features)."""

    def __init__(self, spec: dict, threads: int):
        from featurecache.tfimport import tensorflow

        tf = tensorflow()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already running in this worker: it keeps its threads
        self.extractor = Extractor(**spec)
        self.extractor.threads = threads  # OpenVINO: the actor's share of the cores, as TensorFlow's above
        self.dim = self.extractor.feature_dim

    def __call__(self, batch: dict) -> dict:
        ok = batch["ok"]
        features = np.zeros((len(ok), self.dim), np.float32)  # (b, D); rows of unreadable files stay out
        if ok.any():
            features[ok] = self.extractor(np.ascontiguousarray(batch["image"][ok]))
        return {"split": batch["split"], "row": batch["row"], "ok": ok, "label": batch["label"],
                "source": batch["source"], "features": features}


class PartBuffer:
    """Rows of one checkpoint part as they arrive, in any order; whole once `length` rows are in."""

    def __init__(self, length: int):
        self.length, self.count, self.chunks = length, 0, []

    def add(self, chunk: dict) -> bool:
        self.chunks.append(chunk)
        self.count += len(chunk["row"])
        return self.count >= self.length

    def arrays(self, dim: int) -> dict:
        rows = {k: np.concatenate([c[k] for c in self.chunks]) for k in self.chunks[0]}
        order = np.argsort(rows["row"], kind="stable")
        assert len(np.unique(rows["row"])) == self.length, "a row arrived twice"
        rows = {k: v[order] for k, v in rows.items()}
        ok = rows["ok"]
        return {"features": rows["features"][ok].reshape(-1, dim).astype(np.float32),
                "labels": rows["label"][ok].astype(np.int64),
                "sources": rows["source"][ok].astype(str),
                "skipped": rows["source"][~ok].astype(str)}


@dataclass
class RayEngine:
    """extract.pipeline's engine on a Ray Data pipeline of `workers` actors (pipeline.run(..., engine=RayEngine(...)))."""

    workers: int = 2
    address: str | None = None
    verbose: bool = False

    def check(self) -> None:
        import_ray(self.verbose)  # before anything is written: without Ray, one line saying how to install it

    def summary(self, **fields) -> RaySummary:
        return RaySummary(workers=self.workers, **fields)

    def compute(self, dataset: Dataset, extractor: Extractor, checkpoints: Checkpoints, manifest: dict, dim: int,
                summary: RaySummary, make_bar, log, augment=None) -> dict[str, list[Path]]:
        """Every part of every split: those on disk are kept (in any order: Ray writes them out of order).
        Augmented views are computed by the local engine only (`check_engine` refuses them here)."""
        part_rows, batch_size = manifest["part_rows"], manifest["batch_size"]
        parts: dict[str, list[dict | None]] = {}
        missing: dict[tuple[str, int], int] = {}
        for split, data in dataset.splits.items():
            n = len(data)
            parts[split] = [checkpoints.load(checkpoints.path(split, k), min(part_rows, n - a), dim)
                            for k, a in enumerate(range(0, n, part_rows))]
            for k, part in enumerate(parts[split]):
                if part is None:
                    missing[(split, k)] = min(part_rows, n - k * part_rows)
            summary.resumed[split] = sum(min(part_rows, n - k * part_rows)
                                         for k, p in enumerate(parts[split]) if p is not None)
            if summary.resumed[split]:
                log(f"{split}: {summary.resumed[split]:,} of {n:,} rows resumed from {checkpoints.folder}")
        if missing:
            compute(dataset, extractor, checkpoints, parts, missing, part_rows, batch_size, dim, self.workers,
                    self.address, self.verbose, summary, make_bar, log)
        for split, split_parts in parts.items():
            summary.rows[split] = sum(p["n"] for p in split_parts)
            summary.skipped.extend(s for p in split_parts for s in p["skipped"])
        return {split: [checkpoints.path(split, k) for k in range(len(p))] for split, p in parts.items()}


def compute(dataset: Dataset, extractor: Extractor, checkpoints: Checkpoints, parts: dict, missing: dict,
            part_rows: int, batch_size: int, dim: int, workers: int, address: str | None, verbose: bool,
            summary: RaySummary, make_bar, log) -> None:
    """Run the missing parts through Ray Data and write each as soon as all its rows are back."""
    ray = import_ray()
    summary.ray_init_s = start(address, verbose)
    resources = ray.cluster_resources()
    joined = bool(address or os.environ.get("RAY_ADDRESS"))
    workers, note = fit_workers(workers, float(resources.get("CPU", 1)), float(resources.get("GPU", 0)), joined)
    if note:
        log(note)
    summary.workers = workers
    summary.pool = pool_resources(workers, float(resources.get("CPU", 1)), float(resources.get("GPU", 0)))
    pool = summary.pool
    log(f"ray: {workers} actor(s) of {pool['num_cpus']:g} CPU, {pool['num_gpus']:g} GPU, {pool['threads']} "
        f"TensorFlow thread(s) each; read tasks of {pool['decode_cpus']:g} CPU; cluster "
        f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
    # blocks of one batch of rows, never across a part: parts are whole batches
    blocks = [{"split": split, "start": a, "stop": min(a + batch_size, k * part_rows + length)}
              for (split, k), length in missing.items()
              for a in range(k * part_rows, k * part_rows + length, batch_size)]
    ds = ray.data.from_items(blocks, override_num_blocks=len(blocks))
    ds = ds.map_batches(read_block, batch_size=None, batch_format="numpy", num_cpus=pool["decode_cpus"],
                        fn_kwargs={"splits": dataset.splits, "size": extractor.sizes.input})
    ds = ds.map_batches(FeatureActor, batch_size=batch_size, batch_format="numpy", concurrency=workers,
                        num_cpus=pool["num_cpus"], num_gpus=pool["num_gpus"],
                        fn_constructor_kwargs={"spec": extractor_spec(extractor), "threads": pool["threads"]})
    total = sum(len(d) for d in dataset.splits.values())
    bar = (make_bar or (lambda *a: NoBar()))("ray", total, sum(summary.resumed.values()))
    buffers = {key: PartBuffer(length) for key, length in missing.items()}
    t0, first = time.perf_counter(), None
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if first is None:
                first = time.perf_counter()
                summary.first_batch_s = first - t0
            else:
                summary.steady_rows += len(batch["row"])
            for split in np.unique(batch["split"]):
                in_split = batch["split"] == split
                ks = batch["row"][in_split] // part_rows
                for k in np.unique(ks):
                    sel = np.flatnonzero(in_split)[ks == k]
                    key = (str(split), int(k))
                    if buffers[key].add({c: batch[c][sel] for c in ("row", "ok", "label", "source", "features")}):
                        arrays = buffers.pop(key).arrays(dim)
                        checkpoints.save(checkpoints.path(*key), arrays)
                        parts[key[0]][key[1]] = {"n": len(arrays["labels"]),
                                                 "skipped": [str(s) for s in arrays["skipped"]]}
                        summary.computed += missing[key]
            bar.update(len(batch["row"]))
    finally:
        bar.close()
    summary.steady_s = time.perf_counter() - first if first is not None else 0.0
    if buffers:
        raise RuntimeError(f"Ray Data returned too few rows: parts {sorted(buffers)[:3]} incomplete")


__all__ = ["RayEngine", "start", "import_ray", "pool_resources", "fit_workers", "RaySummary", "INSTALL"]
