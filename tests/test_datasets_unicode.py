"""Class folders named in two Unicode forms (macOS writes NFD, Linux NFC) are the same class."""

from __future__ import annotations

import shutil
import unicodedata

import pytest

from conftest import PHOTOS_FIXTURE
from extract.folders import load_image_folder
from featurecache.errors import UserError

NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", NFC)


def photos(folder, n):
    folder.mkdir(parents=True)
    for p in sorted((PHOTOS_FIXTURE / "train" / "dogs").iterdir())[:n]:
        shutil.copy(p, folder / p.name)


def test_nfc_and_nfd_class_folders_are_one_class(tmp_path):
    assert NFC != NFD
    photos(tmp_path / "train" / NFC, 3)
    photos(tmp_path / "train" / "dogs", 3)
    photos(tmp_path / "test" / NFD, 2)
    photos(tmp_path / "test" / "dogs", 2)
    data = load_image_folder(tmp_path, 32)
    assert data.class_names == [NFC, "dogs"]
    assert sorted(data.splits["test"].labels.tolist()) == [0, 0, 1, 1]
    assert data.splits["test"].read(0, 4).images.shape == (4, 32, 32, 3)


def test_different_classes_are_named_not_listed_twice(tmp_path):
    photos(tmp_path / "train" / NFC, 2)
    photos(tmp_path / "train" / "dogs", 2)
    photos(tmp_path / "test" / "cats", 2)
    photos(tmp_path / "test" / "dogs", 2)
    with pytest.raises(UserError, match=r"only in one of them: 'caf\\xe9', 'cats'"):
        load_image_folder(tmp_path, 32)
