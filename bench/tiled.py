"""A synthetic full-size CIFAR-10: 60,000 images in the python layout, tiled from a real subset.

`build_tiled_cifar` repeats each image of a real CIFAR-10 subset (the 6,000 of ../shared/data)
under seeded flips and shifts until the set has the full data set's 50,000 training and 10,000
test images, and writes it as `cifar-10-batches-py` (data_batch_1..5, test_batch, batches.meta),
so that `extract` reads it exactly as it reads the real set. Each batch's `batch_label` and the
folder's README.txt say it is synthetic; `make bench SCALE=full` labels it so in its table.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np

from extract.cifar import load_cifar10
from featurecache.cache import read_cache, write_groups

SYNTHETIC = "synthetic: tiled from {src} with flips and shifts (not CIFAR-10 itself)"
MAX_SHIFT = 4   # pixels; a shift pads by reflection, as CIFAR-10 augmentation usually does
INDEX = "tiled.json"   # beside the batches: the source images per split, and the row each batch starts at


def transform(images: np.ndarray, flips: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) uint8 -> the same images, mirrored where `flips` (n,) and moved by `shifts` (n, 2)."""
    out = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    pad = np.pad(out, ((0, 0), (MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    return np.stack([p[MAX_SHIFT + dy:MAX_SHIFT + dy + h, MAX_SHIFT + dx:MAX_SHIFT + dx + w]
                     for p, (dy, dx) in zip(pad, shifts)])


def tile(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n images: every source image in turn, the first pass as it is, later passes flipped and shifted."""
    pick = np.arange(n) % len(images)
    first = np.arange(n) < len(images)
    flips = np.where(first, False, rng.random(n) < 0.5)
    shifts = np.where(first[:, None], 0, rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2)))
    return transform(images[pick], flips, shifts), labels[pick]


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label: str) -> None:
    """One batch file in CIFAR-10's python layout: rows of 3,072 bytes, the red plane, then green, then blue."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)   # (n, 3072) uint8
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": label.encode(), b"labels": labels.astype(int).tolist(), b"data": data}, f,
                    protocol=4)


def build_tiled_cifar(src: str | Path, dest: str | Path, n_train: int = 50_000, n_test: int = 10_000,
                      seed: int = 0) -> Path:
    """Write the tiled set under dest/cifar-10-batches-py (five training batches of n_train / 5 and a
    test batch of n_test) and return that folder. Training images come from the source's training
    split only and test images from its test split only, so no test image is a flip of a training one."""
    data = load_cifar10(src)
    rng = np.random.default_rng(seed)
    out = Path(dest) / "cifar-10-batches-py"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    label = SYNTHETIC.format(src=Path(src).name)
    index = {"source_rows": {}, "first_row": {"test_batch": 0}}
    for split, n in (("train", n_train), ("test", n_test)):
        s = data.splits[split]
        index["source_rows"][split] = len(s)
        images, labels = tile(s.read(0, len(s)).images, s.labels, n, rng)
        if split == "test":
            write_batch(out / "test_batch", images, labels, label)
            continue
        for i, part in enumerate(np.array_split(np.arange(n), 5), start=1):
            write_batch(out / f"data_batch_{i}", images[part], labels[part], label)
            index["first_row"][f"data_batch_{i}"] = int(part[0]) if len(part) else 0
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    with open(out / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in data.class_names],
                     b"num_cases_per_batch": n_train // 5, b"num_vis": 3072}, f, protocol=4)
    (out / "README.txt").write_text(label + f"; {n_train:,} training and {n_test:,} test images, seed {seed}\n")
    return out


def source_groups(sources, index: dict, split: str) -> np.ndarray:
    """(n,) int64: the source image each row of a cache extracted from the tiled set copies. A row's
    source ("data_batch_2/17") names its row r in the split, and row r is a copy of source image
    r % (the split's source images), as `tile` drew them."""
    rows = [index["first_row"][name] + int(i) for name, i in (str(s).rsplit("/", 1) for s in sources)]
    return np.asarray(rows, dtype=np.int64) % index["source_rows"][split]


def group_cache(cache: str | Path, folder: str | Path) -> None:
    """Record, in a cache extracted from the tiled set in `folder`, the source image of every row
    (`featurecache.cache.write_groups`): classify then holds out whole source images for validation,
    so no flip or shift of a fitted image is validated on (and early stopping sees unseen images)."""
    index = json.loads((Path(folder) / INDEX).read_text())
    data = read_cache(cache, features=False)
    for split in ("train", "test"):
        write_groups(cache, split, source_groups(getattr(data, split).sources, index, split))


if __name__ == "__main__":   # python -m bench.tiled SRC DEST: run by `bench --scale full` in its own process
    import sys

    print(build_tiled_cifar(sys.argv[1], sys.argv[2]))
