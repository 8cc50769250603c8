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
    """Indices into the cache's training split."""

    fit: np.ndarray   # (n_fit,) rows the model is trained on
    val: np.ndarray   # (n_val,) rows used to choose C, stop early and draw validation curves


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
    idx, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed)
    return np.sort(idx)


def split_rows(labels: np.ndarray, val_fraction: float, seed: int, train_size: int | None = None) -> Rows:
    """Take `train_size` rows (stratified), then hold out `val_fraction` of them (stratified, seeded)."""
    pool = np.arange(len(labels)) if train_size is None else stratified_subset(labels, train_size, seed)
    y = labels[pool]
    counts = np.bincount(y)
    if (counts[counts > 0] < 2).any():
        raise UserError(
            f"a class has a single training row among the {len(pool)} used, so it cannot be split into "
            "training and validation; pass a larger --train-size or use a cache with more rows per class"
        )
    n_classes = int((counts > 0).sum())
    n_val = int(np.ceil(val_fraction * len(pool)))
    if n_val < n_classes or len(pool) - n_val < n_classes:
        raise UserError(
            f"--val-fraction {val_fraction} of {len(pool)} rows leaves too few rows for {n_classes} classes "
            "in training or validation; pass a fraction nearer 0.5 or use more rows"
        )
    fit, val = train_test_split(pool, test_size=n_val, stratify=y, random_state=seed)
    return Rows(np.sort(fit), np.sort(val))
