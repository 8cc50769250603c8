"""`python -m bench.augment` / `make bench-augment`: what augmented views cost and what they give.

Extracts the same real images with K = 0, 2 and 4 views of each training and each test image
(`--augment`, same seed), timing each extraction, then trains LR and the MLP on the largest-K cache
three ways: without views (`--views none`, the plain features), with views, and with views plus
test-time augmentation (`--tta`). Writes <out-dir>/augment-<dataset>.json and .md and prints the
table.

    python -m bench.augment --data-dir ../shared/data/cats-vs-dogs-subset \\
        --backbone ../shared/models/efficientnet_lite0_imagenet_notop.keras
    python -m bench.augment --data-dir ../shared/data/cifar10-subset/cifar-10-batches-py --limit 1000 \\
        --backbone ../shared/models/efficientnet_lite0_imagenet_notop.keras --image-size 224

Extraction time covers reading, the model and checkpoints (not loading TensorFlow or building the
model); it should stay within 10% of (K + 1) times the K = 0 time.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from featurecache.command import Command

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "cats-vs-dogs-subset"
DEFAULT_BACKBONE = SHARED / "models" / "efficientnet_lite0_imagenet_notop.keras"


def extraction_times(data_dir: str, work: Path, views: list[int], augment: str, backbone: str, weights: str,
                     image_size: int | None, limit: int | None, precision: str, seed: int,
                     log=print) -> list[dict]:
    """Extract once per K (K test views too); one dict per K: views, seconds, images, rows, cache path."""
    from extract import pipeline
    from extract.config import ExtractConfig
    from extract.datasets import load_dataset
    from featurecache.extractor import Extractor
    from featurecache.precision import resolve_precision

    rows = []
    for k in views:
        cfg = ExtractConfig(data_dir=data_dir, backbone=backbone, weights=weights, image_size=image_size,
                            limit=limit, precision=precision, seed=seed, force=True,
                            augment=augment if k else None, views=k or None, test_views=k or None)
        extractor = Extractor(cfg.backbone, cfg.pooling, cfg.image_size, cfg.weights, cfg.seed,
                              resolve_precision(cfg.precision), cfg.feature_layer)
        dataset = load_dataset(cfg.data_dir, extractor.sizes.model, cfg.limit, cfg.test_fraction, cfg.seed)
        extractor.feed(dataset.image_size)
        out = work / f"{Path(data_dir).name}-k{k}.h5"
        cfg = replace(cfg, out=str(out))
        started = time.perf_counter()
        summary = pipeline.run(cfg, dataset, out, extractor)
        wall = time.perf_counter() - started
        images = sum(summary.rows.values())
        rows.append({"views": k, "seconds": round(summary.seconds, 2), "wall_s": round(wall, 2), "images": images,
                     "forward_passes": images * (k + 1), "cache": str(out), "batch_size": summary.batch_size,
                     "precision": summary.precision})
        log(f"K={k}: {summary.seconds:.1f} s for {images} images x {k + 1} passes")
    base = rows[0]["seconds"] if rows and rows[0]["views"] == 0 else None
    for row in rows:
        if base:
            row["ratio_to_k_plus_1_times_k0"] = round(row["seconds"] / ((row["views"] + 1) * base), 3)
    return rows


def accuracies(cache_path: Path, models: list[str], train_size: int | None, seed: int, log=print) -> list[dict]:
    """Test accuracy of each model without views, with views, and with views + TTA (when the cache has test views)."""
    from classify.options import make_config
    from classify.training.train import train_and_evaluate
    from featurecache.cache import read_cache

    cache = read_cache(cache_path)
    ways = [("none", False), ("all", False)] + ([("all", True)] if cache.test.views is not None else [])
    out = []
    for model in models:
        for views, tta in ways:
            cfg = make_config(model=model, features=str(cache_path), seed=seed, train_size=train_size,
                              views=views, tta=tta)
            m = train_and_evaluate(cache, cfg, curves=False).metrics
            row = {"model": model, "views": views, "tta": tta, "accuracy": round(m["accuracy"], 4),
                   "macro_f1": round(m["macro_f1"], 4), "fit_images": m["fit_images"], "fit_rows": m["fit_rows"],
                   "train_time_s": m["train_time_s"]}
            log(json.dumps(row))
            out.append(row)
    return out


def table(report: dict) -> str:
    """Both tables as Markdown."""
    lines = [f"Extraction ({report['dataset']}, {report['backbone']}, weights {report['weights']}, "
             f"{report['augment']}, {report['images']} images):", "",
             "| K views | seconds | forward passes | time / ((K+1) x K=0 time) |", "| ---: | ---: | ---: | ---: |"]
    for r in report["extraction"]:
        lines.append(f"| {r['views']} | {r['seconds']:.1f} | {r['forward_passes']:,} | "
                     f"{r.get('ratio_to_k_plus_1_times_k0', float('nan')):.2f} |")
    lines += ["", f"Test accuracy (K = {report['accuracy_views']} cache, train size "
                  f"{report['train_size'] or 'all'}):", "",
              "| model | views | TTA | fitted rows | test accuracy | macro F1 |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in report["accuracy"]:
        lines.append(f"| {r['model']} | {r['views']} | {'yes' if r['tta'] else 'no'} | {r['fit_rows']:,} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} |")
    return "\n".join(lines) + "\n"


def _views(ctx, param, value: str) -> list[int]:
    try:
        views = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r}: give view counts separated by commas, e.g. 0,2,4") from None
    if not views or min(views) < 0 or max(views) > 64:
        raise click.BadParameter(f"{value!r}: view counts must be 0..64")
    return views


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(exists=True, path_type=str), default=str(DEFAULT_DATA), show_default=True,
              help="Images: a photo folder or a CIFAR-10 python folder.")
@click.option("--backbone", default=str(DEFAULT_BACKBONE) if DEFAULT_BACKBONE.exists() else "vgg16",
              show_default=True, help="Backbone name or .keras file (default: the ImageNet-trained model in ../shared/models).")
@click.option("--weights", default=None, help="For a table backbone: imagenet, none or PATH (default none).")
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="Pixels the model runs at.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Images per split (CIFAR-10: the first N).")
@click.option("--train-size", type=click.IntRange(min=1), default=None, help="Stratified training subset for the classifiers.")
@click.option("--views", "views", default="0,2,4", show_default=True, callback=_views, help="K values to time.")
@click.option("--augment", default="flip,crop", show_default=True, help="Augmentations of the views.")
@click.option("--models", default="lr,mlp", show_default=True, help="Classifiers to score.")
@click.option("--precision", default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/bench"),
              show_default=True)
def cli(data_dir, backbone, weights, image_size, limit, train_size, views, augment, models, precision, seed,
        out_dir) -> None:
    """Time extraction with K augmented views and score LR and MLP with and without views and TTA."""
    from featurecache.augment import parse_ops
    from featurecache.errors import UserError
    from featurecache.extractor import is_model_file
    from featurecache.files import write_text

    try:
        parse_ops(augment)
        model_list = [m.strip() for m in models.split(",") if m.strip()]
        from classify.training.specs import SPECS

        unknown = [m for m in model_list if m not in SPECS]
        if unknown or not model_list:
            raise UserError(f"--models {models}: pass a comma list of {', '.join(sorted(SPECS))}")
        weights = weights or ("file" if is_model_file(backbone) else "none")
        out_dir.mkdir(parents=True, exist_ok=True)
        work = out_dir / "augment-caches"
        work.mkdir(exist_ok=True)
        log = lambda msg: click.echo(msg, err=True)  # noqa: E731
        extraction = extraction_times(data_dir, work, views, augment, backbone, weights, image_size, limit,
                                      precision, seed, log)
        acc_cache = Path(extraction[-1]["cache"])
        accuracy = accuracies(acc_cache, model_list, train_size, seed, log)
    except UserError as e:
        click.echo(f"Error: {e.message}", err=True)
        sys.exit(1)
    report = {"dataset": Path(data_dir).name, "backbone": Path(backbone).name, "weights": weights,
              "augment": augment, "images": extraction[0]["images"], "precision": precision, "seed": seed,
              "limit": limit, "train_size": train_size, "extraction": extraction,
              "accuracy_views": extraction[-1]["views"], "accuracy": accuracy}
    stem = out_dir / f"augment-{Path(data_dir).name}"
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    text = table(report)
    write_text(stem.with_suffix(".md"), text)
    click.echo(text)


def main() -> None:
    cli(prog_name="python -m bench.augment")


if __name__ == "__main__":
    main()
