"""The classifiers: a name-to-builder table, one function per model.

No TensorFlow here; the MLP's builder imports `classify.mlp` (and Keras) only
when it is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.preprocessing import StandardScaler

from classify import logreg, saved
from classify.config import C_GRID, ClassifyConfig

CURVE_ROWS = 5000  # training rows scored at each curve point (all of them when fewer)


@dataclass
class Trained:
    """A fitted model, as the rest of classify sees it."""

    predict_proba: Callable[[np.ndarray], np.ndarray]  # raw features (n, D) float32 -> (n, C)
    save: Callable[[Path], None]                       # writes the model in saved.FORMATS[format]
    format: str                                        # "linear" | "forest" | "keras"
    # progress curves: x_label, x, train_loss, val_loss, train_acc, val_acc (equal-length lists)
    history: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)        # what training chose or found (C, sweep, epochs run)


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, None))))


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y))


class _Curves:
    """Loss and accuracy on (a sample of) the training rows and on the validation rows, point by point."""

    def __init__(self, x_label: str, X_fit, y_fit, X_val, y_val, seed: int):
        take = np.random.default_rng(seed).permutation(len(y_fit))[:CURVE_ROWS]
        self.fit_rows, self.val_rows = (X_fit[take], y_fit[take]), (X_val, y_val)
        self.history = {"x_label": x_label, "x": [], "train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}

    def add(self, x: int, proba_of: Callable[[np.ndarray], np.ndarray]) -> None:
        self.history["x"].append(int(x))
        for split, (X, y) in (("train", self.fit_rows), ("val", self.val_rows)):
            p = proba_of(X)
            self.history[f"{split}_loss"].append(log_loss(y, p))
            self.history[f"{split}_acc"].append(accuracy(y, p))


# --------------------------------------------------------------------------- logistic regression


def choose_C(X_fit, y_fit, X_val, y_val, grid, max_iter: int) -> tuple[float, list[dict]]:
    """Fit one LR per C on the fit rows and keep the best validation accuracy (lower val loss breaks ties).

    Sees training and validation rows only. Returns (C, sweep), sweep = [{C, val_accuracy, val_loss}].
    """
    scaler = StandardScaler().fit(X_fit)
    Xf, Xv = scaler.transform(X_fit), scaler.transform(X_val)
    n_classes = int(max(y_fit.max(), y_val.max())) + 1
    sweep, previous = [], None
    for C in sorted(grid):  # weakest regularisation last, each fit starting from the previous solution
        previous = logreg.fit(Xf, y_fit, C, max_iter, start=previous)
        p = saved.expand(logreg.proba(Xv, previous.params(), len(previous.classes)), previous.classes, n_classes)
        sweep.append({"C": float(C), "val_accuracy": accuracy(y_val, p), "val_loss": log_loss(y_val, p)})
    best = max(sweep, key=lambda s: (s["val_accuracy"], -s["val_loss"]))
    return best["C"], sweep


def expand_proba(model, X, n_classes: int) -> np.ndarray:
    return saved.expand(model.predict_proba(X), model.classes_, n_classes)


CURVE_POINTS = 20  # solver iterations scored for the LR curves, evenly spaced, the last one included


def fit_lr(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Multinomial logistic regression on standardised features (`classify.logreg`); with curves,
    loss and accuracy are drawn at up to 20 of the solver's own iterations."""
    details = {}
    C = cfg.C
    if C == "auto":
        C, details["C_sweep"] = choose_C(X_fit, y_fit, X_val, y_val, C_GRID, cfg.max_iter)
    details["C"] = float(C)
    scaler = StandardScaler().fit(X_fit)
    Xf = scaler.transform(X_fit)
    model = logreg.fit(Xf, y_fit, C, cfg.max_iter, path_points=CURVE_POINTS if curves else 0)
    k = len(model.classes)
    track = None
    if curves:
        track = _Curves("solver iteration", Xf, y_fit, scaler.transform(X_val), y_val, cfg.seed)
        for i in np.unique(np.linspace(0, len(model.path) - 1, CURVE_POINTS).round().astype(int)):
            iteration, w = model.path[i]
            track.add(iteration, lambda X, w=w: saved.expand(logreg.proba(X, w, k), model.classes, n_classes))
    details.update(iterations=model.iterations, converged=model.converged)
    weights = {"coef": model.coef, "intercept": model.intercept, "classes": model.classes,
               "mean": scaler.mean_, "scale": scaler.scale_}
    return Trained(
        predict_proba=lambda X: saved.linear_proba(np.asarray(X, dtype=np.float64), weights, n_classes),
        save=lambda path: saved.save_linear(path, weights),
        format="linear",
        history=track.history if track else {},
        details=details,
    )


# --------------------------------------------------------------------------- random forest


def fit_rf(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Random forest on raw features (trees need no scaling), on all cores; with curves, the forest
    is scored after its first n/10, 2n/10, ... trees (the forest of its first k trees is exactly the
    forest `n_estimators=k` with the same seed would grow: scikit-learn seeds tree i alike both ways)."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth, n_jobs=-1,
                                   random_state=cfg.seed)
    model.fit(X_fit, y_fit)
    track = None
    if curves:
        track = _Curves("trees", X_fit, y_fit, X_val, y_val, cfg.seed)
        sums = _TreeSums(model, n_classes)
        for n in np.unique(np.linspace(cfg.n_estimators / 10, cfg.n_estimators, 10).round().astype(int).clip(1)):
            track.add(n, lambda X, n=n: sums.proba(X, int(n)))
    return Trained(lambda X: expand_proba(model, X, n_classes), lambda path: saved.save_forest(path, model), "forest",
                   track.history if track else {}, {"trees": len(model.estimators_)})


class _TreeSums:
    """Probabilities of the forest's first n trees on a fixed set of rows, for growing n, scoring
    each tree once (a forest's probability is the mean of its trees')."""

    def __init__(self, model, n_classes: int):
        self.model, self.n_classes = model, n_classes
        self.sums: dict[int, tuple[int, np.ndarray]] = {}  # id(rows) -> (trees summed, (n, k) sum)

    def proba(self, X: np.ndarray, n: int) -> np.ndarray:
        done, total = self.sums.get(id(X), (0, 0.0))
        assert n >= done, "trees are added, never removed"
        X32 = np.asarray(X, dtype=np.float32)
        for tree in self.model.estimators_[done:n]:
            total = total + tree.predict_proba(X32)  # (n_rows, len(classes_))
        self.sums[id(X)] = (n, total)
        return saved.expand(total / n, self.model.classes_, self.n_classes)


# --------------------------------------------------------------------------- Keras MLP


def fit_mlp(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Dense/ReLU/Dropout layers on standardised features, SGD (or Adam) with exponential decay,
    early stopping on validation loss keeping the best weights. Imports Keras."""
    from classify.mlp import fit_mlp as fit

    return fit(X_fit, y_fit, X_val, y_val, n_classes, cfg)


# name -> builder(X_fit (n, D), y_fit (n,), X_val, y_val, n_classes, cfg, curves) -> Trained;
# builders see training and validation rows only, never the test rows.
MODELS: dict[str, Callable[..., Trained]] = {
    "lr": fit_lr,
    "rf": fit_rf,
    "mlp": fit_mlp,
}
