"""The README's "Use from Python" block runs as written: it extracts a real photo folder, trains,
predicts a new photo and exports the run, all by itself, with no command run before it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import PHOTOS_FIXTURE, ROOT

README = (ROOT / "README.md").read_text()


def python_block() -> str:
    section = README.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold one python block"
    return blocks[0]


def test_the_block_uses_only_the_featurecache_api():
    imports = re.findall(r"^(?:from|import) .*$", python_block(), re.M)
    assert imports == ["import featurecache as fc"]


@pytest.mark.slow
def test_the_use_from_python_block_runs_as_written(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KERAS_HOME": str(tmp_path / "keras"),
           "FEATURECACHE_FEATURES_DIR": ""}
    shutil.copytree(PHOTOS_FIXTURE, tmp_path / "photos")     # train/ and test/, a cats and a dogs folder in each
    (tmp_path / "new-photos").mkdir()
    shutil.copy(PHOTOS_FIXTURE / "test" / "dogs" / "dog.4001.jpg", tmp_path / "new-photos" / "dog.jpg")
    (tmp_path / "block.py").write_text(python_block())
    r = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "(15, 512) ['cats', 'dogs']"          # 16 training photos, one of them broken
    assert re.fullmatch(r"lr: test accuracy [01]\.\d{3}", lines[1])
    name, probability = lines[2].split()
    assert name in ("cats", "dogs") and 0.5 <= float(probability) <= 1
    caches = list((tmp_path / "features").glob("photos-*.h5"))
    runs = list((tmp_path / "reports").glob("photos-*-lr-*-run.json"))
    assert len(caches) == 1 and len(runs) == 1
    record = json.loads(runs[0].read_text())
    assert record["cache"]["path"].endswith(caches[0].name)
    assert f"{record['metrics']['accuracy']:.3f}" == lines[1].rsplit(" ", 1)[1]
    exported = tmp_path / "exports" / "photos-lr"
    assert (exported / "model.keras").is_file() and (exported / "saved_model").is_dir()
    assert json.loads((exported / "labels.json").read_text()) == ["cats", "dogs"]
    assert json.loads((exported / "export.json").read_text())["run_id"] == record["run_id"]
