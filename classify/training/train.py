"""One training run on a loaded cache: split, fit, score on the test rows. Returns plain data.

Nothing here prints or writes files; `classify.cli`, `classify.workflows.compare` and
`classify.workflows.learning_curve` do that with what these functions return.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from classify.training.config import CALIBRATED_MODELS, MODEL_PARAMS, ClassifyConfig
from classify.training.evaluation import accuracy_interval, calibrated, ece, fit_temperature
from classify.training.data import Rows, Stream, fit_rows, in_memory_bytes, memory_budget, stream_layout
from classify.workflows.audit_record import audit_metrics, training_rows
from classify.training.models import MODELS, STREAMING
from classify.runs.trained import Trained
from classify.pixel.adversarial import check as check_adversarial, fit_adversarial, settings_of
from featurecache.cache import Cache, CacheFile, iter_rows, split_shapes
from featurecache.errors import UserError

GALLERY_SIZE = 24


@dataclass
class RunResult:
    trained: Trained
    rows: Rows                 # indices into the cache's training split
    proba: np.ndarray          # (n_test, C) test-row probabilities
    metrics: dict              # accuracy, macro_f1, train/predict seconds, row counts
    report_text: str           # scikit-learn classification report with class names
    report: dict               # the same as a dict
    confusion: np.ndarray      # (C, C) counts, rows = true class
    calibration: dict | None = None   # --calibrate: {"temperature", "ece_before"}; proba is the calibrated one


def evaluate(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> tuple[dict, str, dict, np.ndarray]:
    """Accuracy, macro F1, the classification report (text and dict) and the confusion matrix."""
    pred = proba.argmax(axis=1)
    labels = list(range(len(class_names)))
    kw = {"labels": labels, "target_names": class_names, "zero_division": 0, "digits": 4}
    metrics = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "accuracy_ci": accuracy_interval(y_true, proba),   # bootstrap 95% interval [low, high]
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "ece": ece(y_true, proba),
    }
    return (metrics, classification_report(y_true, pred, **kw),
            classification_report(y_true, pred, output_dict=True, **kw),
            confusion_matrix(y_true, pred, labels=labels))


def check_calibrate(cfg: ClassifyConfig) -> None:
    if cfg.calibrate and cfg.model not in CALIBRATED_MODELS:
        raise UserError(f"--calibrate fits a temperature for {', '.join(CALIBRATED_MODELS)}, not for --model {cfg.model}; "
                        "leave out --calibrate")


def calibrate(y_test: np.ndarray, proba: np.ndarray, y_val: np.ndarray, val_proba: np.ndarray) -> tuple[np.ndarray, dict]:
    """Temperature scaling fitted on the validation rows, applied to the test probabilities:
    (calibrated test probabilities, {"temperature", "ece_before"})."""
    t = fit_temperature(y_val, val_proba)
    return calibrated(proba, t), {"temperature": t, "ece_before": ece(y_test, proba)}


def val_accuracy(proba: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of the kept model on the validation rows (None when there are none): what picks the
    best run of a cache, since the test rows must not."""
    return float(accuracy_score(labels, proba.argmax(axis=1))) if len(labels) else None


def load_for_training(path: str | os.PathLike, cfg: ClassifyConfig) -> Cache:
    """The cache, whole when the classifier's copies of its feature matrices fit --max-memory
    (`classify.training.data.in_memory_bytes`); labels and sources only when they do not, and then
    `train_and_evaluate` streams the features from the file, which stays open (`Cache.file`), so a
    cache renamed over the path during the run is never read."""
    from featurecache.cache import read_cache   # looked up at call time, as the commands did

    source = CacheFile(path)   # opened once: all that is read comes from this file, even if another replaces it
    shapes = split_shapes(source)
    if in_memory_bytes(shapes, views=cfg.views == "all") <= memory_budget(cfg.max_memory):
        cache = read_cache(source)
        source.close()
        return cache
    cache = read_cache(source, features=False)
    cache.file = source   # kept open: the features are streamed from it
    return cache


