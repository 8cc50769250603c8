"""A moved data folder: the same content under a new path is recognised, recorded, and not recomputed."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from conftest import PHOTOS_FIXTURE, invoke_extract
from featurecache.cache import read_cache


def test_a_moved_photo_folder_keeps_its_cache_and_its_gallery(tmp_path):
    from classify.cli import cli as classify_cli

    first = tmp_path / "photos"
    shutil.copytree(PHOTOS_FIXTURE, first, symlinks=True, copy_function=shutil.copy2)
    out = tmp_path / "c.h5"
    r = invoke_extract("--data-dir", first, "--weights", "none", "--out", out)
    assert r.exit_code == 0, r.output
    before = read_cache(out)
    inode = out.stat().st_ino

    moved = tmp_path / "moved" / "photos"
    moved.parent.mkdir()
    first.rename(moved)
    r = invoke_extract("--data-dir", moved, "--weights", "none", "--out", out)
    assert r.exit_code == 0, r.output
    assert "already up to date" in r.stdout and "wrote" not in r.stdout
    assert f"the data moved from {first} to {moved}" in r.stderr and "nothing recomputed" in r.stderr
    after = read_cache(out)
    assert out.stat().st_ino == inode  # the same file, not a rebuilt one
    assert after.attrs["data_location"] == str(moved)
    np.testing.assert_array_equal(after.train.features, before.train.features)

    # the gallery finds the images at their new place
    reports = tmp_path / "reports"
    r = CliRunner().invoke(classify_cli, ["--model", "lr", "--features", str(out), "--out-dir", str(reports)])
    assert r.exit_code == 0, r.output
    record = json.loads(next(reports.glob("*-run.json")).read_text())
    assert record["gallery"] == "written" and (reports / record["files"]["gallery"]).is_file()
