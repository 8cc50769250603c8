"""Issue 6: every backbone in the table builds with random weights at its minimum size
and gives the feature width the table states; Xception resizes small images up and says so once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featurecache.backbones import BACKBONES
from featurecache.extractor import Extractor
from featurecache.cache import read_cache
from extract.cli import cli

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar-10-batches-py"


def fixture_images(n: int, size: int) -> np.ndarray:
    """n real CIFAR-10 fixture images, (n, size, size, 3) uint8 (tiled up when size > 32)."""
    from extract.cifar import load_cifar10

    images = load_cifar10(FIXTURE, limit=n).splits["train"].read(0, n).images
    reps = -(-size // 32)
    return np.ascontiguousarray(np.tile(images, (1, reps, reps, 1))[:, :size, :size])


def test_the_table_lists_the_backbones_users_try():
    assert {"vgg16", "vgg19", "resnet50", "densenet121", "xception", "mobilenetv2",
            "efficientnetb0", "convnext_tiny"} <= set(BACKBONES)
    assert BACKBONES["xception"].min_size == 71
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert all(name in help_text for name in BACKBONES)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_builds_at_its_minimum_size_with_the_stated_width(name):
    spec = BACKBONES[name]
    size = spec.min_size
    gap = Extractor(name, "gap", size, "none", seed=0, precision="float32")
    features = gap(fixture_images(2, size))  # (2, channels) float32
    assert features.shape == (2, spec.channels) == (2, gap.feature_dim)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    # two different images, two different rows (random-weight activations can be tiny: compare relatively)
    assert np.abs(features[0] - features[1]).max() > 1e-3 * np.abs(features).max() > 0

    flat = Extractor(name, "flatten", size, "none", seed=0, precision="float32")
    assert flat.model.output_shape == (None, flat.feature_dim)
    assert flat.feature_dim % spec.channels == 0  # channels x the final map's area


def test_xception_at_32_px_is_resized_up_to_71_with_one_note(tmp_path):
    assert Extractor("xception", image_size=32).sizes.model == 71
    assert Extractor("xception", image_size=96).sizes.model == 96
    out = tmp_path / "x.h5"
    r = CliRunner().invoke(cli, ["--data-dir", str(FIXTURE), "--weights", "none", "--backbone", "xception",
                                 "--limit", 3, "--out", str(out)])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stderr.splitlines() if "71" in line and "xception" in line and "config" not in line]
    assert notes == ["xception needs at least 71 px: resizing 32 px images up to 71 px"], r.stderr
    cache = read_cache(out)
    assert cache.train.features.shape == (3, 2048)
    assert cache.attrs["image_size"] == 32 and cache.attrs["model_size"] == 71 and cache.attrs["backbone"] == "xception"
