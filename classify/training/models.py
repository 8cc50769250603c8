"""The classifiers: a name-to-builder table, one function per model.

No TensorFlow here; the MLP's builder imports `classify.training.mlp` (and Keras) only
when it is called.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from classify.runs import saved
from classify.training.config import C_GRID, RF_MIN_SAMPLES, ClassifyConfig
from classify.training.data import Stream
from classify.training.knn import fit_knn, fit_knn_stream
from classify.runs.trained import Trained
from featurecache.cache import iter_rows
from featurecache.errors import SettingError

CURVE_ROWS = 5000  # training rows scored at each curve point (all of them when fewer)
RF_CURVE_ROWS = 1000  # the forest's: every point walks them through every tree


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
        history = neighbour_curve(history, (X_fit, y_fit), train_rows, (X_val, y_val), n_classes, cfg)
        history["curve_seconds"] = round(time.perf_counter() - start, 3)   # not part of the model's fit time
    return linear_trained(lr_weights(kept), n_classes, history if curves else {}, details)


NEIGHBOURS = (-1.0, -0.5, 0.5, 1.0)  # a given C's curve: C * 10**k for these k, beside C itself


def neighbour_curve(history: dict, fit: tuple, train_rows: tuple, val: tuple, n_classes: int,
                    cfg: ClassifyConfig) -> dict:
    """The curve of a given C: `history` (its one point) with the fits of C * 10**k (k in NEIGHBOURS)
    on the same fit rows, scored on the same training sample and validation rows; the given C stays
    the marked point. The extra fits serve the figure only: the model kept is the given C's."""
    given = history["chosen"]
    points = {given: (history["train_loss"][0], history["train_acc"][0], history["val_loss"][0], history["val_acc"][0])}
    pipe = lr_pipeline(given, cfg.max_iter)
    for C in sorted(given * 10.0 ** k for k in NEIGHBOURS):
        pipe.set_params(lr__C=C)
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


# --------------------------------------------------------------------------- random forest


def bootstrap_rows(n: int, share: float | None) -> int:
    """Rows each tree's bootstrap sample draws: `share` of n (--max-samples), or by default 10% of n
    but at least RF_MIN_SAMPLES; never more than n, never fewer than 1."""
    want = round(share * n) if share is not None else max(RF_MIN_SAMPLES, round(0.1 * n))
    return int(min(n, max(1, want)))


def forest_curve(arrays: dict, X, y, points, n_classes: int) -> list[tuple[float, float]]:
    """(log loss, accuracy) of the forest of its first k trees for each k of `points` (ascending):
    every tree's leaves walked once, the class fractions summed tree by tree, in the order
    `saved.leaf_mean` sums them, and scored as each k is reached."""
    leaves = saved.forest_leaves(X, arrays)   # (n, T)
    total, out, want = np.zeros((len(leaves), arrays["value"].shape[1])), [], list(points)
    for t in range(max(want)):
        total += arrays["value"][leaves[:, t]]
        if t + 1 == want[len(out)]:
            out.append(scores(y, saved.expand(total / (t + 1), arrays["classes"], n_classes)))
    return out


