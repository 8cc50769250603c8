"""--shard i/N and `extract merge`: N slices of real CIFAR-10 and photos merged into one ordinary cache.

Every extraction is real (random VGG16 weights, --weights none); shard files and merged caches are read
back from disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CIFAR_FIXTURE, PHOTOS_FIXTURE, assert_same_cache, error_line, invoke_extract
from featurecache.cache import read_cache
from featurecache.errors import UserError


def merge(*args):
    from extract.cli import merge_cli

    return CliRunner().invoke(merge_cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def cifar_shards(tmp_path_factory) -> list[Path]:
    """3 shard files of the 120 fixture images, made by three independent extract runs."""
    folder = tmp_path_factory.mktemp("shards")
    for i in range(3):
        r = invoke_extract("--data-dir", CIFAR_FIXTURE, "--weights", "none", "--out", folder / "c.h5",
                           "--shard", f"{i}/3")
        assert r.exit_code == 0, r.output
    paths = [folder / f"c.shard-{i}-of-3.h5" for i in range(3)]
    assert all(p.is_file() for p in paths) and not (folder / "c.h5").exists()
    return paths


def test_three_shards_merged_equal_the_single_process_cache(cifar_shards, tiny_cache, tmp_path):
    rows = [read_cache(p).attrs for p in cifar_shards]
    assert [a["n_train"] for a in rows] == [33, 33, 34] and [a["n_test"] for a in rows] == [6, 7, 7]
    r = merge("--out", tmp_path / "merged.h5", *reversed(cifar_shards))  # any order
    assert r.exit_code == 0, r.output
    assert "merged 3 shards" in r.output
    assert_same_cache(tiny_cache, tmp_path / "merged.h5")
    merged = read_cache(tmp_path / "merged.h5").attrs
    assert "shard" not in merged and "num_shards" not in merged


def test_merge_refuses_missing_incomplete_duplicated_and_foreign_shards(cifar_shards, tmp_path):
    out = tmp_path / "m.h5"
    line = error_line(merge("--out", out, cifar_shards[0], cifar_shards[2]), 1)
    assert "1/3" in line and "missing" in line
    line = error_line(merge("--out", out, cifar_shards[0], cifar_shards[0], cifar_shards[1]), 1)
    assert "given twice" in line
    # an interrupted shard: no file, its checkpoints beside it
    gone = tmp_path / "c.shard-1-of-3.h5"
    (tmp_path / "c.shard-1-of-3.h5.partial").mkdir()
    line = error_line(merge("--out", out, cifar_shards[0], gone, cifar_shards[2]), 1)
    assert "incomplete" in line and str(gone) in line
    # a truncated copy of shard 2
    cut = tmp_path / "cut.h5"
    cut.write_bytes(cifar_shards[2].read_bytes()[:4096])
    line = error_line(merge("--out", out, cifar_shards[0], cifar_shards[1], cut), 1)
    assert str(cut) in line
    # a shard of other settings
    r = invoke_extract("--data-dir", CIFAR_FIXTURE, "--weights", "none", "--seed", "1", "--out", tmp_path / "s1.h5",
                       "--shard", "1/3")
    assert r.exit_code == 0, r.output
    line = error_line(merge("--out", out, cifar_shards[0], tmp_path / "s1.shard-1-of-3.h5", cifar_shards[2]), 1)
    assert "other settings" in line and "seed" in line
    assert not out.exists()


def test_merge_never_overwrites_a_cache_on_bad_input(cifar_shards, tiny_cache, tmp_path):
    out = tmp_path / "kept.h5"
    shutil.copy(tiny_cache, out)
    before = out.read_bytes()
    error_line(merge("--out", out, cifar_shards[0], tmp_path / "nowhere.h5", cifar_shards[2]), 1)
    assert out.read_bytes() == before


@pytest.mark.parametrize("shard", ["3/2", "0/0", "1", "-1/2", "0/1000001", "99999999999999999999/999999999999999999999",
                                   "0/" + "9" * 5000])
def test_bad_shard_is_one_line(shard, tmp_path):
    r = invoke_extract("--data-dir", CIFAR_FIXTURE, "--weights", "none", "--out", tmp_path / "x.h5", "--shard", shard)
    line = error_line(r, 1)
    assert "--shard" in line and len(line) < 300
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_photo_shards_merge_like_one_run(tmp_path):
    """Photos with broken files: each shard skips its own, the merged cache lists them all."""
    common = ["--data-dir", PHOTOS_FIXTURE, "--weights", "none"]
    r = invoke_extract(*common, "--out", tmp_path / "one.h5")
    assert r.exit_code == 0, r.output
    for i in range(2):
        r = invoke_extract(*common, "--out", tmp_path / "p.h5", "--shard", f"{i}/2")
        assert r.exit_code == 0, r.output
    r = merge("--out", tmp_path / "p.h5", tmp_path / "p.shard-0-of-2.h5", tmp_path / "p.shard-1-of-2.h5")
    assert r.exit_code == 0, r.output
    assert_same_cache(tmp_path / "one.h5", tmp_path / "p.h5")


AUGMENTED = ["--data-dir", CIFAR_FIXTURE, "--weights", "none", "--precision", "float32", "--limit", "24",
             "--augment", "flip", "--views", "2", "--test-views", "2"]


@pytest.fixture(scope="module")
def augmented(tmp_path_factory) -> dict[str, Path]:
    """An augmented single run and its two shards (24 train and 20 test rows, 2 views of each)."""
    folder = tmp_path_factory.mktemp("augmented")
    r = invoke_extract(*AUGMENTED, "--out", folder / "one.h5")
    assert r.exit_code == 0, r.output
    for i in range(2):
        r = invoke_extract(*AUGMENTED, "--out", folder / "a.h5", "--shard", f"{i}/2")
        assert r.exit_code == 0, r.output
    return {"one": folder / "one.h5", "shards": [folder / f"a.shard-{i}-of-2.h5" for i in range(2)]}


def test_merged_augmented_shards_equal_one_run_views_included(augmented, tmp_path):
    one = read_cache(augmented["one"])
    second = read_cache(augmented["shards"][1])  # rows 12..23 of train, 10..19 of test
    # a view depends on (seed, split, row, view), never on the shard that computed it
    np.testing.assert_array_equal(second.train.views, one.train.views[12:24])
    np.testing.assert_array_equal(second.test.views, one.test.views[10:20])
    r = merge("--out", tmp_path / "m.h5", *augmented["shards"])
    assert r.exit_code == 0, r.output
    assert_same_cache(augmented["one"], tmp_path / "m.h5", atol=0)
    merged = read_cache(tmp_path / "m.h5")
    assert merged.train.views.shape == (24, 2, 512) and merged.test.views.shape == (20, 2, 512)
    np.testing.assert_array_equal(merged.train.views, one.train.views)
    np.testing.assert_array_equal(merged.test.views, one.test.views)


def test_a_cache_that_lost_its_views_is_never_up_to_date(augmented, tmp_path):
    """What the old merge wrote: attributes saying views=2 over a file without /train/view_features."""
    import h5py

    stale = tmp_path / "stale.h5"
    shutil.copy(augmented["one"], stale)
    with h5py.File(stale, "r+") as f:
        del f["train/view_features"], f["test/view_features"]
    line = error_line(invoke_extract(*AUGMENTED, "--out", stale), 1)
    assert "view" in line and "--force" in line and "up to date" not in line
    line = error_line(merge("--out", stale, *augmented["shards"]), 1)
    assert "--force" in line and "nothing to do" not in line
    r = merge("--out", stale, "--force", *augmented["shards"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_cache(stale).train.views, read_cache(augmented["one"]).train.views)


def test_merge_onto_a_damaged_or_partial_cache_is_refused_not_reused(cifar_shards, tmp_path):
    """A cache of the shards' settings at --out is kept only once every row and checksum is checked."""
    import h5py

    out = tmp_path / "m.h5"
    assert merge("--out", out, *cifar_shards).exit_code == 0
    r = merge("--out", out, *cifar_shards)
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output
    with h5py.File(out, "r") as f:
        at = f["train/features"].id.get_chunk_info(0).byte_offset + 100
    data = bytearray(out.read_bytes())
    data[at] ^= 0xFF   # one flipped byte in the stored features
    out.write_bytes(bytes(data))
    damaged = out.read_bytes()
    line = error_line(merge("--out", out, *cifar_shards), 1)
    assert str(out) in line and "--force" in line and "nothing to do" not in line
    assert out.read_bytes() == damaged   # refused, not silently replaced
    shutil.copy(cifar_shards[0], out)   # a byte copy of shard 0: 33 of 100 training rows
    line = error_line(merge("--out", out, *cifar_shards), 1)
    assert "shard 0/3" in line and "--force" in line
    r = merge("--out", out, "--force", *cifar_shards)
    assert r.exit_code == 0, r.output
    assert read_cache(out).attrs["n_train"] == 100


