"""Class names in scripts the default font lacks (CJK) and in decomposed Unicode: never drawn as empty boxes."""

from __future__ import annotations

import json
import unicodedata
import warnings

import numpy as np
from PIL import Image

from classify.cli import cli
from classify.runs.outputs import drawable_names
from featurecache.cache import write_cache
from conftest import invoke, latest_run

NAMES = ["猫", "犬", unicodedata.normalize("NFD", "café")]  # cat, dog (CJK), and "café" with a combining accent


def named_cache(path, names: list[str]):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (len(names), 8))

    def split(n):
        y = np.arange(n) % len(names)
        return {"features": (centres[y] + rng.normal(size=(n, 8))).astype(np.float32), "labels": y.astype(np.int64),
                "sources": np.asarray([str(i) for i in range(n)], dtype=object)}

    attrs = {"dataset": "blobs", "backbone": "none", "pooling": "gap", "image_size": 1, "weights": "none", "seed": 0,
             "precision": "float32", "feature_dim": 8, "class_names": names}
    return write_cache(path, attrs, {"train": [split(120)], "test": [split(30)]})


def test_cjk_names_are_drawn_with_a_fallback_font_or_as_escapes_never_as_boxes(tmp_path):
    labels, families, note = drawable_names(NAMES)
    assert labels[2] == "café" and len(labels[2]) == 4  # NFC: one code point for é
    if families:  # a font with CJK glyphs is installed: it is added as a fallback
        assert labels[:2] == NAMES[:2] and note is None
    else:         # none is: escapes, and a note that says so
        assert labels[:2] == ["\\u732b", "\\u72ac"] and "no installed font" in note

    cache = named_cache(tmp_path / "pets.h5", NAMES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(cli, ["--model", "lr", "--features", cache, "--out-dir", tmp_path / "reports"])
    assert result.exit_code == 0, result.output
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing  # matplotlib draws a box for each glyph it warns about here
    record = latest_run(tmp_path / "reports", "pets", "lr")
    assert record.get("class_names_note") == note
    assert record["class_names"] == NAMES  # the names themselves are kept as the cache has them
    report = open(record["files"]["report_txt"], encoding="utf-8").read()
    assert ("note: " + note in report) if note else "note:" not in report
    with Image.open(record["files"]["confusion"]) as im:
        assert im.format == "PNG"


def test_names_in_the_default_font_are_left_alone():
    assert drawable_names(["airplane", "Ölfass", "κύων"]) == (["airplane", "Ölfass", "κύων"], [], None)


def test_run_record_keeps_json_readable_names(tmp_path):
    cache = named_cache(tmp_path / "pets.h5", ["猫", "犬"])
    assert invoke(cli, ["--model", "lr", "--features", cache, "--out-dir", tmp_path]).exit_code == 0
    pointer = json.loads((tmp_path / "pets-lr-latest.json").read_text())
    assert json.loads((tmp_path / pointer["run"]).read_text())["class_names"] == ["猫", "犬"]
