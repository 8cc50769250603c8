"""The README's "Use from Python" block runs as written, against a real cache, run and photo."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import CIFAR_FIXTURE, PHOTOS_FIXTURE, ROOT

README = (ROOT / "README.md").read_text()


def python_block() -> str:
    section = README.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold one python block"
    return blocks[0]


@pytest.mark.slow
def test_the_use_from_python_block_runs_as_written(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KERAS_HOME": str(tmp_path / "keras"),
           "FEATURECACHE_FEATURES_DIR": ""}
    for args in (["-m", "extract", "--data-dir", str(CIFAR_FIXTURE), "--weights", "none"],
                 ["-m", "classify", "--model", "lr"]):
        r = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    (tmp_path / "photos").mkdir()
    shutil.copy(PHOTOS_FIXTURE / "test" / "cats" / "cat.4001.jpg", tmp_path / "photos" / "cat.jpg")
    (tmp_path / "block.py").write_text(python_block())
    r = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "(100, 512) ['airplane', 'automobile', 'bird']"
    assert re.fullmatch(r"lr: test accuracy 0\.\d{3}", lines[1])
    name, probability = lines[2].split()
    assert name in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert 0 < float(probability) <= 1
