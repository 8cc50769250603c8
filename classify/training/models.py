"""What every model's fit shares: the training-row check, scores, curve points, streamed statistics.

The models themselves, one module each, are in `classify.training.specs.SPECS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import accuracy_score, log_loss
from sklearn.preprocessing import StandardScaler

from classify.runs import saved
from featurecache.errors import SettingError, UserError

if TYPE_CHECKING:
    from classify.training.data import Stream

CURVE_ROWS = 5000  # training rows scored at each curve point (all of them when fewer)


def scores(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """(log loss, accuracy) of probabilities (n, C) over every class of the cache, labels (n,)."""
    return (float(log_loss(y, proba, labels=range(proba.shape[1]))),
            float(accuracy_score(y, proba.argmax(axis=1))))


def check_training_rows(y_fit: np.ndarray) -> None:
    """Refuse, before fitting, training rows no classifier can learn from."""
    if len(y_fit) == 0:
        raise SettingError("there are no training rows to fit; use a cache with a training split or a larger `train_size`")
    if len(np.unique(y_fit)) < 2:
        raise SettingError(f"the {len(y_fit)} training rows are all of one class; a classifier needs at least two: "
                           "use a cache (or a `train_size`) with rows of two or more classes")


def curve_rows(X_fit, y_fit, seed: int, limit: int = CURVE_ROWS):
    """Up to `limit` of the fit rows (a seeded sample), scored at each curve point."""
    take = np.sort(np.random.default_rng(seed).permutation(len(y_fit))[:limit])
    return X_fit[take], y_fit[take]


def new_history(x_label: str) -> dict:
    return {"x_label": x_label, "x": [], "train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}


def add_point(history: dict, x, train: tuple[float, float], val: tuple[float, float]) -> None:
    """Append one curve point: train and val are (log loss, accuracy)."""
    history["x"].append(x)
    for split, (loss, acc) in (("train", train), ("val", val)):
        history[f"{split}_loss"].append(loss)
        history[f"{split}_acc"].append(acc)


# --------------------------------------------------------------------------- streaming (matrix > --max-memory)


def stream_scaler(stream: Stream) -> StandardScaler:
    """Standardisation statistics of the fit rows (views included) from one streaming pass."""
    scaler = StandardScaler()
    for X, _ in stream.fit_chunks():
        scaler.partial_fit(X)
    scaler.scale_[scaler.scale_ == 0] = 1.0
    return scaler


def stream_scores(chunks, weights: list[dict], n_classes: int) -> list[tuple[float, float]]:
    """(log loss, accuracy) of each linear model in `weights` over streamed (X, y) chunks."""
    probas, ys = [[] for _ in weights], []
    for X, y in chunks:
        ys.append(y)
        for out, w in zip(probas, weights):
            out.append(saved.linear_proba(np.asarray(X, np.float64), w, n_classes))
    y = np.concatenate(ys)
    return [scores(y, np.concatenate(p)) for p in probas]


