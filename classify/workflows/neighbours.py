"""Near-duplicate pairs and k-nearest-neighbour distances of a cache, in blocks of rows.

Every split of the cache is one row space (train rows, then test, then val when present). Rows are
read from the file a block at a time (`featurecache.cache.iter_rows`), L2-normalised, and every pair
of blocks (i <= j) is multiplied once: (B, D) @ (D, B) cosine similarities. Pairs at or above the
threshold are kept; each row's k highest similarities to training rows are kept for the outlier
score. Memory holds two blocks and their product, (2 B D + B^2) floats, plus k floats a row,
whatever the cache's size: a 60,000 x 1,280 cache runs in a few hundred MB (docs/audit.md).

numpy only; blocked matrix products measured faster than faiss-cpu's flat index here (docs/audit.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from featurecache.cache import iter_rows, split_shapes

BLOCK_ROWS = 4096     # rows per block: a (4096, 4096) float32 product is 64 MiB
EXACT = 0.99999       # cosine similarity taken as the same features (float32 rounding of 1.0)
K_NEIGHBOURS = 10     # neighbours in train for the outlier score
PROJECTED_DIMS = 256  # principal directions the blocks are first compared in (exact filter, see block_pairs)
SAMPLE_ROWS = 8192    # rows the principal directions are estimated from
SPARSE_SHARE = 0.02   # kNN: merge by sorting when at most this share of a block beats the current k-th best
FULL_SHARE = 0.01     # a block pair whose bound passes more than this share is multiplied in full


@dataclass
class Layout:
    """Where each split's rows sit in the one row space: split -> (offset, rows)."""

    spans: dict[str, tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.spans.values())

    def split_of(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global row indices -> (split names, row within the split)."""
        names = np.empty(len(index), dtype=object)
        rows = np.empty(len(index), dtype=np.int64)
        for split, (start, n) in self.spans.items():
            inside = (index >= start) & (index < start + n)
            names[inside], rows[inside] = split, index[inside] - start
        return names, rows


@dataclass
class Neighbours:
    """What one pass over the cache found."""

    layout: Layout
    first: np.ndarray        # (P,) global row of each pair's first image (the lower index)
    second: np.ndarray       # (P,) global row of its second image
    similarity: np.ndarray   # (P,) cosine similarity, >= the threshold
    knn: np.ndarray          # (N, k) highest similarities of each row to training rows other than itself


def layout_of(path: str | Path) -> Layout:
    shapes = split_shapes(path)
    spans, start = {}, 0
    for split, shape in shapes.items():
        spans[split] = (start, shape.rows)
        start += shape.rows
    return Layout(spans)


def blocks_of(layout: Layout, block_rows: int) -> list[tuple[str, int, int]]:
    """(split, first row, end row) of every block; a block never spans two splits."""
    out = []
    for split, (_, n) in layout.spans.items():
        out += [(split, lo, min(n, lo + block_rows)) for lo in range(0, n, block_rows)]
    return out


def read_block(path: str | Path, block: tuple[str, int, int]) -> np.ndarray:
    """(rows, D) float32 L2-normalised features of one block (an all-zero row stays zero)."""
    split, lo, hi = block
    X = np.concatenate([c.features for c in iter_rows(path, split, np.arange(lo, hi), chunk=hi - lo)])
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def merge_top(best: np.ndarray, S: np.ndarray, columns: bool = False, scratch: np.ndarray | None = None) -> np.ndarray:
    """(n, k) highest values of each row of best (n, k) and of S (n, m), or, with `columns`, of each
    column of S (m, n) (no transposed copy of S is made); the k values of a row in no particular order.

    Once every row has k values, only the entries above a row's current k-th best can enter, and after
    a block or two they are few: those are merged by one sort instead of partitioning all of S.
    `scratch`: a boolean array of S's shape to reuse (fresh pages cost as much as the comparisons)."""
    n, k = best.shape
    kth = best.min(axis=1)                                           # (n,) each row's current k-th best
    if np.isfinite(kth).all():
        above = np.greater(S, kth[None, :] if columns else kth[:, None], out=scratch)
        if not above.any():
            return best
        r, c = np.nonzero(above)
        del above
        if len(r) <= SPARSE_SHARE * S.size:
            rows = np.concatenate([np.repeat(np.arange(n), k), c if columns else r])
            values = np.concatenate([best.ravel(), S[r, c]])
            order = np.lexsort((-values, rows))                      # by row, highest first
            rows, values = rows[order], values[order]
            rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n))[rows]
            return values[rank < k].reshape(n, k)
    S = S.T if columns else S
    if S.shape[1] > k:
        S = np.partition(S, S.shape[1] - k, axis=1)[:, -k:]         # each row's k highest of this block
    both = np.concatenate([best, S], axis=1)                        # (n, 2k) at most
    return np.partition(both, both.shape[1] - k, axis=1)[:, -k:]


