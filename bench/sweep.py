"""`python -m bench.sweep`: measure extraction speed per precision, image size, batch size and
model-call variant, to choose the defaults in extract/precision.py and extract/pipeline.py.

Runs VGG16 (random weights) as `extract` builds it, on random uint8 32 px images, in short
interleaved rounds, and keeps each configuration's best round: on a machine shared with other
work, the best round is the one least disturbed. It also prints images per CPU-second of this
process times the core count, which other work disturbs much less than wall time. Prints one line per configuration; writes nothing.

    python -m bench.sweep --sizes 32,64 --precisions bfloat16,float32 --batches 32,64,128,256
"""

from __future__ import annotations

import time

import click
import numpy as np

from featurecache.command import Command


def variants(extractor, input_size: int, names: list[str]) -> dict:
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    model = extractor.model
    out = {}
    for name in names:
        if name == "pipeline":  # what extract runs now
            out[name] = extractor
        elif name in ("plain", "jit"):
            fn = tf.function(lambda x: model(x, training=False), jit_compile=(name == "jit"),
                             input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.uint8)])
            out[name] = lambda x, fn=fn: fn(x).numpy()
    return out


@click.command(cls=Command)
@click.option("--sizes", default="32,64")
@click.option("--precisions", default="bfloat16,float32")
@click.option("--batches", default="32,64,128,256")
@click.option("--variants", "kinds", default="pipeline",
              help="pipeline (extract's own), plain (tf.function), jit (XLA), presized (resized outside the "
                   "graph, before the batch is fed; timing excludes that resize)")
@click.option("--rounds", type=int, default=4)
@click.option("--seconds", type=float, default=1.0, help="per configuration per round")
def main(sizes: str, precisions: str, batches: str, kinds: str, rounds: int, seconds: float) -> None:
    from featurecache.extractor import Extractor
    from featurecache.tfimport import tensorflow

    import os

    cores = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    bs = [int(b) for b in batches.split(",")]
    images = rng.integers(0, 256, (max(bs), 32, 32, 3), dtype=np.uint8)
    for size in (int(s) for s in sizes.split(",")):
        for precision in precisions.split(","):
            extractor = Extractor("vgg16", "gap", size, "none", 0, precision, native_size=32)
            fns = variants(extractor, 32, [v for v in kinds.split(",") if v != "presized"])
            if "presized" in kinds.split(",") and size != 32:
                big = Extractor("vgg16", "gap", size, "none", 0, precision)
                fns["presized"] = lambda x, big=big: big(presized[: len(x)])
            presized = np.asarray(tensorflow().image.resize(images, (size, size)).numpy().round(), np.uint8)
            best: dict = {}
            for name, fn in fns.items():
                for b in bs:
                    fn(images[:b])  # trace / warm up
            for _ in range(rounds):
                for name, fn in fns.items():
                    for b in bs:
                        n, t, c = 0, time.perf_counter(), time.process_time()
                        while time.perf_counter() - t < seconds:
                            fn(images[:b])
                            n += b
                        wall, cpu = time.perf_counter() - t, time.process_time() - c
                        old = best.get((name, b), (0.0, 0.0))
                        best[name, b] = (max(old[0], n / wall), max(old[1], n / cpu * cores))
            for (name, b), (ips, cpu_ips) in best.items():
                click.echo(f"{size:>4} px  {precision:<9} {name:<9} batch {b:>4}: {ips:7.1f} img/s, "
                           f"{cpu_ips:7.1f} img/s per {cores} CPU-seconds")


if __name__ == "__main__":
    main()
