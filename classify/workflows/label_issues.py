"""Likely label errors among a cache's training rows: out-of-fold probabilities, then cleanlab.

Each training row's class probabilities come from a logistic regression that never saw it
(seeded, stratified K-fold; the same standardised lbfgs LR as `classify --model lr`).
cleanlab's `find_label_issues` then flags the rows whose given label the features disagree with
(confident learning), ranked by self-confidence: the lowest probability of the given label first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from classify.training.lr import LRParams, lr_pipeline
from featurecache.errors import UserError

FOLDS = 5


@dataclass
class LabelIssues:
    proba: np.ndarray      # (N, C) out-of-fold probabilities of every training row
    ranked: np.ndarray     # (M,) training rows cleanlab flags, most likely label error first
    folds: int
    C: float


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, n_classes: int, folds: int = FOLDS, seed: int = 0,
                      C: float = LRParams.C, max_iter: int = LRParams.max_iter) -> np.ndarray:
    """(N, C) probabilities of each row from a model fitted on the other folds."""
    counts = np.bincount(y, minlength=n_classes)
    smallest = counts[counts > 0].min() if len(y) else 0
    if smallest < 2 or (counts > 0).sum() < 2:
        raise UserError(f"label errors need at least two classes with two training rows each; the cache has "
                        f"class counts {counts.tolist()}")
    splitter = StratifiedKFold(n_splits=int(min(folds, smallest)), shuffle=True, random_state=seed)
    proba = np.zeros((len(y), n_classes), dtype=np.float64)
    for fit, held in splitter.split(X, y):
        with threadpool_limits(1, "blas"):   # lbfgs on small problems: one BLAS thread is fastest
            pipe = lr_pipeline(C, max_iter).fit(X[fit], y[fit])
        proba[np.ix_(held, pipe.classes_)] = pipe.predict_proba(X[held])
    return proba


def find_issues(X: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0, folds: int = FOLDS) -> LabelIssues:
    """Out-of-fold probabilities and cleanlab's ranked label issues for training rows X (N, D), y (N,)."""
    from cleanlab.filter import find_label_issues

    proba = out_of_fold_proba(X, y, n_classes, folds, seed)
    present = np.flatnonzero(np.bincount(y, minlength=n_classes))
    # cleanlab wants every class of the probability columns present among the labels
    remap = np.full(n_classes, -1)
    remap[present] = np.arange(len(present))
    sub = proba[:, present]
    sub = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)
    ranked = find_label_issues(remap[y], sub, return_indices_ranked_by="self_confidence")
    return LabelIssues(proba, np.asarray(ranked, dtype=np.int64), min(folds, int(np.bincount(y)[present].min())),
                       float(LRParams.C))
