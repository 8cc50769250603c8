"""A full-size feature cache without a full-size extraction: a real cache's rows tiled, with noise.

`tile_cache` repeats each row of a cache's train (test) split until the new cache has n_train
(n_test) rows; every copy after the first is its row mixed (seeded) with another row of the same
class, plus Gaussian noise of `noise` times each feature's standard deviation, and the cache is
written with `featurecache.cache.write_cache` (a real cache, read by every stage). Copies keep the
statistics of real features but are not near-duplicates of their originals, so a scale run of the
audit measures the search, not a flood of planted pairs. A cache made with `dim` keeps only the first `dim` features (a narrower, faster stand-in).

    python -m bench.tiled_cache --src features/cifar10-x.h5 --out /tmp/tiled.h5 --train 50000 --test 10000
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from featurecache.cache import read_cache, write_cache, write_groups
from featurecache.command import Command

NOISE = 0.1       # Gaussian noise on each copy, in units of each feature's standard deviation
MIX = (0.2, 0.5)  # share of a copy that is its own row; the rest is another row of its class
PART_ROWS = 5000   # rows written per part, so memory holds one part of the new cache


def tiled_parts(features: np.ndarray, labels: np.ndarray, sources: np.ndarray, n: int, noise: float,
                rng: np.random.Generator):
    """Parts (dicts of features, labels, sources) of n rows tiled from the given rows."""
    scale = features.std(axis=0, keepdims=True) * noise          # (1, D)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    for lo in range(0, n, PART_ROWS):
        pick = np.arange(lo, min(n, lo + PART_ROWS))
        src = pick % len(features)
        X = features[src].copy()
        copy = np.flatnonzero(pick >= len(features))
        # a copy: its row mixed with another row of its class, plus noise, so it keeps real features' statistics
        other = np.asarray([rng.choice(by_class[c]) for c in labels[src[copy]]], dtype=np.int64)
        mix = rng.uniform(MIX[0], MIX[1], (len(copy), 1)).astype(np.float32)
        X[copy] = mix * X[copy] + (1 - mix) * features[other]
        X[copy] += rng.standard_normal((len(copy), features.shape[1])).astype(np.float32) * scale
        names = np.asarray([f"{s}#{i // len(features)}" for s, i in zip(sources[src], pick)])
        yield {"features": X.astype(np.float32), "labels": labels[src], "sources": names}


def tile_cache(src: str | Path, out: str | Path, n_train: int, n_test: int, noise: float = NOISE, seed: int = 0,
               dim: int | None = None) -> Path:
    """Write a cache of n_train + n_test rows tiled from `src` (see the module docstring); returns its path."""
    cache = read_cache(src)
    rng = np.random.default_rng(seed)
    attrs = {k: v for k, v in cache.attrs.items() if k not in ("data_kind", "data_location")}
    attrs["dataset"] = f"tiled from {Path(src).name}"
    attrs["data_fingerprint"] = f"tiled:{attrs.get('data_fingerprint', '')}:{n_train}:{n_test}:{noise}:{seed}:{dim}"
    for key in ("skipped", "config", "versions"):
        if isinstance(attrs.get(key), (dict, list)):
            attrs[key] = json.dumps(attrs[key])
    splits = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = getattr(cache, name)
        X = data.features[:, :dim] if dim else data.features
        splits[name] = list(tiled_parts(X, data.labels, data.sources, n, noise, rng))
    attrs["feature_dim"] = int(dim or cache.train.features.shape[1])
    path = write_cache(out, attrs, splits)
    for name, n in (("train", n_train), ("test", n_test)):   # row r copies row r % n of the source: its group
        write_groups(path, name, np.arange(n) % len(getattr(cache, name).labels))
    return path


@click.command(cls=Command)
@click.option("--src", type=click.Path(exists=True, dir_okay=False), required=True, help="A cache made by extract.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The tiled cache to write.")
@click.option("--train", "n_train", type=click.IntRange(1), default=50_000, show_default=True)
@click.option("--test", "n_test", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--noise", type=click.FloatRange(0), default=NOISE, show_default=True,
              help="Noise added to each copy, in units of each feature's standard deviation.")
@click.option("--dim", type=click.IntRange(1), default=None, help="Keep only the first DIM features.")
@click.option("--seed", type=int, default=0, show_default=True)
def cli(src, out, n_train, n_test, noise, dim, seed) -> None:
    """Write a cache tiled from a real one, for measuring the audit at full scale."""
    path = tile_cache(src, out, n_train, n_test, noise, seed, dim)
    click.echo(f"wrote {path}: train {n_train:,}, test {n_test:,}")


if __name__ == "__main__":
    cli(prog_name="python -m bench.tiled_cache")
