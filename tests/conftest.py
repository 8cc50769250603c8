"""Shared test inputs: real fixture images, the larger real subsets, and one tiny cache.

Tests never touch the network: every extraction uses --weights none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

# an empty Keras home: tests never see a user's downloaded data or weights, and write nothing into the repo
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="featurecache-test-keras-"))
# features/LATEST of every test run (subprocesses too) lands here, never in the repo's features/;
# tests of the default ./features folder remove this variable
os.environ["FEATURECACHE_FEATURES_DIR"] = tempfile.mkdtemp(prefix="featurecache-test-features-")
FEATURES_ENV = "FEATURECACHE_FEATURES_DIR"

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CIFAR_FIXTURE = FIXTURES / "cifar-10-batches-py"     # 100 train + 20 test real CIFAR-10 images
PHOTOS_FIXTURE = FIXTURES / "cats-vs-dogs"            # real photos, plus gray/RGBA/EXIF/broken files
SHARED_DATA = ROOT.parent / "shared" / "data"         # larger real subsets, when present
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def cifar_fixture() -> Path:
    return CIFAR_FIXTURE


@pytest.fixture(scope="session")
def photos_fixture() -> Path:
    return PHOTOS_FIXTURE


def invoke_extract(*args):
    """Run the extract CLI in-process with any path-like arguments; returns click's Result."""
    from extract.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(r, exit_code: int | None = None) -> str:
    """The one "Error: ..." line a user mistake gives: the last line on stderr, and no traceback."""
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.output
    assert sum(line.startswith("Error") for line in lines) == 1 and "Traceback" not in r.output, r.output
    if exit_code is not None:
        assert r.exit_code == exit_code, r.output
    return lines[-1]


def run_extract(args: list[str]):
    """Run the extract CLI in-process; returns click's Result."""
    from extract.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def photo_cache(folder: Path) -> Path:
    """The fixture photos extracted (random VGG16 weights) into folder/photos.h5."""
    cache = folder / "photos.h5"
    result = run_extract(["--data-dir", str(PHOTOS_FIXTURE), "--weights", "none", "--out", str(cache)])
    assert result.exit_code == 0, result.output
    return cache


def classify_run(cache: Path, out_dir: Path, model: str = "lr") -> Path:
    """`classify --model MODEL` on a cache, writing into out_dir; the one run record of that model there."""
    from classify.cli import cli as classify_cli

    result = CliRunner().invoke(classify_cli, ["--model", model, "--features", str(cache), "--out-dir", str(out_dir)])
    assert result.exit_code == 0, result.output
    runs = list(Path(out_dir).glob(f"*-{model}-*-run.json"))
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A real cache of the 120 fixture CIFAR-10 images: random VGG16 weights, GAP, 32 px."""
    out = tmp_path_factory.mktemp("features") / "cifar10-vgg16-gap-32px.h5"
    result = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser() -> str | None:
    """Headless Chromium for the report page's checks: $CHROMIUM, or the first of BROWSERS on PATH."""
    return os.environ.get("CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)
