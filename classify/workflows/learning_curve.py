"""Test accuracy against training-set size: `learning_curve` trains on stratified subsets of the
cache's training rows, a few seeds per size (the command: `featurecache learning-curve`, classify.commands)."""

from __future__ import annotations

import dataclasses

import numpy as np

from classify.training.data import smallest_train_size
from featurecache.errors import SettingError


def sizes_for(n_train: int, min_size: int, points: int, n_classes: int = 0) -> list[int]:
    """Log-spaced training-set sizes from min_size to n_train, both included, without repeats; sizes
    that would leave fewer rows out than there are classes (no stratified subset exists) are dropped."""
    low = min(min_size, n_train)
    sizes = {int(round(s)) for s in np.geomspace(low, n_train, points)} | {n_train}
    return sorted(s for s in sizes if s == n_train or n_train - s >= n_classes)


def check_min_size(labels: np.ndarray, min_size: int, val_fraction: float) -> None:
    """Refuse a `min_size` that gives no curve (the cache has no more rows than it) or a first
    point that cannot be split into training and validation rows of every class."""
    n = len(labels)
    if min_size >= n:
        raise SettingError(f"min_size={min_size} leaves no curve: the cache has {n:,} training rows; "
                           f"pass a `min_size` below {n:,}")
    need = smallest_train_size(labels, val_fraction)
    if need >= n:
        raise SettingError(f"no subset of the {n:,} training rows can hold out val_fraction={val_fraction:g} with "
                        f"every one of {len(np.unique(labels))} classes on both sides; use a larger cache or "
                        "a larger `val_fraction`")
    if min_size < need:
        raise SettingError(f"min_size={min_size} is too small for {len(np.unique(labels))} classes with val_fraction="
                           f"{val_fraction:g} held out; pass min_size={need} or more")


def learning_curve(cache, cfg, sizes: list[int], seeds: int) -> list[dict]:
    """One dict per (size, seed): train_size, seed, accuracy, macro_f1, train_time_s, n_fit, n_val."""
    from classify.training.train import train_and_evaluate

    points = []
    for size in sizes:
        for k in range(seeds):
            run = dataclasses.replace(cfg, train_size=size, seed=cfg.seed + k)
            m = train_and_evaluate(cache, run, curves=False).metrics
            points.append({"train_size": size, "seed": run.seed, "accuracy": round(m["accuracy"], 4),
                           "macro_f1": round(m["macro_f1"], 4), "train_time_s": m["train_time_s"],
                           "n_fit": m["n_fit"], "n_val": m["n_val"]})
    return points