def stream_proba(trained: Trained, path, split: str, chunk: int, tta: bool) -> np.ndarray:
    """(n, C) probabilities of a split, predicted a chunk at a time from the file; with `tta` the
    mean over each row and its views."""
    out = []
    for c in iter_rows(path, split, chunk=chunk, views=tta):
        proba = trained.predict_proba(c.features)
        if tta:
            proba = np.mean([proba, *(trained.predict_proba(c.views[:, j]) for j in range(c.views.shape[1]))], axis=0)
        out.append(proba)
    return np.concatenate(out)


def train_and_evaluate(cache: Cache, cfg: ClassifyConfig, curves: bool = True) -> RunResult:
    """Fit cfg.model on the cache's training rows (validation carved from them), score the test rows.

    A cache read without features (`load_for_training` found it larger than --max-memory) is
    streamed from its file: the models of `STREAMING` fit it, and the test rows are scored a chunk
    at a time."""
    check_calibrate(cfg)
    check_adversarial(cfg, cache.attrs)
    if cache.train.features is None:
        if settings_of(cfg):
            raise UserError("adversarial training holds the fit rows in memory, and this cache is larger than "
                            "--max-memory; pass a larger --max-memory, or train without --adversarial")
        return stream_and_evaluate(cache, cfg, curves)
    if len(cache.test.labels) == 0:
        raise UserError(f"{cache.path} has no test rows to report on; extract a cache with a test split")
    if cfg.tta and cache.test.views is None:
        raise UserError(f"--tta needs test views, and {cache.path} has none; re-extract with --augment SPEC "
                        "--views K --test-views K, or leave out --tta")
    # the split is over images: an image and all its views land on the same side
    rows = training_rows(cache, cfg)   # less the rows --exclude names
    X, y = cache.train.features, cache.train.labels   # (N, D) float32, (N,)
    views = cache.train.views if cfg.views == "all" else None   # (N, K, D) or None
    X_fit, y_fit = fit_rows(X, y, rows.fit, views)   # (n_fit * (K + 1), D): originals, then views
    n_classes = len(cache.class_names)
    start = time.perf_counter()
    adversarial = settings_of(cfg)   # None: plain training (no --adversarial, or --adv-ratio 0)
    if adversarial:   # classify.pixel.adversarial imports TensorFlow only now
        trained = fit_adversarial(cache, cfg, rows, X_fit, y_fit, X[rows.val], y[rows.val], adversarial)
    else:
        trained = MODELS[cfg.model](X_fit, y_fit, X[rows.val], y[rows.val], n_classes, cfg, curves)
    # fits made only to draw a curve (a given C's neighbours) are not the model's fit time
    curve_time = trained.history.pop("curve_seconds", 0.0)
    train_time = time.perf_counter() - start - curve_time
    start = time.perf_counter()
    proba = trained.predict_proba(cache.test.features)   # (n_test, C): the only use of the test rows
    if cfg.tta:
        # test-time augmentation: the mean over the original and each of its K' views
        per_view = [trained.predict_proba(cache.test.views[:, j]) for j in range(cache.test.views.shape[1])]
        proba = np.mean([proba, *per_view], axis=0)
    predict_time = time.perf_counter() - start
    val_proba = trained.predict_proba(X[rows.val])   # (n_val, C): picks the best run, fits the temperature
    calibration = None
    if cfg.calibrate:
        proba, calibration = calibrate(cache.test.labels, proba, y[rows.val], val_proba)
    metrics, text, report, confusion = evaluate(cache.test.labels, proba, cache.class_names)
    metrics.update(train_time_s=round(train_time, 3), predict_time_s=round(predict_time, 3),
                   n_fit=len(y_fit), n_val=len(rows.val), n_test=len(cache.test.labels),
                   fit_images=len(rows.fit), fit_rows=len(y_fit), val_accuracy=val_accuracy(val_proba, y[rows.val]),
                   **audit_metrics(cache, cfg, proba))
    if curve_time:
        metrics["curve_time_s"] = round(curve_time, 3)
    return RunResult(trained, rows, proba, metrics, text, report, confusion, calibration)


