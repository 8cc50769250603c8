"""Options that were ignored or answered with advice about an option the command lacks:
active learning's --initial with a model that holds out validation rows, robustness's --transfer-from."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from classify.commands import active
from classify.cli import cli as classify_cli
from classify.training.data import smallest_train_size
from classify.commands.robustness import cli as robustness_cli
from conftest import assert_clean_failure, blob_cache, classify_run
from featurecache.cache import read_cache


def run_active(cache, out, *args):
    return CliRunner().invoke(active.cli, ["--features", str(cache), "--out-dir", str(out), "--seeds", "1", *args])


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """300 training rows of 3 well-separated classes: with --val-fraction 0.1 held out, 21 is the
    smallest labelled set that leaves a row of each class on each side."""
    path = blob_cache(tmp_path_factory.mktemp("pool") / "blobs.h5")
    assert smallest_train_size(read_cache(path, features=False).train.labels, 0.1) == 21
    return path


@pytest.mark.parametrize("model_args, why", [(["--C", "auto"], "--C auto"), (["--model", "mlp"], "--model mlp")])
def test_active_initial_too_small_to_hold_out_validation_names_initial_and_its_true_range(pool, tmp_path,
                                                                                          model_args, why):
    for initial in ("2", "20"):
        result = run_active(pool, tmp_path, *model_args, "--initial", initial, "--batch", "5", "--budget", "40")
        assert_clean_failure(result, f"--initial {initial}", why, "pass --initial between 21 and 300")
        assert "--train-size" not in result.output


def test_active_runs_from_the_smallest_initial_it_states(pool, tmp_path):
    result = run_active(pool, tmp_path, "--C", "auto", "--initial", "21", "--batch", "5", "--budget", "31")
    assert result.exit_code == 0 and result.exception is None, result.output
    rows = (next(tmp_path.glob("*-active.csv")).read_text().splitlines())
    assert len(rows) == 1 + 2 * 3   # margin and random, labelled 21, 26, 31


def test_robustness_honours_transfer_from_on_an_lr_run(tiny_cache, tmp_path):
    crafter = classify_run(tiny_cache, tmp_path / "r", "lr")
    other = CliRunner().invoke(classify_cli, ["--model", "lr", "--C", "0.5", "--features", str(tiny_cache),
                                              "--out-dir", str(tmp_path / "r"), "--report-name", "target"])
    assert other.exit_code == 0, other.output
    target = tmp_path / "r" / "target-run.json"
    result = CliRunner().invoke(robustness_cli, ["--run", str(target), "--transfer-from", str(crafter), "--eps", "0,8",
                                                 "--limit", "6", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0 and result.exception is None, result.output
    assert f"images crafted on {crafter} (a transfer attack)" in result.output
    doc = json.loads(next((tmp_path / "out").glob("*-robustness-*.json")).read_text())
    assert doc["settings"]["transfer_attack"]["crafted_on"] == str(crafter)