def test_empty_shard_slices_are_written_and_merged(tmp_path):
    """--limit 3 in 5 shards: shards 0/5 and 2/5 hold no rows at all, views included; merge takes them."""
    common = ["--data-dir", CIFAR_FIXTURE, "--weights", "none", "--precision", "float32", "--limit", "3",
              "--augment", "flip", "--views", "2", "--test-views", "1"]
    r = invoke_extract(*common, "--out", tmp_path / "one.h5")
    assert r.exit_code == 0, r.output
    for i in range(5):
        r = invoke_extract(*common, "--out", tmp_path / "e.h5", "--shard", f"{i}/5")
        assert r.exit_code == 0, r.output
        assert (i not in (0, 2)) or "no rows to compute" in r.output
    empty = read_cache(tmp_path / "e.shard-0-of-5.h5")
    assert empty.train.features.shape == (0, 512) and empty.train.views.shape == (0, 2, 512)
    r = merge("--out", tmp_path / "e.h5", *sorted(tmp_path.glob("e.shard-*-of-5.h5")))
    assert r.exit_code == 0, r.output
    assert_same_cache(tmp_path / "one.h5", tmp_path / "e.h5", atol=0)
    np.testing.assert_array_equal(read_cache(tmp_path / "e.h5").test.views, read_cache(tmp_path / "one.h5").test.views)


