"""Rows for training: the seeded, stratified training subset and validation split.

Plain numpy and scikit-learn; no TensorFlow. The test rows of a cache never
pass through here: they are used once, for the final report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from featurecache.errors import UserError


@dataclass
class Rows:
    """Indices into the cache's training split: images, each with its augmented views when it has them.

    The split is drawn over images, so every view of an image is on the same side as the image."""

    fit: np.ndarray   # (n_fit,) images the model is trained on (their original rows plus their views)
    val: np.ndarray   # (n_val,) images used to choose C, stop early and draw validation curves (originals only)


def n_validation(val_fraction: float, n: int) -> int:
    """Rows held out for validation from n rows."""
    return int(np.ceil(val_fraction * n))


def smallest_train_size(labels: np.ndarray, val_fraction: float) -> int:
    """The smallest --train-size that can always be split: a stratified subset of that many rows
    gives every class at least two rows (floor of its share), and holding out `val_fraction` of
    them leaves at least one row per class on each side. len(labels) when no smaller size works."""
    n = len(labels)
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    k = len(counts)
    for size in range(2 * k, n):
        n_val = n_validation(val_fraction, size)
        # a stratified subset leaves at least one row of each class out, so size <= n - k
        if n_val >= k and size - n_val >= k and n - size >= k and (size * counts // n).min() >= 2:
            return size
    return n


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` row indices with the class proportions of `labels` (sorted; all rows if size == len)."""
    n = len(labels)
    n_classes = len(np.unique(labels))
    if size > n:
        raise UserError(f"--train-size {size} is more than the {n} training rows in the cache; pass at most {n}")
    if size == n:
        return np.arange(n)
    if size < 2 * n_classes:
        raise UserError(
            f"--train-size {size} is too small for {n_classes} classes; pass at least {2 * n_classes} "
            "(two rows per class, one to train and one to validate)"
        )
    if n - size < n_classes:
        raise UserError(
            f"--train-size {size} leaves {n - size} of the {n} training rows out, fewer than the {n_classes} classes, "
            f"so no stratified subset exists; pass at most {n - n_classes}, or {n} for every row"
        )
    idx, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed)
    return np.sort(idx)


def fit_rows(features: np.ndarray, labels: np.ndarray, images: np.ndarray,
             views: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows fitted for `images`: each image's original features, then, with `views` (N, K, D), its K
    views: (n * (K + 1), D) features and their labels. Views of images not in `images` never appear."""
    X, y = features[images], labels[images]          # (n, D), (n,)
    if views is None or views.shape[1] == 0:
        return X, y
    k = views.shape[1]
    X_views = views[images].reshape(len(images) * k, -1)   # (n * K, D), image-major
    return np.concatenate([X, X_views]), np.concatenate([y, np.repeat(y, k)])


def split_rows(labels: np.ndarray, val_fraction: float, seed: int, train_size: int | None = None) -> Rows:
    """Take `train_size` rows (stratified), then hold out `val_fraction` of them (stratified, seeded).

    Refuses, before anything is fitted, training rows no classifier can learn from: none, or all of
    one class."""
    n = len(labels)
    if n == 0:
        raise UserError("the cache has no training rows; extract a cache with a training split")
    if len(np.unique(labels)) < 2:
        raise UserError(f"the cache's {n} training rows are all of one class; a classifier needs at least two: "
                        "extract a cache with images of two or more classes")
    if train_size is not None and train_size < n:
        need = smallest_train_size(labels, val_fraction)
        if train_size < need:
            raise UserError(
                f"--train-size {train_size} is too small for {len(np.unique(labels))} classes with --val-fraction "
                f"{val_fraction:g} held out; pass --train-size {need} or more"
            )
    pool = np.arange(n) if train_size is None else stratified_subset(labels, train_size, seed)
    y = labels[pool]
    counts = np.bincount(y)
    if (counts[counts > 0] < 2).any():
        raise UserError(
            f"a class has a single training row among the {len(pool)} used, so it cannot be split into "
            "training and validation; pass a larger --train-size or use a cache with more rows per class"
        )
    n_classes = int((counts > 0).sum())
    n_val = n_validation(val_fraction, len(pool))
    if n_val < n_classes or len(pool) - n_val < n_classes:
        raise UserError(
            f"--val-fraction {val_fraction:g} of {len(pool)} rows leaves too few rows for {n_classes} classes "
            "in training or validation; pass a fraction nearer 0.5 or use more rows"
        )
    fit, val = train_test_split(pool, test_size=n_val, stratify=y, random_state=seed)
    return Rows(np.sort(fit), np.sort(val))