def projection(path: str | Path, layout: Layout, dims: int, sample: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray | None:
    """(D, dims) top principal directions (uncentred) of a seeded sample of normalised rows, or None when
    D <= dims. Read a block at a time from the sample's rows, so memory holds D x D, not the sample."""
    rng = np.random.default_rng(seed)
    moment = None
    for split, (_, n) in layout.spans.items():
        take = np.sort(rng.choice(n, min(n, max(1, sample * n // max(1, layout.total))), replace=False))
        for c in iter_rows(path, split, take, chunk=BLOCK_ROWS):
            X = c.features / np.maximum(np.linalg.norm(c.features, axis=1, keepdims=True), 1e-12)
            moment = X.T @ X if moment is None else moment + X.T @ X
    if moment is None or moment.shape[0] <= dims:
        return None
    with threadpool_limits(1, "blas"):   # eigh on two busy cores: one thread took 1.5 s, two took 13 s
        values, vectors = np.linalg.eigh(moment)
    return np.ascontiguousarray(vectors[:, np.argsort(-values)[:dims]], dtype=np.float32)


class Scratch:
    """Reused buffers for one block pair's similarities and comparisons: a fresh 64 MiB array per block
    pair cost the kernel as much time (zeroing pages) as the comparisons themselves."""

    def __init__(self, rows: int):
        self.f = np.empty(rows * rows, dtype=np.float32)
        self.b = np.empty(rows * rows, dtype=bool)

    def floats(self, m: int, n: int) -> np.ndarray:
        return self.f[: m * n].reshape(m, n)

    def flags(self, m: int, n: int) -> np.ndarray:
        return self.b[: m * n].reshape(m, n)


@dataclass
class Block:
    """One block of rows: normalised features (b, D), their projection (b, R) and what it leaves out (b,)."""

    X: np.ndarray
    low: np.ndarray
    residual: np.ndarray   # |x - V V^T x|: bounds what the left-out directions add to a similarity


def project(X: np.ndarray, V: np.ndarray | None) -> Block:
    if V is None:
        return Block(X, X, np.zeros(len(X), dtype=np.float32))
    low = X @ V
    return Block(X, low, np.sqrt(np.maximum(0.0, 1.0 - (low * low).sum(axis=1))))


def block_pairs(a: Block, b: Block, same: bool, threshold: float, scratch: "Scratch") -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (rows of a, rows of b, exact cosine) at or above the threshold, and the projected
    similarities (|a|, |b|) for the kNN. The projection filters exactly: x.y = x'.y' + r_x.r_y and
    |r_x.r_y| <= |r_x| |r_y| <= |r_x| max |r_y|, so no pair is missed; candidates get their exact similarity, and where
    the bound lets through more than FULL_SHARE of the block, the block is multiplied in full."""
    S = np.matmul(a.low, b.low.T, out=scratch.floats(len(a.low), len(b.low)))   # (ba, bb) projected similarities
    if same:
        np.fill_diagonal(S, -np.inf)                                 # a row is not its own neighbour
    # |r_x| max|r_y| >= |r_x| |r_y|: a looser, still exact, bound in one pass over S
    bound = np.greater_equal(S, threshold - a.residual[:, None] * b.residual.max(), out=scratch.flags(*S.shape))
    if same:
        bound = np.triu(bound, 1)
    r, c = np.nonzero(bound) if bound.any() else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    del bound
    if len(r) > FULL_SHARE * S.size:
        exact = a.X @ b.X.T
        sims = exact[r, c]
        del exact
    else:
        sims = np.einsum("ij,ij->i", a.X[r], b.X[c]) if len(r) else np.zeros(0, dtype=np.float32)
    keep = sims >= threshold
    return r[keep], c[keep], sims[keep], S


def search(path: str | Path, threshold: float, k: int = K_NEIGHBOURS, block_rows: int = BLOCK_ROWS,
           dims: int = PROJECTED_DIMS) -> Neighbours:
    """Every pair of rows (any splits) with cosine similarity >= threshold, exactly, and each row's k highest
    (projected) similarities to training rows, reading the cache a block at a time."""
    layout = layout_of(path)
    blocks = blocks_of(layout, block_rows)
    V = projection(path, layout, dims)                               # (D, R) or None
    knn = np.full((layout.total, k), -np.inf, dtype=np.float32)     # (N, k)
    scratch = Scratch(min(block_rows, max(1, max(n for _, n in layout.spans.values()))))
    firsts, seconds, sims = [], [], []
    for i, ai in enumerate(blocks):
        a = project(read_block(path, ai), V)
        a0 = layout.spans[ai[0]][0] + ai[1]
        for bi in blocks[i:]:
            b = a if bi is ai else project(read_block(path, bi), V)
            b0 = layout.spans[bi[0]][0] + bi[1]
            r, c, s, S = block_pairs(a, b, bi is ai, threshold, scratch)
            firsts.append(r + a0)
            seconds.append(c + b0)
            sims.append(s)
            if bi[0] == "train":
                knn[a0:a0 + len(S)] = merge_top(knn[a0:a0 + len(S)], S, scratch=scratch.flags(*S.shape))
            if ai[0] == "train" and bi is not ai:
                knn[b0:b0 + S.shape[1]] = merge_top(knn[b0:b0 + S.shape[1]], S, columns=True,
                                                    scratch=scratch.flags(*S.shape))
            del S
    return Neighbours(layout, np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64),
                      np.concatenate(sims).astype(np.float32), knn)


def outlier_scores(knn: np.ndarray) -> np.ndarray:
    """(N,) mean cosine distance to the k nearest training rows: high for an image far from every class."""
    finite = np.where(np.isfinite(knn), knn, np.nan)
    return 1.0 - np.nanmean(finite, axis=1)
