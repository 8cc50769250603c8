"""Issue 6: folders of real photos (tests/fixtures/cats-vs-dogs) with a grayscale, an
RGBA, an EXIF-rotated and a broken file among them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import error_line
from conftest import invoke_extract as invoke
from featurecache.cache import read_cache
from extract.datasets import load_dataset
from extract.folders import load_image_folder
from featurecache.images import load_image
from featurecache.errors import UserError

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "cats-vs-dogs"
CATS = PHOTOS / "train" / "cats"


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["zz-gray.jpg", "zz-rgba.png", "zz-exif-rotated.jpg", "cat.1.jpg"])
@pytest.mark.parametrize("size", [32, 71])
def test_every_photo_decodes_to_square_rgb_uint8(name, size):
    image = load_image(CATS / name, size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert image.std() > 5  # a real picture, not a blank


def test_grayscale_becomes_three_equal_channels():
    with Image.open(CATS / "zz-gray.jpg") as im:
        assert im.mode == "L"
    image = load_image(CATS / "zz-gray.jpg", 48).astype(int)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_rgba_is_composited_on_white():
    with Image.open(CATS / "zz-rgba.png") as im:
        assert im.mode == "RGBA"
        plain = np.asarray(im.convert("RGB").resize((48, 48), Image.Resampling.BILINEAR), dtype=float)
    image = load_image(CATS / "zz-rgba.png", 48).astype(float)
    # alpha 200/255 over white lifts every pixel towards 255
    expected = plain * 200 / 255 + 255 * 55 / 255
    assert np.abs(image - expected).mean() < 3
    assert image.mean() > plain.mean() + 20


def test_exif_orientation_is_honoured():
    path = CATS / "zz-exif-rotated.jpg"
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 6
        stored = im.convert("RGB")
        assert stored.width != stored.height
        upright = stored.transpose(Image.Transpose.ROTATE_270)  # orientation 6: turn 90 degrees clockwise
    size = 64
    want = np.asarray(upright.resize((size, size), Image.Resampling.BILINEAR), dtype=float)
    wrong = np.asarray(stored.resize((size, size), Image.Resampling.BILINEAR), dtype=float)
    got = load_image(path, size).astype(float)
    close, far = np.abs(got - want).mean(), np.abs(got - wrong).mean()
    assert close < 8 and far > 3 * close, (close, far)


def test_broken_file_raises_on_its_own():
    with pytest.raises(OSError):
        load_image(CATS / "zz-broken.jpg", 32)


# --------------------------------------------------------------------------- folder layouts


def test_train_test_layout_classes_sources_and_labels():
    data = load_dataset(PHOTOS, 32)
    assert data.kind == "folder" and data.name == "cats-vs-dogs" and data.image_size == 32
    assert data.class_names == ["cats", "dogs"]
    for split in ("train", "test"):
        s = data.splits[split]
        assert s.sources == [f"{split}/{f}" for f in files_under(PHOTOS / split)]
        np.testing.assert_array_equal(s.labels, [0 if "/cats/" in x else 1 for x in s.sources])
    assert len(data.splits["train"]) == 16 and len(data.splits["test"]) == 6
    assert "train/cats/zz-broken.jpg" in data.splits["train"].sources


def test_cli_skips_the_broken_file_counts_and_lists_it(tmp_path):
    out = tmp_path / "photos.h5"
    r = invoke("--data-dir", PHOTOS, "--weights", "none", "--image-size", 48, "--out", out)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "skipped 1 unreadable file(s), listed in the cache's 'skipped' attribute: train/cats/zz-broken.jpg" in r.stdout
    assert f"wrote {out}: train 15 x 512, test 6 x 512" in r.stdout
    cache = read_cache(out)
    assert cache.attrs["skipped"] == ["train/cats/zz-broken.jpg"]
    assert cache.class_names == ["cats", "dogs"] and cache.attrs["dataset"] == "cats-vs-dogs"
    assert cache.attrs["data_kind"] == "folder" and cache.attrs["image_size"] == 48
    want = [f for f in files_under(PHOTOS / "train") if f != "cats/zz-broken.jpg"]
    assert list(cache.train.sources) == [f"train/{f}" for f in want]
    np.testing.assert_array_equal(cache.train.labels, [0 if x.startswith("cats/") else 1 for x in want])
    assert list(cache.test.sources) == [f"test/{f}" for f in files_under(PHOTOS / "test")]


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    data = tmp_path / "pets"
    shutil.copytree(PHOTOS, data)
    for p in (data / "test" / "dogs").iterdir():
        p.unlink()
    msg = error_line(invoke("--data-dir", data, "--weights", "none", "--out", tmp_path / "x.h5"))
    assert f"class folder {data / 'test' / 'dogs'} is empty" in msg
    assert not (tmp_path / "x.h5").exists()


def test_empty_class_folder_in_a_single_level_folder(tmp_path):
    data = tmp_path / "pets"
    shutil.copytree(PHOTOS / "train", data)
    (data / "birds").mkdir()
    with pytest.raises(UserError, match=r"class folder .*/pets/birds is empty"):
        load_image_folder(data, 32)


def test_train_and_test_with_different_classes_is_an_error(tmp_path):
    data = tmp_path / "pets"
    shutil.copytree(PHOTOS, data)
    shutil.rmtree(data / "test" / "dogs")
    with pytest.raises(UserError, match="different class folders"):
        load_image_folder(data, 32)


def single_level(tmp_path: Path) -> Path:
    """pets/cats and pets/dogs with the 9 real photos of each class (no train/ and test/)."""
    root = tmp_path / "pets"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for split in ("train", "test"):
            for p in (PHOTOS / split / cls).iterdir():
                if not p.name.startswith("zz-"):
                    shutil.copy(p, root / cls / p.name)
    return root


def test_single_level_folder_is_split_stratified_and_seeded(tmp_path):
    root = single_level(tmp_path)
    everything = files_under(root)
    assert len(everything) == 18
    a = load_dataset(root, 32, test_fraction=0.25, seed=0)
    b = load_dataset(root, 32, test_fraction=0.25, seed=0)
    c = load_dataset(root, 32, test_fraction=0.25, seed=1)
    assert a.class_names == ["cats", "dogs"] and a.name == "pets"
    train, test = a.splits["train"], a.splits["test"]
    assert sorted(train.sources + test.sources) == everything and not set(train.sources) & set(test.sources)
    # ceil(0.25 x 18) = 5 test images, as classify/training/data.py rounds, stratified by scikit-learn
    assert sorted(np.bincount(test.labels).tolist()) == [2, 3] and len(train) == 13
    for s in (train, test):
        np.testing.assert_array_equal(s.labels, [0 if x.startswith("cats/") else 1 for x in s.sources])
    assert b.splits["test"].sources == test.sources  # same seed, same split
    assert c.splits["test"].sources != test.sources  # another seed, another split
    half = load_dataset(root, 32, test_fraction=0.5, seed=0)
    assert sorted(np.bincount(half.splits["test"].labels).tolist()) == [4, 5]  # ceil(0.5 x 18) = 9
