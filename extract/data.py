"""What every image source returns: a `Dataset` of `Split`s, whose pixels arrive as `Batch`es.

The labels and row sources of a split are known up front, the pixels are read batch by batch
(`Split.read(start, stop)`), so memory does not grow with the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from extract.index import changes_since, write_index


@dataclass
class Batch:
    images: np.ndarray          # (n, h, w, 3) uint8
    labels: np.ndarray          # (n,) int64
    sources: list[str]          # where each row came from
    skipped: list[str] = field(default_factory=list)  # unreadable files, dropped


@dataclass
class Split:
    """One split (train, val or test): labels and sources up front, pixels on demand."""

    labels: np.ndarray                      # (N,) int64, in the data set's own order
    sources: list[str]                      # (N,) row provenance
    read: Callable[[int, int], Batch]       # rows [start, stop) -> Batch
    first_row: int = 0                      # index of row 0 in the whole split (a shard's slice starts later)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str                   # "cifar10", or the image folder's name
    kind: str                   # "cifar10" | "folder"
    location: str               # absolute path of what was read
    class_names: list[str]
    image_size: int | None      # native size of `read` (CIFAR-10: 32); folders: the size asked for
    fingerprint: str            # sha256 over the content used; compared when reusing a cache
    splits: dict[str, Split]    # "train", optionally "val", "test", in that order
    not_images: list[str] = field(default_factory=list)  # files in a photo folder that are not images
    index: str | None = None    # photo folders: where per-file digests are kept between runs
    index_data: dict | None = None  # the digests, updated in memory; written by `save_index`

    def changes_since(self, fingerprint: str) -> str:
        """Which files were added, removed or changed since the data had `fingerprint` ("" if unknown)."""
        return changes_since(self.index_data, fingerprint, self.fingerprint) if self.index_data else ""

    def save_index(self) -> None:
        """Keep the digests for the next run; called once the run has something it keeps, so a run
        refused for bad input leaves nothing behind."""
        if self.index is not None and self.index_data is not None:
            write_index(self.index, self.index_data)
