"""Logistic regression: its settings, its fits (lbfgs in memory, SGD streamed), its model file.

lbfgs multinomial logistic regression on standardised features; the fitted model is saved as plain
arrays (`classify.runs.saved.save_linear`) and scored by `saved.linear_proba`, right after training
and after loading alike. As a Keras head it is one Dense layer of logits (`keras_head`).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from classify.runs import saved
from classify.runs.trained import Trained
from classify.training.modelspec import ModelSpec, check_int, check_real
from classify.training.models import (CURVE_ROWS, add_point, check_training_rows, curve_rows, new_history, scores,
                                      stream_scaler, stream_scores)
from featurecache.cache import iter_rows
from featurecache.errors import UserError

if TYPE_CHECKING:
    from classify.training.config import ClassifyConfig
    from classify.training.data import Stream

C_GRID = tuple(10.0 ** k for k in range(-4, 2))  # C="auto": 1e-4 .. 1e1, chosen on the validation split


@dataclass
class LRParams:
    C: float | str = 0.01                # inverse regularisation strength, or "auto"; strong by default:
                                         # best on the 6,000-image subset, and lbfgs converges in ~100 steps
    max_iter: int = 300                  # lbfgs iterations at most (for each C); SGD passes when streamed

    def __post_init__(self) -> None:
        check_real("C", self.C, 0, low_open=True, auto=True)
        check_int("max_iter", self.max_iter)


# --------------------------------------------------------------------------- logistic regression


def lr_pipeline(C: float, max_iter: int) -> Pipeline:
    """Standardise (training statistics), then multinomial logistic regression by lbfgs; warm_start
    lets a C sweep begin each fit from the previous one's solution."""
    return Pipeline([("scale", StandardScaler()),
                     ("lr", LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, warm_start=True))])


def lr_weights(pipe: Pipeline) -> dict:
    """The arrays `saved.save_linear` writes: coef (k, D) or (1, D) for two classes, intercept,
    classes, and the scaler's mean and scale (D,)."""
    scaler, lr = pipe.named_steps["scale"], pipe.named_steps["lr"]
    return {"coef": lr.coef_, "intercept": lr.intercept_, "classes": lr.classes_,
            "mean": scaler.mean_, "scale": scaler.scale_}


