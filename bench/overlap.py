"""Photo decoding against the model at 224 px: extract end to end vs the model alone, in one process.

    python -m bench.overlap [--data-dir ../shared/data/cats-vs-dogs-subset] [--backbone FILE|NAME] [--rounds 2]

Three rates, images/s, alternating over rounds: `model` runs the extractor (the default runtime and
precision) on photos decoded beforehand; `decode` is the loader alone (every decode worker);
`extract` is `extract.pipeline.run`'s loop (decode threads feeding batches ahead of the model,
checkpoint parts written), start-up excluded. On a machine whose cores the two share, the end-to-end
rate can reach at most 1 / (1/model + 1/decode) of the cores' work; the ratio extract/model is printed.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from featurecache.command import Command

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "cats-vs-dogs-subset"
LITE0 = ROOT.parent / "shared" / "models" / "efficientnet_lite0_imagenet_notop.keras"


@click.command(cls=Command)
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=PHOTOS, show_default=True)
@click.option("--backbone", default=str(LITE0), show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--runtime", default="auto", show_default=True)
def cli(data_dir: Path, backbone: str, rounds: int, runtime: str) -> None:
    """Extract end to end against the model alone on photos at 224 px."""
    from extract import pipeline
    from extract.config import ExtractConfig
    from extract.datasets import load_dataset
    from featurecache.extractor import Extractor
    from featurecache.precision import default_batch_size
    from featurecache.runtime import resolve_runtime

    weights = "imagenet" if backbone.endswith(".keras") else "none"
    extractor = Extractor(backbone, "gap", 224, weights, 0, "float32", runtime=resolve_runtime(runtime))
    batch = default_batch_size("float32", 224, extractor.runtime)
    extractor.batch_size = batch
    data = load_dataset(str(data_dir), 224, None, 0.2, 0)
    split = data.splits["train"]
    n = len(split)
    t = time.perf_counter()
    images = split.read(0, n).images   # (n, 224, 224, 3) uint8, decoded once for the model-alone rate
    rates = {"decode": [n / (time.perf_counter() - t)], "model": [], "extract": []}
    extractor(images[:batch])          # compile outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            t = time.perf_counter()
            for s in range(0, n, batch):
                extractor(images[s : s + batch])
            rates["model"].append(n / (time.perf_counter() - t))
            cfg = ExtractConfig(data_dir=str(data_dir), backbone=backbone, image_size=224, weights=weights,
                                batch_size=batch, out=str(Path(tmp) / "x.h5"), force=True)
            result = pipeline.run(cfg, data, Path(tmp) / "x.h5", extractor)
            rates["extract"].append(result.images_per_second)
            if r:
                t = time.perf_counter()
                split.read(0, n)
                rates["decode"].append(n / (time.perf_counter() - t))
    best = {k: max(v) for k, v in rates.items()}
    best["ceiling"] = 1 / (1 / best["model"] + 1 / best["decode"])
    best["extract_over_model"] = best["extract"] / best["model"]
    click.echo(json.dumps({"runtime": extractor.runtime, "batch": batch, "images": n,
                           **{k: round(v, 3) for k, v in best.items()}}))


if __name__ == "__main__":
    cli(prog_name="python -m bench.overlap")
