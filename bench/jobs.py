"""One measured step of the bench, run in a fresh process: `python -m bench.jobs JOB ... --json OUT`.

Jobs: `peak` (matmul peaks and VGG16 FLOPs per image), `seed-predict`
(Keras VGG16 float32, `model.predict` on the whole data set as one array),
`seed-train` (frozen VGG16 + softmax head trained for N epochs, the backbone
running every epoch) and `extract` (this project's `extract.api`,
cache writing included). Each writes a JSON dict of plain numbers to --json;
the parent adds the process' wall time and peak resident memory.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np

from featurecache.command import Group


def _write(path: str, result: dict) -> None:
    from bench.runner import peak_rss_mb

    result["self_peak_rss_mb"] = peak_rss_mb()
    Path(path).write_text(json.dumps(result, indent=1, allow_nan=False))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_all(data_dir: str, limit: int | None):
    """Seed style: every image of both splits in memory as uint8 arrays."""
    from extract.cifar import load_cifar10

    ds = load_cifar10(data_dir, limit)
    out = {}
    for split, data in ds.splits.items():
        batch = data.read(0, len(data))
        out[split] = (batch.images, batch.labels)  # (N, 32, 32, 3) uint8, (N,)
    return out


def _seed_arrays(images: np.ndarray, size: int):
    """As the course notebooks do it: resize the whole array, then preprocess_input, all float32."""
    from featurecache.tfimport import keras, tensorflow

    tf, k = tensorflow(), keras()
    x = images.astype("float32")  # (N, 32, 32, 3) float32
    if size != x.shape[1]:
        x = tf.image.resize(x, (size, size)).numpy()  # (N, size, size, 3) float32
    return k.applications.vgg16.preprocess_input(x)


def _seed_vgg16(size: int, seed: int):
    from featurecache.tfimport import keras

    k = keras()
    k.config.set_dtype_policy("float32")
    k.utils.set_random_seed(seed)
    base = k.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    base.trainable = False
    return base


@click.group(cls=Group)
def cli() -> None:
    """Single bench steps; `python -m bench` runs them all."""


@cli.command()
@click.option("--sizes", default="32,64")
@click.option("--matmul-sizes", default="2048,4096")
@click.option("--repeats", type=int, default=4)
@click.option("--json", "json_out", required=True)
def peak(sizes: str, matmul_sizes: str, repeats: int, json_out: str) -> None:
    """Measured matmul peak (float32, bfloat16) and VGG16 FLOPs per image at each size."""
    from bench.flops import vgg16_flops
    from bench.peak import matmul_gflops
    from featurecache.precision import cpu_flags, cpu_has_bf16, gpu_capability
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    ns = tuple(int(s) for s in matmul_sizes.split(","))
    result = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "cpu_bf16": cpu_has_bf16(),
        "cpu_amx": "amx_bf16" in cpu_flags(),
        "gpu_capability": gpu_capability(),
        "tensorflow": tf.__version__,
        "peak": {dt: matmul_gflops(dt, ns, repeats) for dt in ("float32", "bfloat16")},
        "vgg16_flops": {int(s): vgg16_flops(int(s)) for s in sizes.split(",")},
    }
    _write(json_out, result)


@cli.command("seed-predict")
@click.option("--data-dir", required=True)
@click.option("--size", type=int, required=True)
@click.option("--limit", type=int, default=None)
@click.option("--seed", type=int, default=0)
@click.option("--json", "json_out", required=True)
def seed_predict(data_dir: str, size: int, limit: int | None, seed: int, json_out: str) -> None:
    """Seed style: VGG16 float32, `model.predict` on the whole (train + test) array."""
    data = _load_all(data_dir, limit)
    images = np.concatenate([data["train"][0], data["test"][0]])
    model = _seed_vgg16(size, seed)
    t0 = time.perf_counter()
    x = _seed_arrays(images, size)
    t1 = time.perf_counter()
    feats = model.predict(x, verbose=0)  # (N, 512) float32
    t2 = time.perf_counter()
    _write(json_out, {
        "images": int(len(x)), "size": size, "prepare_s": t1 - t0, "predict_s": t2 - t1,
        "seconds": t2 - t0, "array_mb": x.nbytes / 2**20, "feature_dim": int(feats.shape[1]),
    })


@cli.command("seed-train")
@click.option("--data-dir", required=True)
@click.option("--size", type=int, default=32)
@click.option("--epochs", type=int, default=10)
@click.option("--limit", type=int, default=None)
@click.option("--seed", type=int, default=0)
@click.option("--json", "json_out", required=True)
def seed_train(data_dir: str, size: int, epochs: int, limit: int | None, seed: int, json_out: str) -> None:
    """Seed style end to end: frozen VGG16 + softmax head, `fit` for N epochs, then `evaluate` on test."""
    from featurecache.tfimport import keras

    k = keras()
    data = _load_all(data_dir, limit)
    base = _seed_vgg16(size, seed)
    model = k.Sequential([k.Input((size, size, 3)), base, k.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    x_train, x_test = _seed_arrays(data["train"][0], size), _seed_arrays(data["test"][0], size)
    t1 = time.perf_counter()
    model.fit(x_train, data["train"][1], epochs=epochs, batch_size=32, verbose=0)
    t2 = time.perf_counter()
    _, acc = model.evaluate(x_test, data["test"][1], verbose=0)
    t3 = time.perf_counter()
    _write(json_out, {
        "images_train": int(len(x_train)), "images_test": int(len(x_test)), "size": size, "epochs": epochs,
        "prepare_s": t1 - t0, "fit_s": t2 - t1, "evaluate_s": t3 - t2, "seconds": t3 - t0,
        "test_accuracy": float(acc),
    })


@cli.command()
@click.option("--data-dir", required=True)
@click.option("--size", type=int, required=True)
@click.option("--precision", default="auto")
@click.option("--runtime", default="auto")
@click.option("--batch-size", type=int, default=None)
@click.option("--limit", type=int, default=None)
@click.option("--out", required=True)
@click.option("--json", "json_out", required=True)
def extract(data_dir: str, size: int, precision: str, runtime: str, batch_size: int | None, limit: int | None,
            out: str, json_out: str) -> None:
    """This project: `extract.api` (prepare, then run) at its defaults (weights none), writing the cache."""
    from extract import api

    cfg = api.make_config(data_dir=data_dir, image_size=size, weights="none", precision=precision, runtime=runtime,
                          batch_size=batch_size, limit=limit, out=out, force=True)
    t0 = time.perf_counter()
    job = api.prepare(cfg)  # the data set read and checked, the model configured
    extractor = job.extractor
    t1 = time.perf_counter()
    result = api.run(job)  # model build, batches, parts, HDF5 file
    t2 = time.perf_counter()
    rows = sum(result.rows.values())
    _write(json_out, {
        "images": int(rows), "size": size, "precision": extractor.precision, "batch_size": result.batch_size,
        "runtime": extractor.runtime, "load_s": t1 - t0, "seconds": t2 - t1, "loop_s": result.seconds,
        "cache_mb": Path(out).stat().st_size / 2**20,
    })


@cli.command()
@click.option("--data-dir", default=None, help="A photo folder (default: bench.decode's, the cats-vs-dogs photos).")
@click.option("--size", type=int, default=224)
@click.option("--rounds", type=int, default=5)
@click.option("--json", "json_out", required=True)
def decode(data_dir: str | None, size: int, rounds: int, json_out: str) -> None:
    """The photo loader alone (decode and resize, no model) with 1 and with every decode worker."""
    from dataclasses import asdict

    from bench.decode import DEFAULT_PHOTOS, best_rates, process_ceiling
    from extract.folders import decode_workers

    folder, cores = data_dir or DEFAULT_PHOTOS, decode_workers(None)
    rows = best_rates(folder, size, sorted({1, cores}), rounds)
    ceiling = process_ceiling(folder, size, cores, rounds) if cores > 1 else None
    _write(json_out, {"size": size, "folder": str(folder), "rows": [asdict(r) for r in rows],
                      "processes": asdict(ceiling) if ceiling else None})


@cli.command("extract-ray")
@click.option("--data-dir", required=True)
@click.option("--size", type=int, required=True)
@click.option("--precision", default="auto")
@click.option("--batch-size", type=int, default=None)
@click.option("--limit", type=int, default=None)
@click.option("--workers", type=int, default=2)
@click.option("--out", required=True)
@click.option("--json", "json_out", required=True)
def extract_ray(data_dir: str, size: int, precision: str, batch_size: int | None, limit: int | None, workers: int,
                out: str, json_out: str) -> None:
    """This project on Ray Data (`extract.ray_engine.RayEngine`, --workers actors on this machine), with Ray's
    start-up (ray.init, then the actors loading until the first batch) apart from the steady throughput."""
    from extract import api, ray_engine

    cfg = api.make_config(data_dir=data_dir, image_size=size, weights="none", precision=precision,
                          runtime="tensorflow", batch_size=batch_size, limit=limit, out=out, force=True,
                          engine="ray", workers=workers)
    t0 = time.perf_counter()
    job = api.prepare(cfg)
    extractor = job.extractor
    t1 = time.perf_counter()
    result = api.run(job, engine=ray_engine.RayEngine(workers))
    t2 = time.perf_counter()
    _write(json_out, {
        "images": int(sum(result.rows.values())), "size": size, "precision": extractor.precision,
        "batch_size": result.batch_size, "workers": workers, "pool": result.pool, "load_s": t1 - t0,
        "seconds": t2 - t1, "loop_s": result.seconds, "ray_init_s": result.ray_init_s,
        "first_batch_s": result.first_batch_s, "steady_images": result.steady_rows, "steady_s": result.steady_s,
    })


if __name__ == "__main__":
    sys.exit(cli())