def fit_rf(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Random forest on raw features (trees need no scaling), on all cores, converted once to the
    node arrays it is saved as; every score, the curves' and the test rows', comes from those
    arrays through `saved.forest_proba`, as a loaded model's does. With curves, the forest is
    scored after its first n/10, 2n/10, ... trees (the forest of its first k trees is exactly the
    forest `n_estimators=k` with the same seed would grow: scikit-learn seeds tree i alike)."""
    from sklearn.ensemble import RandomForestClassifier

    check_training_rows(y_fit)
    sample = bootstrap_rows(len(y_fit), cfg.max_samples)
    model = RandomForestClassifier(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth, n_jobs=-1,
                                   random_state=cfg.seed, max_samples=sample if sample < len(y_fit) else None)
    model.fit(X_fit, y_fit)
    arrays = saved.forest_arrays(model)
    history = {}
    if curves:
        history = new_history("trees")
        # a forest fits its own rows almost perfectly: RF_CURVE_ROWS of them show that as well as 5,000
        train_rows = curve_rows(X_fit, y_fit, cfg.seed, RF_CURVE_ROWS)
        points = np.unique(np.linspace(cfg.n_estimators / 10, cfg.n_estimators, 10).round().astype(int).clip(1))
        train, val = (forest_curve(arrays, X, y, points, n_classes) for X, y in (train_rows, (X_val, y_val)))
        for k, t, v in zip(points, train, val):
            add_point(history, int(k), t, v)
    return Trained(
        predict_proba=lambda X: saved.forest_proba(X, arrays, n_classes),
        save=lambda path: saved.save_forest(path, arrays),
        format="forest",
        history=history,
        details={"trees": len(arrays["roots"]), "bootstrap_rows": sample},
    )


# --------------------------------------------------------------------------- Keras MLP


def fit_mlp(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Dense/ReLU/Dropout layers on standardised features, SGD (or Adam) with exponential decay,
    early stopping on validation loss keeping the best weights. Imports Keras."""
    check_training_rows(y_fit)
    from classify.training.mlp import fit_mlp as fit

    return fit(X_fit, y_fit, X_val, y_val, n_classes, cfg)


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


RF_COPIES = 3  # the subsample, scikit-learn's own float32 view of it, the bootstrap's working set


def fit_rf_stream(stream: Stream, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Random forest on a stratified, seeded subsample of the fit images (with their views) that fits
    the budget (trees need every row in memory); the validation rows for its curves likewise.
    The run record's details say how many rows it used ("subsample"; its metrics count only those)."""
    from classify.training.data import stratified_subset

    y_images = stream.labels[stream.fit]
    check_training_rows(y_images)
    row_bytes = stream.dim * 4 * RF_COPIES
    n_images = max(2 * len(np.unique(y_images)), stream.budget // (row_bytes * (1 + stream.views)))
    n_images = min(n_images, len(stream.fit))
    picked = stream.fit[stratified_subset(y_images, n_images, cfg.seed)] if n_images < len(stream.fit) else stream.fit
    X_fit, y_fit = stream.load(np.sort(picked), views=bool(stream.views))
    n_val = min(len(stream.val), CURVE_ROWS, max(1, stream.budget // (row_bytes * 4)))
    val = np.sort(np.random.default_rng(cfg.seed).permutation(stream.val)[:n_val])
    X_val, y_val = stream.load(val)
    trained = fit_rf(X_fit, y_fit, X_val, y_val, n_classes, cfg, curves)
    trained.details["subsample"] = {"rows": int(len(y_fit)), "of": int(len(stream.fit_labels)),
                                    "images": int(len(picked)), "val_rows": int(len(y_val)),
                                    "budget": int(stream.budget)}
    return trained


def fit_mlp_stream(stream: Stream, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """The MLP trained through a tf.data pipeline over the cache file (`classify.training.mlp.fit_mlp_stream`)."""
    check_training_rows(stream.fit_labels)
    from classify.training.mlp import fit_mlp_stream as fit

    scaler = stream_scaler(stream)
    return fit(stream, scaler.mean_, scaler.var_, n_classes, cfg)


# name -> builder(stream: classify.training.data.Stream, n_classes, cfg, curves) -> Trained: the same models
# when the training matrix is larger than --max-memory; they read the cache a chunk at a time.
STREAMING: dict[str, Callable[..., Trained]] = {
    "lr": fit_lr_stream,
    "rf": fit_rf_stream,
    "mlp": fit_mlp_stream,
    "knn": fit_knn_stream,
}


# name -> builder(X_fit (n, D), y_fit (n,), X_val, y_val, n_classes, cfg, curves) -> Trained;
# builders see training and validation rows only, never the test rows.
MODELS: dict[str, Callable[..., Trained]] = {
    "lr": fit_lr,
    "rf": fit_rf,
    "mlp": fit_mlp,
    "knn": fit_knn,
}
DEFAULT_MODELS = ("lr", "mlp", "rf")   # what compare trains unless --model says otherwise