def stream_and_evaluate(cache: Cache, cfg: ClassifyConfig, curves: bool = True) -> RunResult:
    """`train_and_evaluate` for a cache read with features=False: fit and score from its open file."""
    source = cache.file or CacheFile(cache.path)
    shapes = split_shapes(source)
    if len(cache.test.labels) == 0:
        raise UserError(f"{cache.path} has no test rows to report on; extract a cache with a test split")
    if cfg.tta and not shapes["test"].views:
        raise UserError(f"--tta needs test views, and {cache.path} has none; re-extract with --augment SPEC "
                        "--views K --test-views K, or leave out --tta")
    rows = training_rows(cache, cfg)   # less the rows --exclude names
    budget = memory_budget(cfg.max_memory)
    train = shapes["train"]
    k = train.views if cfg.views == "all" else 0
    batch = cfg.batch_size if "batch_size" in MODEL_PARAMS[cfg.model] else 0   # the MLP's batches are held too
    chunk, held = stream_layout(budget, train.dim, max(k, shapes["test"].views if cfg.tta else 0), batch)
    stream = Stream(source, cache.train.labels, rows.fit, rows.val, train.dim, k, chunk, budget, held)
    start = time.perf_counter()
    trained = STREAMING[cfg.model](stream, len(cache.class_names), cfg, curves)
    train_time = time.perf_counter() - start
    if held > budget:
        trained.details["over_budget"] = {"held_bytes": held, "budget_bytes": budget, "chunk_rows": chunk,
                                          "batch_size": batch or None}
    start = time.perf_counter()
    proba = stream_proba(trained, source, "test", stream.chunk, cfg.tta)   # (n_test, C)
    predict_time = time.perf_counter() - start
    if source.replaced():   # every row still came from the file opened at the start
        trained.details["cache_replaced"] = True
    val = [(trained.predict_proba(X), y) for X, y in stream.val_chunks()]   # from the file opened at the start
    val_proba, val_y = (np.concatenate([v[0] for v in val]), np.concatenate([v[1] for v in val])) if val else (None, None)
    calibration = None
    if cfg.calibrate:
        proba, calibration = calibrate(cache.test.labels, proba, val_y, val_proba)
    metrics, text, report, confusion = evaluate(cache.test.labels, proba, cache.class_names)
    # what was fitted: every fit image and its views, or the forest's subsample of them
    sub = trained.details.get("subsample")
    fit_images, n_fit = (sub["images"], sub["rows"]) if sub else (len(rows.fit), len(rows.fit) * (1 + k))
    metrics.update(train_time_s=round(train_time, 3), predict_time_s=round(predict_time, 3),
                   n_fit=n_fit, n_val=sub["val_rows"] if sub else len(rows.val), n_test=len(cache.test.labels),
                   fit_images=fit_images, fit_rows=n_fit, **audit_metrics(cache, cfg, proba))
    metrics["val_accuracy"] = val_accuracy(val_proba, val_y) if val_proba is not None else None
    return RunResult(trained, rows, proba, metrics, text, report, confusion, calibration)


def gallery_items(cache: Cache, proba: np.ndarray, limit: int = GALLERY_SIZE) -> tuple[list[dict], str | None]:
    """The most confident mistakes on the test rows, with their pictures.

    Returns (items, why_not): items = [{image (h, w, 3) uint8, true, predicted, probability, source}],
    why_not says why there is no gallery (no sources, data moved) or is None.
    """
    from extract.datasets import source_image

    kind, location = cache.attrs.get("data_kind"), cache.attrs.get("data_location")
    if not kind or not location:
        return [], "the cache does not record where its images came from"
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != cache.test.labels)
    if len(wrong) == 0:
        return [], "no test image was misclassified"
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:limit]
    names = cache.class_names
    items = []
    for i in wrong:
        try:
            image = source_image(kind, location, str(cache.test.sources[i]))
        except (UserError, OSError, ValueError) as e:
            return [], f"the images behind the cache are not readable at {location} ({str(e)[:80]})"
        items.append({"image": image, "true": names[cache.test.labels[i]], "predicted": names[pred[i]],
                      "probability": float(proba[i, pred[i]]), "source": str(cache.test.sources[i])})
    return items, None
