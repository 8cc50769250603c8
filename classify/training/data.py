"""Rows for training: the seeded, stratified training subset and validation split.

Plain numpy and scikit-learn; no TensorFlow. The test rows of a cache never
pass through here: they are used once, for the final report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from featurecache.cache import CacheFile, SplitShape, iter_rows
from featurecache.errors import SettingError, UserError


@dataclass
class Rows:
    """Indices into the cache's training split: images, each with its augmented views when it has them.

    The split is drawn over images, so every view of an image is on the same side as the image."""

    fit: np.ndarray   # (n_fit,) images the model is trained on (their original rows plus their views)
    val: np.ndarray   # (n_val,) images used to choose C, stop early and draw validation curves (originals only)
    split_by: str = "rows"   # "rows", or "source images" where the cache records each row's source (groups)


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
        raise SettingError(f"train_size={size} is more than the {n} training rows in the cache; pass at most {n}")
    if size == n:
        return np.arange(n)
    if size < 2 * n_classes:
        raise SettingError(
            f"train_size={size} is too small for {n_classes} classes; pass at least {2 * n_classes} "
            "(two rows per class, one to train and one to validate)"
        )
    if n - size < n_classes:
        raise SettingError(
            f"train_size={size} leaves {n - size} of the {n} training rows out, fewer than the {n_classes} classes, "
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


def grouped_split(pool: np.ndarray, y: np.ndarray, groups: np.ndarray, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) of the rows `pool` (labels `y`), holding out `val_fraction` of their source images
    (`groups`, one id per row) whole, stratified by each image's label and seeded: no image has rows
    on both sides, so a copy of a fitted image (a flip, a shift) never stands in for unseen data."""
    ids, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    label = y[first]                     # a group's rows are copies of one image: its first row's label stands for it
    counts = np.bincount(label)
    counts = counts[counts > 0]
    n_val = n_validation(val_fraction, len(ids))
    if counts.min() < 2 or n_val < len(counts) or len(ids) - n_val < len(counts):
        raise SettingError(
            f"the {len(pool)} training rows come from {len(ids)} source images (the cache's /train/groups), too few "
            f"to hold out val_fraction={val_fraction:g} of them whole with every one of {len(counts)} classes on both "
            "sides; pass a `val_fraction` nearer 0.5 or a larger `train_size`")
    _, val_groups = train_test_split(np.arange(len(ids)), test_size=n_val, stratify=label, random_state=seed)
    held = np.isin(inverse.ravel(), val_groups)
    return pool[~held], pool[held]