def test_photo_folder_with_a_tiny_val_split_shards(tmp_path):
    """A 2-image val/ in 3 shards: shard 0/3 has no val rows."""
    data = tmp_path / "photos"
    shutil.copytree(PHOTOS_FIXTURE / "test", data / "test")
    shutil.copytree(PHOTOS_FIXTURE / "test", data / "train")
    for name in ("cats", "dogs"):
        (data / "val" / name).mkdir(parents=True)
    shutil.copy(PHOTOS_FIXTURE / "test" / "cats" / "cat.4001.jpg", data / "val" / "cats")
    shutil.copy(PHOTOS_FIXTURE / "test" / "dogs" / "dog.4001.jpg", data / "val" / "dogs")
    common = ["--data-dir", data, "--weights", "none", "--precision", "float32"]
    r = invoke_extract(*common, "--out", tmp_path / "one.h5")
    assert r.exit_code == 0, r.output
    for i in range(3):
        r = invoke_extract(*common, "--out", tmp_path / "p.h5", "--shard", f"{i}/3")
        assert r.exit_code == 0, r.output
    assert read_cache(tmp_path / "p.shard-0-of-3.h5").val.features.shape == (0, 512)
    r = merge("--out", tmp_path / "p.h5", *sorted(tmp_path.glob("p.shard-*-of-3.h5")))
    assert r.exit_code == 0, r.output
    assert_same_cache(tmp_path / "one.h5", tmp_path / "p.h5", atol=0)
    np.testing.assert_array_equal(read_cache(tmp_path / "p.h5").val.features, read_cache(tmp_path / "one.h5").val.features)


def test_empty_out_paths_are_one_line_in_real_processes(cifar_shards, tmp_path):
    """--out "" (what `make merge` without OUT= used to pass) names the problem; no traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    runs = {"extract": [sys.executable, "-m", "extract", "--data-dir", str(CIFAR_FIXTURE), "--weights", "none",
                        "--limit", "3", "--out", ""],
            "merge": [sys.executable, "-m", "extract", "merge", "--out", "", *map(str, cifar_shards)],
            "make merge": ["make", "-s", "-o", ".venv/.installed-stamp", f"BIN={Path(sys.executable).parent}",
                           "merge", "SHARDS=" + " ".join(map(str, cifar_shards))]}
    for name, command in runs.items():
        r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (name, r.stderr)
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "--out" in errors[0], (name, r.stderr)
    from extract.shards import merge as merge_shards

    with pytest.raises(UserError, match="names no file"):
        merge_shards(cifar_shards, "")


def test_augmented_shards_from_before_whole_split_seeding_are_refused(augmented, tmp_path):
    """A shard without the view_seeds attribute drew its views by the row in its slice: merge refuses it."""
    import h5py

    old = tmp_path / "a.shard-1-of-2.h5"
    shutil.copy(augmented["shards"][1], old)
    with h5py.File(old, "r+") as f:
        del f.attrs["view_seeds"]
    line = error_line(merge("--out", tmp_path / "m.h5", augmented["shards"][0], old), 1)
    assert str(old) in line and "--force" in line
    assert not (tmp_path / "m.h5").exists()