def fit_lr(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Logistic regression on standardised features (`lr_pipeline`).

    C fixed: one fit. C "auto": one fit per C of C_GRID, smallest first, each starting from the
    last; the fit with the best validation accuracy is kept (lower validation loss breaks ties).
    Sees the fit and validation rows only. With curves, training and validation loss and accuracy
    are recorded at each C fitted (history x = C, "chosen" = the C kept)."""
    check_training_rows(y_fit)
    sweep = cfg.C == "auto"
    grid = sorted(C_GRID) if sweep else [float(cfg.C)]
    pipe = lr_pipeline(grid[0], cfg.max_iter)
    train_rows = curve_rows(X_fit, y_fit, cfg.seed)
    history, found, best, kept = new_history("C"), [], None, None
    for C in grid:
        pipe.set_params(lr__C=C)
        # BLAS on one thread: lbfgs alternates thin (n, D) x (D, k) products with serial steps, and
        # BLAS threads waiting between products slow the fit down, most on a busy machine
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported in details["converged"]
            pipe.fit(X_fit, y_fit)
        converged = bool(np.max(pipe.named_steps["lr"].n_iter_) < cfg.max_iter)
        if not (sweep or curves):
            kept = pipe
            found.append({"C": float(C), "converged": converged})
            break
        proba_of = lambda X: saved.linear_proba(np.asarray(X, np.float64), lr_weights(pipe), n_classes)  # noqa: E731
        val_loss, val_acc = scores(y_val, proba_of(X_val))
        found.append({"C": float(C), "val_accuracy": val_acc, "val_loss": val_loss, "converged": converged})
        if curves:
            add_point(history, float(C), scores(train_rows[1], proba_of(train_rows[0])), (val_loss, val_acc))
        if best is None or (val_acc, -val_loss) > (best["val_accuracy"], -best["val_loss"]):
            best, kept = found[-1], copy.deepcopy(pipe)
    chosen = best or found[-1]
    details = {"C": chosen["C"], "converged": chosen["converged"]}
    if sweep:
        details["C_sweep"] = [{k: s[k] for k in ("C", "val_accuracy", "val_loss")} for s in found]
    if curves:
        history["chosen"] = chosen["C"]
    if curves and not sweep:
        start = time.perf_counter()
        history = neighbour_curve(history, (X_fit, y_fit), train_rows, (X_val, y_val), n_classes, cfg, kept)
        history["curve_seconds"] = round(time.perf_counter() - start, 3)   # not part of the model's fit time
    return linear_trained(lr_weights(kept), n_classes, history if curves else {}, details)


NEIGHBOURS = (-1.0, -0.5, 0.5, 1.0)  # a given C's curve: C * 10**k for these k, beside C itself
NEIGHBOUR_TOL = 1e-3   # lbfgs tolerance of those fits (the model's own keeps 1e-4): they draw a figure only


def neighbour_curve(history: dict, fit: tuple, train_rows: tuple, val: tuple, n_classes: int,
                    cfg: ClassifyConfig, start: Pipeline | None = None) -> dict:
    """The curve of a given C: `history` (its one point) with the fits of C * 10**k (k in NEIGHBOURS)
    on the same fit rows, scored on the same training sample and validation rows; the given C stays
    the marked point. The extra fits serve the figure only: the model kept is the given C's."""
    given = history["chosen"]
    points = {given: (history["train_loss"][0], history["train_acc"][0], history["val_loss"][0], history["val_acc"][0])}
    for side in (sorted(k for k in NEIGHBOURS if k < 0)[::-1], sorted(k for k in NEIGHBOURS if k > 0)):
        # each side walks away from the given C, every fit starting from the last (the given C's
        # solution first, when `start` has it): a few lbfgs steps each instead of a cold start
        pipe = copy.deepcopy(start) if start is not None else lr_pipeline(given, cfg.max_iter)
        for C in (given * 10.0 ** k for k in side):
            pipe.set_params(lr__C=C, lr__tol=NEIGHBOUR_TOL)
            with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
                warnings.simplefilter("ignore", ConvergenceWarning)
                pipe.fit(*fit)
            proba_of = lambda X: saved.linear_proba(np.asarray(X, np.float64), lr_weights(pipe), n_classes)  # noqa: E731
            points[C] = (*scores(train_rows[1], proba_of(train_rows[0])), *scores(val[1], proba_of(val[0])))
    out = new_history("C")
    for C in sorted(points):
        add_point(out, float(C), points[C][:2], points[C][2:])
    out["chosen"] = given
    out["mark_label"] = f"given C = {given:g} (--C)"
    return out


def linear_trained(weights: dict, n_classes: int, history: dict, details: dict) -> Trained:
    """A fitted linear model (coef, intercept, classes, mean, scale) as classify sees it: one inference
    path (saved.linear_proba) for test scoring now and for `predict` later."""
    return Trained(
        predict_proba=lambda X: saved.linear_proba(np.asarray(X, dtype=np.float64), weights, n_classes),
        save=lambda path: saved.save_linear(path, weights),
        format="linear",
        history=history,
        details=details,
    )


SGD_STEP = 1e-3   # streaming LR's constant learning rate (standardised features, averaged iterates)
SGD_TOL = 1e-3    # a pass that lowers no model's validation loss by this much counts towards --patience


def fit_lr_stream(stream: Stream, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Logistic regression streamed from the cache: standardisation statistics from one pass, then
    scikit-learn's SGDClassifier(loss="log_loss") by `partial_fit`, one chunk at a time, in a seeded
    order each pass. The L2 penalty matches lbfgs's C (alpha = 1 / (C n)); with C "auto" one model
    per C of C_GRID learns from the same chunks. After each pass every model is scored on the
    validation rows (streamed); its best pass is kept, and passes stop after --patience without a
    validation loss lower by SGD_TOL or at --max-iter. The run record says solver "sgd" (one-vs-rest log
    loss; saved and scored as the softmax of its scores, which keeps its predicted class)."""
    from sklearn.linear_model import SGDClassifier

    y_all = stream.fit_labels
    check_training_rows(y_all)
    scaler = stream_scaler(stream)
    sweep = cfg.C == "auto"
    grid = sorted(C_GRID) if sweep else [float(cfg.C)]
    classes = np.unique(y_all)
    # averaged SGD with a constant step on standardised rows: within a point of lbfgs on the CIFAR-10
    # subset, where scikit-learn's default "optimal" step, which shrinks as 1 / (alpha t), stayed 2.5 points below
    models = [SGDClassifier(loss="log_loss", alpha=1.0 / (C * len(y_all)), learning_rate="constant", eta0=SGD_STEP,
                            average=True, random_state=cfg.seed)
              for C in grid]
    sample = np.sort(np.random.default_rng(cfg.seed).permutation(stream.fit)[:CURVE_ROWS])  # curve rows

    def weights(m):
        return {"coef": m.coef_.copy(), "intercept": m.intercept_.copy(), "classes": m.classes_,
                "mean": scaler.mean_, "scale": scaler.scale_}

    best = [None] * len(grid)       # per C: (val_loss, val_acc, pass, weights)
    history, waited, passes = new_history("pass"), 0, 0
    per_pass = []
    for epoch in range(cfg.max_iter):
        for X, y in stream.fit_chunks(seed=cfg.seed + epoch):
            Xs = scaler.transform(X)                   # (k, D) float64
            for m in models:
                m.partial_fit(Xs, y, classes=classes)
        passes = epoch + 1
        ws = [weights(m) for m in models]
        val = stream_scores(stream.val_chunks(), ws, n_classes)
        sample_chunks = ((c.features, c.labels) for c in iter_rows(stream.source, "train", sample, stream.chunk))
        train = stream_scores(sample_chunks, ws, n_classes) if curves else [None] * len(ws)
        per_pass.append((train, val))
        improved = False
        for i, ((loss, acc), w) in enumerate(zip(val, ws)):
            if best[i] is None or loss < best[i][0]:
                # progress is a validation loss lower by SGD_TOL (scikit-learn's SGD `tol`); any lower one is kept
                improved = improved or best[i] is None or loss < best[i][0] - SGD_TOL
                best[i] = (loss, acc, passes, w)
        waited = 0 if improved else waited + 1
        if waited >= cfg.patience:
            break
    chosen = max(range(len(grid)), key=lambda i: (best[i][1], -best[i][0]))
    if curves:
        for p, (train, val) in enumerate(per_pass, start=1):
            add_point(history, p, train[chosen], val[chosen])
        history["chosen"] = best[chosen][2]   # the pass whose weights are kept
        history["mark_label"] = f"kept pass {best[chosen][2]} (lowest validation loss at C = {grid[chosen]:g})"
    details = {"C": grid[chosen], "solver": "sgd", "epochs_run": passes, "best_pass": best[chosen][2],
               "budget_bytes": stream.budget, "chunk_rows": stream.chunk}
    if sweep:
        details["C_sweep"] = [{"C": C, "val_accuracy": b[1], "val_loss": b[0]} for C, b in zip(grid, best)]
    return linear_trained(best[chosen][3], n_classes, history if curves else {}, details)


# --------------------------------------------------------------------------- model file and Keras head


def load(path: Path, n_classes: int):
    """An LR model file -> predict_proba (raw features (n, D) -> (n, C))."""
    w = saved.read_linear(path)
    return lambda x: saved.linear_proba(np.asarray(x, dtype=np.float64), w, n_classes)


UNSEEN_LOGIT = -1e9  # a class the LR never saw in training: probability 0, as `saved.expand` gives


def linear_logits_weights(w: dict, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """An LR model's arrays (see `saved.read_linear`) -> Dense kernel (D, C) and bias (C,) float32 whose
    softmax equals `saved.linear_proba`: standardisation folded in, binary and unseen classes expanded."""
    coef = np.asarray(w["coef"], dtype=np.float64) / np.asarray(w["scale"], dtype=np.float64)   # (k, D)
    bias = np.asarray(w["intercept"], dtype=np.float64) - coef @ np.asarray(w["mean"], dtype=np.float64)  # (k,)
    if coef.shape[0] == 1:  # binary: sigmoid(z) == softmax((0, z))[1]
        coef = np.concatenate([np.zeros_like(coef), coef])
        bias = np.concatenate([[0.0], bias])
    kernel = np.zeros((coef.shape[1], n_classes))
    full_bias = np.full(n_classes, UNSEEN_LOGIT)
    classes = np.asarray(w["classes"], dtype=np.int64)
    kernel[:, classes] = coef.T
    full_bias[classes] = bias
    return kernel.astype(np.float32), full_bias.astype(np.float32)


def logits_layer(weights: dict, n_classes: int, features, keras, source: str = "this LR"):
    """LR weights (`lr_weights`, or a saved file's `saved.read_linear`) as one Dense layer on `features`
    ((None, D) float32 tensor): (None, C) float32 logits whose softmax is `saved.linear_proba`. Used
    for a saved run's head, and open to a head fitted in Keras (a softmax layer trained further)."""
    dim = features.shape[-1]
    kernel, bias = linear_logits_weights(weights, n_classes)
    if kernel.shape[0] != dim:
        raise UserError(f"{source} takes {kernel.shape[0]}-wide features, but its cache's extractor gives "
                        f"{dim}; re-run classify on this cache")
    dense = keras.layers.Dense(n_classes, dtype="float32", name="lr_logits")
    logits = dense(features)
    dense.set_weights([kernel, bias])
    return logits


def keras_head(path: Path, n_classes: int, features, keras):
    """The saved LR as Keras layers on `features` (`logits_layer`)."""
    return logits_layer(saved.read_linear(path), n_classes, features, keras, source=str(path))


SPEC = ModelSpec(
    name="lr", title="logistic regression", params=LRParams, fit=fit_lr, fit_stream=fit_lr_stream,
    format="linear", suffix=".h5", load=load, keras_head=keras_head,
)
