"""predict: a saved run classifies new photos exactly as classify did on the same images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import PHOTOS_FIXTURE, classify_run, invoker, photo_cache


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """Real photos -> cache (random VGG16) -> saved LR run."""
    tmp = tmp_path_factory.mktemp("predict")
    cache = photo_cache(tmp)
    run = classify_run(cache, tmp / "reports")
    assert len(list((tmp / "reports").glob("*-run.json"))) == 1
    return cache, run


invoke = invoker("classify.commands.predict")   # invoke(args): the predict command in-process


def test_predict_agrees_with_the_classify_run_on_its_test_images(photo_run):
    from classify.runs.saved import load_run
    from featurecache.cache import read_cache

    cache_path, run_path = photo_run
    cache, run = read_cache(cache_path), load_run(run_path)
    expected = run.predict_proba(cache.test.features)  # (n, C) from the cached features

    result = invoke(["--run", str(run_path), str(PHOTOS_FIXTURE / "test"), "--json"])
    assert result.exit_code == 0, result.output
    got = {str(Path(p["image"]).relative_to(PHOTOS_FIXTURE)): p for p in json.loads(result.output)["predictions"]}
    assert set(got) == set(cache.test.sources)
    for source, proba in zip(cache.test.sources, expected):
        p = got[source]
        assert p["class"] == run.class_names[int(np.argmax(proba))], source
        assert p["probability"] == pytest.approx(float(proba.max()), abs=0.02)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_prints_one_line_per_image_and_skips_broken_files(photo_run, tmp_path):
    _, run_path = photo_run
    good = sorted((PHOTOS_FIXTURE / "test" / "dogs").iterdir())[:2]
    broken = PHOTOS_FIXTURE / "train" / "cats" / "zz-broken.jpg"
    result = invoke(["--run", str(run_path), *map(str, good), str(broken)])
    assert result.exit_code == 0, result.output
    lines = [l for l in result.stdout.splitlines() if l.strip()]
    assert len(lines) == 2
    for line, path in zip(lines, good):
        image, cls, prob = line.rsplit(None, 2)
        assert image == str(path) and cls in ("cats", "dogs") and 0.5 <= float(prob) <= 1.0
    assert "skipped 1 file(s):" in result.stderr and "zz-broken.jpg: unreadable" in result.stderr


def test_predict_bad_input_is_one_line(photo_run, tmp_path):
    _, run_path = photo_run
    result = invoke(["--run", str(run_path), str(tmp_path / "nope.jpg")])
    assert result.exit_code != 0 and "does not exist" in result.output and "Traceback" not in result.output

    (tmp_path / "empty").mkdir()
    result = invoke(["--run", str(run_path), str(tmp_path / "empty")])
    assert result.exit_code != 0 and "holds no image files" in result.output

    fake = tmp_path / "fake-run.json"
    fake.write_text(json.dumps({"model": "lr"}))
    result = invoke(["--run", str(fake), str(PHOTOS_FIXTURE / "test")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def png_of_zeros(path: Path, width: int, height: int) -> Path:
    """A real 1-bit black PNG of any size, written row by row (Pillow would hold it all in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)   # filter byte, then the row's bits
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_predict_lists_every_skipped_file_with_its_reason(photo_run, tmp_path):
    """A folder of one photo, a garbage .jpg, a text file and two images over Pillow's decompression-bomb limits,
    in a real process: one prediction, four skipped files with their reasons, and no raw Pillow warning."""
    import shutil
    import subprocess
    import sys

    _, run_path = photo_run
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(PHOTOS_FIXTURE / "test" / "dogs" / "dog.4001.jpg", folder / "dog.jpg")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg" * 10)
    (folder / "notes.txt").write_text("not a picture\n")
    png_of_zeros(folder / "big-10k.png", 10_000, 10_000)     # over the warning limit
    png_of_zeros(folder / "huge-20k.png", 20_000, 20_000)    # over the error limit
    proc = subprocess.run([sys.executable, "-m", "featurecache", "predict", "--run", str(run_path), str(folder), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "DecompressionBomb" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    assert [Path(p["image"]).name for p in out["predictions"]] == ["dog.jpg"]
    reasons = {Path(s["file"]).name: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {"broken.jpg", "notes.txt", "big-10k.png", "huge-20k.png"}, reasons
    assert reasons["notes.txt"] == "not an image" and reasons["broken.jpg"].startswith("unreadable")
    assert reasons["big-10k.png"].startswith("too large: 100,000,000 pixels, over the decompression-bomb limit")
    assert reasons["huge-20k.png"].startswith("too large: 400,000,000 pixels, over the decompression-bomb limit")


def test_predict_exits_1_when_nothing_could_be_predicted(photo_run, tmp_path):
    _, run_path = photo_run
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 garbage")
    (tmp_path / "notes.txt").write_text("hello\n")
    result = invoke(["--run", str(run_path), str(tmp_path), "--json"])
    # exit 1 through click (SystemExit), not an exception escaping the command
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    out = json.loads(result.stdout)
    assert out["predictions"] == []
    assert sorted((Path(s["file"]).name, s["reason"].split(":")[0]) for s in out["skipped"]) == \
        [("broken.jpg", "unreadable"), ("notes.txt", "not an image")]
    assert result.stderr.strip().splitlines()[-1].startswith("Error: none of the 2 file(s) given could be predicted")
    result = invoke(["--run", str(run_path), str(tmp_path / "broken.jpg")])            # text: the same, on stderr
    assert result.exit_code == 1 and "broken.jpg: unreadable" in result.stderr, result.output


def test_predict_names_a_device_as_not_a_regular_file(photo_run, tmp_path):
    _, run_path = photo_run
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    result = invoke(["--run", str(run_path), str(tmp_path / "zero.jpg")])
    assert result.exit_code == 1 and "zero.jpg is not a regular file" in result.output, result.output
