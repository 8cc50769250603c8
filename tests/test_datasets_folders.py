"""Issues 13 and 14: photo folders as people really have them. One walker for extract
and predict (symlinks, loops, hidden and system files, files that are not images),
split folders in any case with val as a third split, classes without a readable
image, a stratified --limit, non-UTF-8 names and loose photos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import PHOTOS_FIXTURE, SHARED_DATA, error_line
from conftest import invoke_extract as invoke
from extract.datasets import load_dataset
from featurecache.images import load_image, source_image, source_path, walk_images
from featurecache.cache import read_cache
from featurecache.errors import UserError
from classify.pixel.predict import collect_images

CATS = sorted((PHOTOS_FIXTURE / "train" / "cats").glob("cat.*.jpg"))  # 6 real photos each
DOGS = sorted((PHOTOS_FIXTURE / "train" / "dogs").glob("dog.*.jpg"))
PHOTOS_SUBSET = SHARED_DATA / "cats-vs-dogs-subset"


def fill(folder: Path, photos: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    return folder


def pets(root: Path, n: int = 6) -> Path:
    """root/cats, root/dogs with n real photos each."""
    fill(root / "cats", CATS[:n])
    fill(root / "dogs", DOGS[:n])
    return root


def all_sources(data) -> list[str]:
    return [s for split in data.splits.values() for s in split.sources]


def refused(*args) -> str:
    r = invoke(*args)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, r.output
    return error_line(r)


# --------------------------------------------------------------------------- the walker


def test_symlinks_are_followed_and_loops_add_nothing(tmp_path):
    root = pets(tmp_path / "pets")
    elsewhere = fill(tmp_path / "more-dogs", DOGS[3:5])
    os.symlink(elsewhere, root / "dogs" / "linked")          # a symlinked folder: followed
    os.symlink(CATS[5], root / "cats" / "linked-cat.jpg")      # a symlinked file: followed
    os.symlink(".", root / "zloop")                            # a loop at the top: no class
    os.symlink("..", root / "cats" / "zloop")                  # a loop inside a class: no rows
    os.symlink(root / "dogs", root / "cats" / "dogs-again")    # a folder seen elsewhere: no rows
    data = load_dataset(root, 32, test_fraction=0.25)
    assert data.class_names == ["cats", "dogs"]
    sources = all_sources(data)
    assert len(sources) == len(set(sources)) == 6 + 1 + 6 + 2
    assert f"dogs/linked/{DOGS[3].name}" in sources and "cats/linked-cat.jpg" in sources
    assert not [s for s in sources if "zloop" in s or "dogs-again" in s]


def test_hidden_and_system_files_are_skipped_silently_and_other_files_listed(tmp_path):
    root = pets(tmp_path / "pets")
    fill(root / "cats" / ".ipynb_checkpoints", CATS[:2])
    fill(root / "__MACOSX" / "cats", CATS[:1])
    (root / "cats" / "._cat.1.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "cats" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "dogs" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "dogs" / "notes.txt").write_text("the dogs of 2024\n")
    (root / "dogs" / "fake.jpg").write_text("not a jpeg at all\n")  # an image ending, but not an image
    data = load_dataset(root, 32, test_fraction=0.25)
    assert data.class_names == ["cats", "dogs"]
    assert sorted(all_sources(data)) == sorted([f"cats/{p.name}" for p in CATS] + [f"dogs/{p.name}" for p in DOGS])
    assert data.not_images == ["dogs/fake.jpg", "dogs/notes.txt"]


def test_cli_lists_files_that_are_not_images_once_and_not_as_unreadable(tmp_path):
    root = pets(tmp_path / "pets")
    (root / "dogs" / "notes.txt").write_text("the dogs of 2024\n")
    r = invoke("--data-dir", root, "--weights", "none", "--out", tmp_path / "p.h5", "--test-fraction", "0.25")
    assert r.exit_code == 0 and r.exception is None, r.output
    assert r.stderr.count("notes.txt") == 1 and "skipped 1 file(s) that are not images: dogs/notes.txt" in r.stderr
    assert "unreadable" not in r.stdout
    cache = read_cache(tmp_path / "p.h5")
    assert cache.attrs["skipped"] == [] and len(cache.train.labels) + len(cache.test.labels) == 12


def test_jfif_and_jpe_are_images(tmp_path):
    root = pets(tmp_path / "pets", 3)
    shutil.copy(CATS[4], root / "cats" / "x.jfif")
    shutil.copy(CATS[5], root / "cats" / "y.JPE")
    images, others = walk_images(root / "cats")
    assert [Path(p).name for p in images] == [p.name for p in CATS[:3]] + ["x.jfif", "y.JPE"] and others == []


def test_predict_uses_the_same_walker(tmp_path):
    root = pets(tmp_path / "new", 2)
    os.symlink(fill(tmp_path / "elsewhere", DOGS[4:5]), root / "linked")
    shutil.copy(CATS[4], root / "x.jfif")
    (root / "notes.txt").write_text("hello\n")
    os.symlink(".", root / "zloop")
    files, _ = collect_images((root,))
    names = [str(f.relative_to(root)) for f in files]
    assert names == ["cats/cat.1.jpg", "cats/cat.10.jpg", "dogs/dog.1.jpg", "dogs/dog.10.jpg", f"linked/{DOGS[4].name}", "x.jfif"]
    assert load_image(files[-1], 32).shape == (32, 32, 3)


# --------------------------------------------------------------------------- split folders


@pytest.mark.parametrize("names", [("Train", "Test"), ("training", "testing"), ("TRAIN", "test")])
def test_split_folders_in_any_case(tmp_path, names):
    root = tmp_path / "pets"
    pets(root / names[0], 4)
    fill(root / names[1] / "cats", CATS[4:6])
    fill(root / names[1] / "dogs", DOGS[4:6])
    data = load_dataset(root, 32)
    assert data.class_names == ["cats", "dogs"] and list(data.splits) == ["train", "test"]
    assert data.splits["test"].sources == [f"{names[1]}/cats/{p.name}" for p in CATS[4:6]] + \
        [f"{names[1]}/dogs/{p.name}" for p in DOGS[4:6]]
    assert len(data.splits["train"]) == 8


def test_val_folder_is_a_third_split_and_reaches_the_cache(tmp_path):
    root = tmp_path / "pets"
    pets(root / "train", 2)
    fill(root / "Valid" / "cats", CATS[2:4])
    fill(root / "Valid" / "dogs", DOGS[2:3])
    fill(root / "test" / "cats", CATS[4:6])
    fill(root / "test" / "dogs", DOGS[4:6])
    data = load_dataset(root, 32)
    assert list(data.splits) == ["train", "val", "test"]
    assert data.splits["val"].sources == [f"Valid/cats/{CATS[2].name}", f"Valid/cats/{CATS[3].name}", f"Valid/dogs/{DOGS[2].name}"]
    np.testing.assert_array_equal(data.splits["val"].labels, [0, 0, 1])
    out = tmp_path / "p.h5"
    r = invoke("--data-dir", root, "--weights", "none", "--out", out)
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "train 4 x 512, val 3 x 512, test 4 x 512" in r.stdout
    cache = read_cache(out)
    assert list(cache.val.sources) == data.splits["val"].sources and cache.val.features.shape == (3, 512)
    np.testing.assert_array_equal(cache.val.labels, [0, 0, 1])
    assert len(cache.train.labels) == 4 and len(cache.test.labels) == 4


def test_train_and_val_without_test_split_train_for_testing(tmp_path):
    root = tmp_path / "pets"
    pets(root / "train", 6)
    fill(root / "val" / "cats", CATS[:1])
    fill(root / "val" / "dogs", DOGS[:1])
    data = load_dataset(root, 32, test_fraction=0.25)
    assert list(data.splits) == ["train", "val", "test"]
    assert len(data.splits["test"]) == 3 and len(data.splits["train"]) == 9 and len(data.splits["val"]) == 2
    assert all(s.startswith("train/") for s in data.splits["test"].sources)


def test_cache_without_val_reads_val_as_none(tmp_path):
    out = tmp_path / "p.h5"
    r = invoke("--data-dir", pets(tmp_path / "pets", 4), "--weights", "none", "--out", out, "--test-fraction", "0.25")
    assert r.exit_code == 0, r.output
    assert read_cache(out).val is None


def test_split_folders_beside_class_folders_are_refused(tmp_path):
    root = tmp_path / "pets"
    pets(root / "train", 2)
    fill(root / "birds", CATS[:2])
    msg = refused("--data-dir", root, "--weights", "none", "--out", tmp_path / "x.h5")
    assert "mixes split folders (train) with other folders (birds)" in msg
    assert not (tmp_path / "x.h5").exists()


# --------------------------------------------------------------------------- readable classes


def test_class_of_non_images_fails_naming_class_and_files(tmp_path):
    root = pets(tmp_path / "pets" / "train", 3).parent
    pets(root / "test", 2)
    for i in range(5):
        (root / "train" / "birds").mkdir(exist_ok=True)
        (root / "train" / "birds" / f"bird{i}.txt").write_text("tweet\n")
    fill(root / "test" / "birds", CATS[:1])
    msg = refused("--data-dir", root, "--weights", "none", "--out", tmp_path / "x.h5")
    assert f"class folder {root / 'train' / 'birds'} has no readable image (5 file(s) skipped, not images: " in msg
    assert "train/birds/bird0.txt" in msg and "train/birds/bird4.txt" in msg
    assert not (tmp_path / "x.h5").exists()


def test_class_without_readable_test_image_fails(tmp_path):
    root = tmp_path / "pets"
    pets(root / "train", 3)
    fill(root / "test" / "cats", CATS[:1])
    (root / "test" / "dogs").mkdir(parents=True)
    (root / "test" / "dogs" / "dog.jpg").write_text("not a photo\n")
    with pytest.raises(UserError, match=r"test/dogs has no readable image \(1 file\(s\) skipped, not images: test/dogs/dog.jpg\)"):
        load_dataset(root, 32)


# --------------------------------------------------------------------------- --limit


def test_limit_is_stratified_seeded_and_in_folder_order(tmp_path):
    root = pets(tmp_path / "pets", 6)
    fill(root / "cats", CATS[:0])
    a = load_dataset(root, 32, limit=4, test_fraction=0.25, seed=0)
    b = load_dataset(root, 32, limit=4, test_fraction=0.25, seed=0)
    train = a.splits["train"]
    assert np.bincount(train.labels).tolist() == [2, 2]
    assert train.sources == sorted(train.sources) and b.splits["train"].sources == train.sources
    seeds = {tuple(load_dataset(root, 32, limit=4, test_fraction=0.25, seed=s).splits["train"].sources) for s in range(4)}
    assert len(seeds) > 1


@pytest.mark.skipif(not PHOTOS_SUBSET.is_dir(), reason="../shared/data is not present")
def test_limit_20_on_the_subset_gives_both_classes():
    data = load_dataset(PHOTOS_SUBSET, 32, limit=20, seed=0)
    for split in ("train", "test"):
        assert np.bincount(data.splits[split].labels).tolist() == [10, 10]


def test_limit_below_the_number_of_classes_is_refused(tmp_path):
    with pytest.raises(UserError, match="--limit 1 is fewer than the 2 classes"):
        load_dataset(pets(tmp_path / "pets"), 32, limit=1)


# --------------------------------------------------------------------------- names and layouts


def test_non_utf8_file_name_is_kept_escaped_and_found_again(tmp_path):
    root = pets(tmp_path / "pets", 4)
    raw = os.path.join(os.fsencode(root / "cats"), b"caf\xe9.jpg")
    shutil.copy(CATS[5], raw)
    data = load_dataset(root, 32, test_fraction=0.25)
    assert "cats/caf\\xe9.jpg" in all_sources(data)
    assert source_path(root, "cats/caf\\xe9.jpg") == Path(os.fsdecode(raw))
    assert source_image("folder", str(root), "cats/caf\\xe9.jpg", 32).shape == (32, 32, 3)
    out = tmp_path / "p.h5"
    r = invoke("--data-dir", root, "--weights", "none", "--out", out, "--test-fraction", "0.25")
    assert r.exit_code == 0 and r.exception is None, r.output
    cache = read_cache(out)
    assert "cats/caf\\xe9.jpg" in list(cache.train.sources) + list(cache.test.sources)


@pytest.mark.parametrize("what", ["loose", "empty"])
def test_folder_without_class_subfolders_says_so(tmp_path, what):
    root = tmp_path / "photos"
    root.mkdir()
    if what == "loose":
        for p in CATS[:3]:
            shutil.copy(p, root / p.name)
    msg = refused("--data-dir", root, "--weights", "none", "--out", tmp_path / "x.h5")
    n = 3 if what == "loose" else 0
    assert f"{root} holds {n} loose image(s) and no class subfolders" in msg and "one subfolder per class" in msg
    assert "data_batch_1" not in msg