def split_rows(labels: np.ndarray, val_fraction: float, seed: int, train_size: int | None = None,
               groups: np.ndarray | None = None) -> Rows:
    """Take `train_size` rows (stratified), then hold out `val_fraction` of them (stratified, seeded);
    with `groups` (the source image of each row), of their source images, whole (`grouped_split`).

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
            raise SettingError(
                f"train_size={train_size} is too small for {len(np.unique(labels))} classes with val_fraction="
                f"{val_fraction:g} held out; pass train_size={need} or more"
            )
    pool = np.arange(n) if train_size is None else stratified_subset(labels, train_size, seed)
    y = labels[pool]
    counts = np.bincount(y)
    if (counts[counts > 0] < 2).any():
        raise SettingError(
            f"a class has a single training row among the {len(pool)} used, so it cannot be split into "
            "training and validation; pass a larger `train_size` or use a cache with more rows per class"
        )
    n_classes = int((counts > 0).sum())
    n_val = n_validation(val_fraction, len(pool))
    if n_val < n_classes or len(pool) - n_val < n_classes:
        raise SettingError(
            f"val_fraction={val_fraction:g} of {len(pool)} rows leaves too few rows for {n_classes} classes "
            "in training or validation; pass a fraction nearer 0.5 or use more rows"
        )
    if groups is not None:
        fit, val = grouped_split(pool, y, np.asarray(groups)[pool], val_fraction, seed)
        return Rows(np.sort(fit), np.sort(val), "source images")
    fit, val = train_test_split(pool, test_size=n_val, stratify=y, random_state=seed)
    return Rows(np.sort(fit), np.sort(val))


# --------------------------------------------------------------------------- memory budget and streaming

FLOAT_BYTES = 4        # features are float32 in memory
IN_MEMORY_COPIES = 3   # the cache's matrix, the fit rows taken from it, the model's own (scaled) copy
STREAM_COPIES = 8      # per streamed chunk: the chunk, its float64 standardised copy, a shuffled copy, prefetch
CHUNK_LIMITS = (64, 16384)


def available_memory() -> int:
    """Bytes of RAM available now (MemAvailable in /proc/meminfo; physical memory where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(max_memory: int | None) -> int:
    """--max-memory in bytes; by default half the RAM available when the run starts."""
    return int(max_memory) if max_memory else available_memory() // 2


def in_memory_bytes(shapes: dict[str, SplitShape], views: bool) -> int:
    """Bytes of feature data a classifier holds when it loads the cache whole: every split's matrix
    (and training views when fitted), IN_MEMORY_COPIES times for the training rows."""
    train = shapes["train"]
    k = train.views if views else 0
    held = train.rows * (1 + k) * train.dim * FLOAT_BYTES * IN_MEMORY_COPIES
    for name, s in shapes.items():
        if name != "train":
            held += s.rows * (1 + s.views) * s.dim * FLOAT_BYTES
    return held


def chunk_rows(budget: int, dim: int, views: int = 0) -> int:
    """Images per streamed chunk: STREAM_COPIES copies of a chunk (with its views) fit the budget."""
    rows = budget // (STREAM_COPIES * FLOAT_BYTES * dim * (1 + views))
    return int(np.clip(rows, *CHUNK_LIMITS))


BATCH_COPIES = 4   # MLP: the pieces a batch is cut from, the batch, and the two batches tf.data prefetches


def stream_layout(budget: int, dim: int, views: int = 0, batch: int = 0) -> tuple[int, int]:
    """(images per chunk, bytes of feature data the stream holds at most): the chunks take what
    `batch`-row batches (the MLP's --batch-size, BATCH_COPIES of them) leave of the budget. The
    bytes exceed the budget where even the smallest chunk, CHUNK_LIMITS[0] images, does not fit."""
    batch_bytes = BATCH_COPIES * batch * dim * FLOAT_BYTES
    chunk = chunk_rows(max(0, budget - batch_bytes), dim, views)
    return chunk, STREAM_COPIES * FLOAT_BYTES * dim * (1 + views) * chunk + batch_bytes


@dataclass
class Stream:
    """The training rows of a cache, read from its file a chunk at a time (`featurecache.cache.iter_rows`).

    `fit` and `val` are the image indices of `Rows`; with `views` each fit image's K views are
    streamed beside it, as `fit_rows` would stack them."""

    source: CacheFile    # the cache, opened once for the whole run
    labels: np.ndarray   # (N,) the training split's labels
    fit: np.ndarray      # (n_fit,) images
    val: np.ndarray      # (n_val,) images
    dim: int
    views: int           # K views streamed per fit image (0: none)
    chunk: int           # images per chunk
    budget: int          # bytes of feature data the classifier may hold
    held: int = 0        # bytes of feature data the stream holds at most (`stream_layout`); > budget: it cannot hold

    @property
    def fit_labels(self) -> np.ndarray:
        """(n_fit * (K + 1),) labels of every fitted row, originals then views, as `fit_rows` gives."""
        y = self.labels[self.fit]
        return np.concatenate([y, np.repeat(y, self.views)]) if self.views else y

    def fit_chunks(self, seed: int | None = None):
        """(X (k, D) float32, y (k,)) for the fit images and their views, a chunk at a time. With a
        seed, the chunks come in a seeded order and the rows of each chunk are shuffled."""
        blocks = [self.fit[i:i + self.chunk] for i in range(0, len(self.fit), self.chunk)]
        rng = np.random.default_rng(seed) if seed is not None else None
        if rng is not None:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        for block in blocks:
            # one block of images is one chunk, even where its rows lie far apart in the file
            parts = list(iter_rows(self.source, "train", block, self.chunk, views=bool(self.views)))
            X = np.concatenate([c.features for c in parts])
            y = np.concatenate([c.labels for c in parts])
            if self.views:
                X = np.concatenate([X, *(c.views.reshape(-1, self.dim) for c in parts)])  # (k * (K + 1), D)
                y = np.concatenate([y, *(np.repeat(c.labels, self.views) for c in parts)])
            del parts
            if rng is not None:
                order = rng.permutation(len(y))
                X, y = X[order], y[order]
            yield X, y

    def fit_batches(self, size: int, seed: int | None = None):
        """(X (size, D), y (size,)) from `fit_chunks`, in their order: every batch has exactly `size`
        rows but the last of a pass, whatever the chunk size, so --batch-size holds when streaming."""
        parts, held = [], 0
        for X, y in self.fit_chunks(seed):
            start = 0
            while start < len(y):
                take = min(size - held, len(y) - start)
                parts.append((X[start:start + take], y[start:start + take]))
                held, start = held + take, start + take
                if held == size:
                    yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                    parts, held = [], 0
        if parts:
            yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def val_chunks(self):
        """(X, y) for the validation images (originals only), a chunk at a time."""
        for c in iter_rows(self.source, "train", self.val, self.chunk):
            yield c.features, c.labels

    def load(self, images: np.ndarray, views: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The given training images (ascending), with their views when asked, as one (n, D) array
        written in place chunk by chunk (no second copy)."""
        k = self.views if views else 0
        X = np.empty((len(images) * (1 + k), self.dim), dtype=np.float32)
        y = np.empty(len(images) * (1 + k), dtype=np.int64)
        row = 0
        for c in iter_rows(self.source, "train", images, self.chunk, views=bool(k)):
            n = len(c.labels)
            X[row:row + n], y[row:row + n] = c.features, c.labels
            row += n
            if k:
                X[row:row + n * k] = c.views.reshape(-1, self.dim)
                y[row:row + n * k] = np.repeat(c.labels, k)
                row += n * k
        return X, y
