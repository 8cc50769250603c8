"""`python -m bench.augment` end to end on the fixture images (random VGG16 weights); no timings asserted."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import CIFAR_FIXTURE


@pytest.mark.slow
def test_bench_augment_writes_both_tables(tmp_path):
    from bench.augment import cli

    r = CliRunner().invoke(cli, ["--data-dir", str(CIFAR_FIXTURE), "--backbone", "vgg16",
                                 "--views", "0,1", "--models", "lr", "--seed", "0",
                                 "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "augment-cifar-10-batches-py.json").read_text())
    assert [e["views"] for e in report["extraction"]] == [0, 1]
    assert report["extraction"][1]["forward_passes"] == 2 * report["extraction"][0]["forward_passes"]
    ways = [(a["views"], a["tta"]) for a in report["accuracy"]]
    assert ways == [("none", False), ("all", False), ("all", True)]
    fit = {a["views"]: (a["fit_images"], a["fit_rows"]) for a in report["accuracy"]}
    assert fit["all"][1] == 2 * fit["all"][0] and fit["none"][1] == fit["none"][0]
    assert "| lr | all | yes |" in (tmp_path / "augment-cifar-10-batches-py.md").read_text()


def test_bench_augment_refuses_an_unknown_model(tmp_path):
    from bench.augment import cli

    r = CliRunner().invoke(cli, ["--data-dir", str(CIFAR_FIXTURE), "--models", "lr,svm", "--out-dir", str(tmp_path)])
    assert r.exit_code == 1 and "--models lr,svm" in r.output
    assert not (tmp_path / "augment-caches").exists()
