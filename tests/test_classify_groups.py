"""The validation split drawn by source image: a cache's optional /train/groups (featurecache.cache.write_groups)
holds every copy of one image (a tiled set's flips and shifts) on one side; caches without it split by row as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.tiled import INDEX, build_tiled_cifar, group_cache, source_groups, transform
from classify.cli import cli as classify_cli
from classify.options import make_config
from classify.training.data import split_rows
from classify.workflows.audit_record import training_rows
from extract.datasets import load_cifar10
from featurecache.cache import read_cache, write_cache, write_groups
from featurecache.errors import UserError
from conftest import blob_cache, invoke

COPIES = 4


def copied_cache(path, images: int = 120, classes: int = 3, dim: int = 8, seed: int = 0):
    """A real cache whose training rows are COPIES noisy copies of each of `images` source images,
    interleaved as a tiled set lays them out (row r copies image r % images), with /train/groups."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y_src = np.arange(images) % classes
    x_src = centres[y_src] + rng.normal(size=(images, dim))
    src = np.arange(images * COPIES) % images
    train = {"features": (x_src[src] + 0.05 * rng.normal(size=(len(src), dim))).astype(np.float32),
             "labels": y_src[src].astype(np.int64), "sources": np.asarray([f"r{i}" for i in range(len(src))], dtype=object)}
    test = {"features": (centres[np.arange(60) % classes] + rng.normal(size=(60, dim))).astype(np.float32),
            "labels": (np.arange(60) % classes).astype(np.int64), "sources": np.asarray([str(i) for i in range(60)], dtype=object)}
    attrs = {"dataset": "copies", "backbone": "none", "pooling": "gap", "image_size": 1, "weights": "none", "seed": seed,
             "precision": "float32", "feature_dim": dim, "class_names": [f"class{k}" for k in range(classes)]}
    path = write_cache(path, attrs, {"train": [train], "test": [test]})
    write_groups(path, "train", src)
    return path, src


@pytest.mark.parametrize("train_size", [None, 300])
def test_every_copy_of_a_source_image_is_on_one_side(tmp_path, train_size):
    path, src = copied_cache(tmp_path / "copies.h5")
    cache = read_cache(path)
    np.testing.assert_array_equal(cache.train.groups, src)
    cfg = make_config(model="lr", features=str(path), seed=3, train_size=train_size)
    rows = training_rows(cache, cfg)
    assert rows.split_by == "source images"
    fit_groups, val_groups = set(src[rows.fit]), set(src[rows.val])
    assert fit_groups and val_groups and not fit_groups & val_groups
    # without a train size every copy is used, so a validation image brings all its copies
    if train_size is None:
        assert len(rows.val) == COPIES * len(val_groups) and len(rows.fit) + len(rows.val) == len(src)
        assert len(val_groups) == 12   # 10% of the 120 source images, rounded up
    assert set(cache.train.labels[rows.val]) == {0, 1, 2}   # stratified: every class validated on
    np.testing.assert_array_equal(rows.val, training_rows(cache, cfg).val)   # seeded
    assert not np.array_equal(rows.val, training_rows(cache, make_config(model="lr", seed=4, train_size=train_size)).val)
    # the same cache split by row (as a cache without groups is) puts copies of one image on both sides
    by_row = split_rows(cache.train.labels, 0.1, 3)
    assert set(src[by_row.fit]) & set(src[by_row.val])


def test_a_grouped_run_says_so_and_an_old_cache_splits_by_row_as_before(tmp_path):
    path, src = copied_cache(tmp_path / "copies.h5")
    result = invoke(classify_cli, ["--model", "lr", "--features", path, "--out-dir", tmp_path / "grouped"])
    assert result.exit_code == 0, result.output
    assert "validation split: whole source images" in result.output
    record = json.loads(next((tmp_path / "grouped").glob("*-lr-*-run.json")).read_text())
    assert record["metrics"]["val_split"] == "source images"
    assert not set(src[record["val_images"]]) & set(np.delete(src, record["val_images"]))

    old = blob_cache(tmp_path / "old.h5")   # no /train/groups
    assert read_cache(old).train.groups is None
    result = invoke(classify_cli, ["--model", "lr", "--features", old, "--out-dir", tmp_path / "old"])
    assert result.exit_code == 0, result.output
    assert "validation split" not in result.output
    record = json.loads(next((tmp_path / "old").glob("*-lr-*-run.json")).read_text())
    assert record["metrics"]["val_split"] == "rows"
    assert record["val_images"] == split_rows(read_cache(old).train.labels, 0.1, 0).val.tolist()   # today's split


def test_too_few_source_images_per_class_is_one_error(tmp_path):
    labels = np.repeat([0, 1], 10)
    groups = np.r_[np.zeros(10, int), np.arange(1, 11)]   # class 0: ten copies of one image
    with pytest.raises(UserError, match="source images"):
        split_rows(labels, 0.2, 0, groups=groups)


def test_groups_of_the_wrong_length_are_refused(tmp_path):
    path = blob_cache(tmp_path / "c.h5", n_train=30)
    with pytest.raises(UserError, match="30 rows"):
        write_groups(path, "train", np.arange(29))
    with pytest.raises(UserError, match="integer"):
        write_groups(path, "train", np.zeros(30) + 0.5)


def test_a_tiled_set_names_the_source_image_of_each_row(cifar_fixture, tmp_path):
    folder = build_tiled_cifar(cifar_fixture, tmp_path / "tiled", n_train=230, n_test=50)
    index = json.loads((folder / INDEX).read_text())
    source, tiled = load_cifar10(cifar_fixture).splits["train"], load_cifar10(folder).splits["train"]
    groups = source_groups(tiled.sources, index, "train")   # what a cache extracted from the tiled set stores
    pixels, originals = tiled.read(0, len(tiled)).images, source.read(0, len(source)).images
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    for r, g in enumerate(groups):
        assert tiled.labels[r] == source.labels[g]
        # the row is its source image, flipped or not, shifted by at most 4 px
        variants = transform(np.repeat(originals[g:g + 1], 2 * len(shifts), axis=0),
                             np.repeat([False, True], len(shifts)), np.asarray(shifts * 2))
        assert (variants == pixels[r]).all(axis=(1, 2, 3)).any(), f"row {r} is not a copy of source image {g}"
    assert len(set(groups)) == len(source) and len(groups) > len(source)   # copies share a group

    # group_cache writes those groups into a cache read from the tiled set (its rows named as extract names them)
    cache = write_cache(tmp_path / "tiled.h5", {"dataset": "tiled", "backbone": "none", "pooling": "gap", "image_size": 32,
                                                  "weights": "none", "feature_dim": 2, "class_names": [str(k) for k in range(10)]},
                        {split: [{"features": np.zeros((len(s), 2), np.float32), "labels": s.labels,
                                  "sources": np.asarray(s.sources, dtype=object)}]
                         for split, s in load_cifar10(folder).splits.items()})
    group_cache(cache, folder)
    np.testing.assert_array_equal(read_cache(cache).train.groups, groups)
