"""Images/s of the extractor on one runtime at several batch sizes, alternating, in one process.

    python -m bench.batches --backbone vgg16 --size 32 --batches 64,128,256,512 [--runtime openvino] [--rounds 2]

Random pixels at 32 px resized inside the graph (as CIFAR-10 is fed), float32 unless --precision;
each batch size compiled before the timing. The numbers behind `featurecache.precision.default_batch_size`.
"""

from __future__ import annotations

import time

import click
import numpy as np

from featurecache.command import Command


@click.command(cls=Command)
@click.option("--backbone", default="vgg16", show_default=True)
@click.option("--size", type=int, default=224, show_default=True)
@click.option("--batches", default="8,16,32,64", show_default=True)
@click.option("--runtime", default="auto", show_default=True)
@click.option("--precision", default="float32", show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
def cli(backbone: str, size: int, batches: str, runtime: str, precision: str, rounds: int) -> None:
    """Best images/s per batch size over alternating rounds."""
    from featurecache.extractor import Extractor
    from featurecache.runtime import resolve_runtime

    sizes = [int(b) for b in batches.split(",")]
    weights = "imagenet" if backbone.endswith(".keras") else "none"
    n = max(sizes) * 2
    x = np.random.default_rng(0).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    extractors = {}
    for b in sizes:
        e = Extractor(backbone, "gap", size, weights, 0, precision, native_size=32, runtime=resolve_runtime(runtime))
        e.batch_size = b
        e(x[:b])
        extractors[b] = e
    best = dict.fromkeys(sizes, 0.0)
    for _ in range(rounds):
        for b in sizes:
            t = time.perf_counter()
            for s in range(0, n, b):
                extractors[b](x[s : s + b])
            best[b] = max(best[b], n / (time.perf_counter() - t))
    click.echo(" ".join(f"batch {b}: {r:.1f} img/s" for b, r in best.items()))


if __name__ == "__main__":
    cli(prog_name="python -m bench.batches")
