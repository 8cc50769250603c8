"""Defaults a newcomer can trust, shown with real processes: which cache classify uses and why,
default cache names that never collide, and the one line a broken features/LATEST gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CIFAR_FIXTURE, ROOT

pytestmark = pytest.mark.slow
BASE = ["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--batch-size", "60"]
PRECISE = ["--precision", "float32"]


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder with its own features/ folder and a plain cache in it, written by a real extract."""
    root = tmp_path_factory.mktemp("project")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATURECACHE_FEATURES_DIR": str(root / "features")}
    r = run(["-m", "extract", *BASE, *PRECISE], env, root)
    assert r.returncode == 0, r.stderr
    return root, env


def h5s(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.h5")}


def test_a_cache_written_elsewhere_never_becomes_the_default(project, tmp_path):
    root, env = project
    features = root / "features"
    plain = features / "cifar10-vgg16-gap-32px-random.h5"
    assert plain.is_file() and (features / "LATEST").read_text().strip() == plain.name
    scratch = tmp_path / "scratch" / "fc.h5"
    r = run(["-m", "extract", *BASE, *PRECISE, "--seed", "3", "--out", str(scratch)], env, root)
    assert r.returncode == 0, r.stderr
    assert scratch.is_file() and (features / "LATEST").read_text().strip() == plain.name
    assert f"{scratch} is outside" in r.stderr and f"--features {scratch}" in r.stderr

    r = run(["-m", "classify", "--model", "lr", "--out-dir", str(tmp_path / "reports")], env, root)
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"cache: {features / 'LATEST'} \u2192 {plain}, written 20"), first
    record = json.loads(next((tmp_path / "reports").glob("*-lr-*-run.json")).read_text())
    assert Path(record["cache"]["path"]) == plain.resolve()

    # named, the scratch cache is used, and said so
    r = run(["-m", "classify", "--model", "lr", "--features", str(scratch), "--out-dir", str(tmp_path / "r2")],
            env, root)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == f"cache: {scratch} (--features)"


def test_a_dangling_latest_is_one_line_that_lists_the_caches(project, tmp_path):
    root, env = project
    features = tmp_path / "features"
    features.mkdir()
    kept = features / "kept.h5"
    kept.write_bytes((root / "features" / "cifar10-vgg16-gap-32px-random.h5").read_bytes())
    (features / "LATEST").write_text("gone.h5\n")
    env = {**env, "FEATURECACHE_FEATURES_DIR": str(features)}
    r = run(["-m", "classify", "--model", "lr", "--out-dir", str(tmp_path / "reports")], env, tmp_path)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(features / "LATEST") in lines[0] and "gone.h5" in lines[0]
    assert f"--features {kept}" in lines[0]
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*-run.json"))

    (features / "LATEST").write_text("")
    r = run(["-m", "featurecache", "compare", "--out-dir", str(tmp_path / "reports")], env, tmp_path)
    assert r.returncode == 1 and f"LATEST is empty" in r.stderr and f"--features {kept}" in r.stderr


@pytest.mark.parametrize("extra, name", [
    (PRECISE + ["--augment", "flip,crop", "--views", "2"], "cifar10-vgg16-gap-32px-random-aug-flip+crop-2views"),
    # bfloat16 features differ between runtimes, so the runtime is part of the name too
    (["--precision", "bfloat16", "--runtime", "tensorflow"], "cifar10-vgg16-gap-32px-random-bf16-tensorflow"),
])
def test_settings_that_change_the_features_get_their_own_default_name(project, extra, name):
    root, env = project
    features = root / "features"
    plain = features / "cifar10-vgg16-gap-32px-random.h5"
    before = plain.read_bytes()
    r = run(["-m", "extract", *BASE, *extra], env, root)
    assert r.returncode == 0, r.stderr
    other = features / f"{name}.h5"
    assert other.is_file(), h5s(features)
    assert plain.read_bytes() == before
    assert (features / "LATEST").read_text().strip() == other.name
    # the plain settings again: found up to date under their own name, nothing replaced
    r = run(["-m", "extract", *BASE, *PRECISE], env, root)
    assert r.returncode == 0 and "already up to date" in r.stdout, r.stderr
    assert plain.read_bytes() == before and other.is_file()
