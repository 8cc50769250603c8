"""Few-shot: draws stratified, seeded and from the train split only; the whole test split scored; files written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from classify.commands.fewshot import cli
from classify.workflows.fewshot import draw_shots
from featurecache.cache import read_cache
from featurecache.errors import UserError
from conftest import invoke


def test_draws_are_stratified_seeded_and_refuse_too_many_shots():
    labels = np.repeat(np.arange(4), [30, 12, 25, 7])
    for shots in (1, 5, 7):
        a = draw_shots(labels, shots, seed=3)
        assert (np.bincount(labels[a], minlength=4) == shots).all() and len(np.unique(a)) == len(a)
        np.testing.assert_array_equal(a, draw_shots(labels, shots, seed=3))   # repeatable
        assert not np.array_equal(a, draw_shots(labels, shots, seed=4))       # another seed, other rows
    with pytest.raises(UserError, match="shots=8: class 3 has only 7 training rows"):
        draw_shots(labels, 8, seed=0)


def test_fewshot_run_scores_the_whole_test_split_from_train_rows_only(tiny_cache, tmp_path):
    args = ["--features", tiny_cache, "--shots", "1,3", "--seeds", "2", "--model", "lr", "--model", "knn",
            "--out-dir", tmp_path]
    r = invoke(cli, args)
    assert r.exit_code == 0, r.output
    (js,) = tmp_path.glob("*-fewshot-*.json")
    data = json.loads(js.read_text())
    cache = read_cache(tiny_cache)
    n_train, n_test = len(cache.train.labels), len(cache.test.labels)
    test_sources = set(map(str, cache.test.sources))
    for shots, per_seed in data["draws"].items():
        assert list(per_seed) == ["0", "1"]
        for idx in per_seed.values():
            idx = np.asarray(idx)
            assert ((idx >= 0) & (idx < n_train)).all()   # rows of the train split
            assert (np.bincount(cache.train.labels[idx], minlength=10) == int(shots)).all()
            assert not set(map(str, cache.train.sources[idx])) & test_sources
    # each draw is scored on every test row: accuracies are multiples of 1 / n_test
    for run in data["runs"]:
        assert run["accuracy"] * n_test == pytest.approx(round(run["accuracy"] * n_test))
    (csv_path,) = tmp_path.glob("*-fewshot-*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert [(row["model"], row["shots"]) for row in rows] == [("lr", "1"), ("lr", "3"), ("knn", "1"), ("knn", "3")]
    for row in rows:
        acc = [x["accuracy"] for x in data["runs"] if x["model"] == row["model"] and x["shots"] == int(row["shots"])]
        assert float(row["mean"]) == pytest.approx(np.mean(acc)) and float(row["std"]) == pytest.approx(np.std(acc, ddof=1))
        assert float(row["low"]) <= float(row["mean"]) <= float(row["high"])
    assert list(tmp_path.glob("*-fewshot-*.png"))
    # repeatable: the same command gives the same numbers
    def numbers(d):
        return d["draws"], [{k: v for k, v in x.items() if k != "seconds"} for x in d["runs"]]

    assert invoke(cli, args).exit_code == 0
    assert numbers(json.loads(js.read_text())) == numbers(data)
