"""classify.training.data: training subsets and validation splits."""

from __future__ import annotations

import numpy as np
import pytest

from classify.training.data import split_rows, stratified_subset
from featurecache.errors import UserError


# --------------------------------------------------------------------------- classify.training.data


def test_train_size_subset_is_stratified_seeded_and_exact():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])           # unbalanced: 50/25/15/10 %
    a = stratified_subset(labels, 40, seed=1)
    assert len(a) == 40 and len(set(a)) == 40
    np.testing.assert_array_equal(np.bincount(labels[a]), [20, 10, 6, 4])  # proportions kept exactly here
    np.testing.assert_array_equal(a, stratified_subset(labels, 40, seed=1))
    assert not np.array_equal(a, stratified_subset(labels, 40, seed=2))
    np.testing.assert_array_equal(stratified_subset(labels, 200, seed=0), np.arange(200))


def test_train_size_too_large_or_too_small_is_a_user_error():
    labels = np.arange(60) % 3
    with pytest.raises(UserError, match="more than the 60 training rows"):
        stratified_subset(labels, 61, 0)
    with pytest.raises(UserError, match="too small for 3 classes"):
        stratified_subset(labels, 5, 0)


def test_validation_split_is_disjoint_stratified_and_seeded():
    labels = np.arange(200) % 4
    rows = split_rows(labels, 0.25, seed=3)
    assert len(rows.val) == 50 and len(rows.fit) == 150
    assert not set(rows.fit) & set(rows.val)
    assert set(np.bincount(labels[rows.val])) <= {12, 13}   # 50 over 4 classes of equal size
    np.testing.assert_array_equal(rows.val, split_rows(labels, 0.25, seed=3).val)
    sub = split_rows(labels, 0.25, seed=3, train_size=40)
    assert len(sub.fit) + len(sub.val) == 40 and len(sub.val) == 10


def test_smallest_train_size_counts_the_validation_split():
    from classify.training.data import smallest_train_size

    labels = np.arange(300) % 3
    need = smallest_train_size(labels, 0.1)
    assert need == 21  # ceil(0.1 * 21) = 3 validation rows, one per class; 18 to fit
    rows = split_rows(labels, 0.1, seed=0, train_size=need)
    assert len(rows.fit) + len(rows.val) == need
    assert set(labels[rows.fit]) == set(labels[rows.val]) == {0, 1, 2}
    with pytest.raises(UserError, match=f"train_size={need - 1} is too small.*pass train_size={need} or more"):
        split_rows(labels, 0.1, seed=0, train_size=need - 1)
    # unbalanced classes and other fractions: the number given always splits, for any seed
    for seed in range(4):
        labels = np.random.default_rng(seed).integers(0, 4, 200)
        need = smallest_train_size(labels, 0.3)
        for s in range(3):
            rows = split_rows(labels, 0.3, seed=s, train_size=need)
            assert len(rows.fit) + len(rows.val) == need


def test_no_rows_or_one_class_is_refused_before_splitting():
    with pytest.raises(UserError, match="no training rows"):
        split_rows(np.zeros(0, dtype=np.int64), 0.1, seed=0)
    with pytest.raises(UserError, match="all of one class"):
        split_rows(np.zeros(50, dtype=np.int64), 0.1, seed=0)
