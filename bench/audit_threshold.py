"""The evidence for classify.workflows.audit's default --threshold: similarities of known duplicates against random pairs.

Reads the EfficientNet-Lite0 cache of a planted photo set (`bench.planted`, whose JSON names the
planted train/test pairs) and, optionally, other caches (the CIFAR-10 subset), and draws one
histogram of cosine similarity per group: the planted duplicates, random train-test pairs of each
cache. Prints each group's quantiles.

    python -m bench.planted --src ../shared/data/cats-vs-dogs-subset --dest /tmp/planted > /tmp/planted.json
    python -m extract --data-dir /tmp/planted --backbone ../shared/models/efficientnet_lite0_imagenet_notop.keras \\
        --image-size 224 --out /tmp/planted.h5
    python -m bench.audit_threshold --planted /tmp/planted.json --planted-cache /tmp/planted.h5 \\
        --cache /tmp/cifar-lite0.h5 --out docs/audit-threshold.png
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from classify.workflows.audit import THRESHOLD
from classify.reporting.audit_plots import similarity_histogram
from featurecache.cache import read_cache
from featurecache.command import Command

RANDOM_PAIRS = 20_000


def unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def random_pairs(path: Path, n: int = RANDOM_PAIRS, seed: int = 0, skip: frozenset = frozenset()) -> np.ndarray:
    """Cosine similarities of n seeded random train-test pairs of a cache, less those in `skip`
    ((train source, test source) pairs: the planted ones)."""
    cache = read_cache(path)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(cache.train.labels), n)
    j = rng.integers(0, len(cache.test.labels), n)
    keep = np.asarray([(cache.train.sources[a], cache.test.sources[b]) not in skip for a, b in zip(i, j)])
    return (unit(cache.train.features[i[keep]]) * unit(cache.test.features[j[keep]])).sum(axis=1)


def planted_pairs(planted: dict, path: Path) -> dict[str, np.ndarray]:
    """Cosine similarity of each planted (train copy, test original) pair, by kind of copy."""
    cache = read_cache(path)
    train = {s: i for i, s in enumerate(cache.train.sources)}
    test = {s: i for i, s in enumerate(cache.test.sources)}
    out: dict[str, list[float]] = {}
    for (a, b), kind in zip(planted["leaks"], planted["kinds"]):
        sim = float((unit(cache.train.features[[train[a]]]) @ unit(cache.test.features[[test[b]]]).T)[0, 0])
        out.setdefault(kind, []).append(sim)
    return {k: np.asarray(v) for k, v in out.items()}


@click.command(cls=Command)
@click.option("--planted", "planted_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--planted-cache", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--cache", "caches", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="More caches whose random train-test pairs to show.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/audit-threshold.png"),
              show_default=True)
def cli(planted_json: Path, planted_cache: Path, caches: tuple[Path, ...], out: Path) -> None:
    """Histogram of known duplicates against random pairs, with the default threshold marked."""
    planted = json.loads(planted_json.read_text())
    kinds = planted_pairs(planted, planted_cache)
    groups = {"planted duplicates (exact, JPEG q70, resized, cropped)": np.concatenate(list(kinds.values()))}
    skip = frozenset(tuple(p) for p in planted["leaks"])
    groups["random train-test pairs, cats-vs-dogs photos"] = random_pairs(planted_cache, skip=skip)
    for path in caches:
        groups[f"random train-test pairs, {path.stem}"] = random_pairs(path)
    for kind, sims in kinds.items():
        click.echo(f"planted {kind}: {', '.join(f'{s:.3f}' for s in np.sort(sims))}")
    for name, sims in groups.items():
        q = np.quantile(sims, [0.5, 0.99, 0.9999, 1.0])
        click.echo(f"{name}: median {q[0]:.3f}, 99% {q[1]:.3f}, 99.99% {q[2]:.3f}, max {q[3]:.3f}")
    similarity_histogram(groups, THRESHOLD, out, "cosine similarity: known duplicates against random pairs "
                         "(EfficientNet-Lite0, 224 px)")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    cli(prog_name="python -m bench.audit_threshold")
