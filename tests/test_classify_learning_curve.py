"""classify.workflows.learning_curve on bad sizes: no --train-size option, a cache no larger than --min-size, and a
--min-size too small to split, each refused with one line naming --min-size and the number that works."""

from __future__ import annotations

import numpy as np
import pytest

from featurecache.errors import UserError

from classify.commands import learning_curve
from conftest import assert_clean_failure, invoke


def run(blobs, out, *args):
    return invoke(learning_curve.cli, ["--model", "lr", "--features", blobs, "--out-dir", out, "--points", "2",
                                       "--seeds", "1", *args])


def test_train_size_is_not_an_option_here(blobs, tmp_path):
    assert_clean_failure(run(blobs, tmp_path, "--train-size", "50"), "--train-size", code=2)
    assert "train_size" not in {p.name for p in learning_curve.cli.params}


@pytest.mark.parametrize("min_size", ["300", "1000"])
def test_a_cache_no_larger_than_min_size_is_refused(blobs, tmp_path, min_size):
    assert_clean_failure(run(blobs, tmp_path, "--min-size", min_size), f"--min-size {min_size}", "300",
                         "pass a --min-size below 300")
    assert not list(tmp_path.glob("*learning-curve*"))


def test_min_size_too_small_names_min_size_and_the_smallest_that_works(blobs, tmp_path):
    result = run(blobs, tmp_path, "--min-size", "2")
    assert_clean_failure(result, "--min-size 2", "pass --min-size 21 or more")
    assert "--train-size" not in result.output
    result = run(blobs, tmp_path, "--min-size", "21")
    assert result.exit_code == 0, result.output
    (csv,) = tmp_path.glob("blobs-lr-*-learning-curve.csv")
    assert csv.read_text().splitlines()[1].startswith("21,")


def test_every_suggested_size_works_even_near_the_whole_cache():
    """200 rows of 10 classes: a subset of 191..199 rows would leave fewer than 10 rows out, which no
    stratified split allows; the smallest size suggested and every size drawn must be possible.
    With 100 rows no subset at all can be validated (10 held out of at least 91), only every row."""
    from classify.training.data import smallest_train_size, split_rows
    from classify.workflows.learning_curve import sizes_for

    labels = np.repeat(np.arange(10), 20)
    need = smallest_train_size(labels, 0.1)
    assert need == 91
    for size in sizes_for(200, need, 12, 10):
        split_rows(labels, 0.1, 0, size)  # none raises
    assert max(s for s in sizes_for(200, need, 40, 10) if s < 200) <= 190
    with pytest.raises(UserError, match="pass at most 190"):
        split_rows(labels, 0.1, 0, 195)
    assert smallest_train_size(np.repeat(np.arange(10), 10), 0.1) == 100
