"""One training run on a loaded cache: split, fit, score on the test rows. Returns plain data.

Nothing here prints or writes files; `classify.cli`, `classify.commands.compare` and
`classify.commands.learning_curve` do that with what these functions return.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from classify.training.config import ClassifyConfig
from classify.training.evaluation import accuracy_interval, calibrated, ece, fit_temperature
from classify.training.data import Rows, Stream, fit_rows, in_memory_bytes, memory_budget, stream_layout
from classify.workflows.audit_record import audit_metrics, training_rows
from classify.training.modelspec import ModelSpec
from classify.training.specs import SPECS, spec_of
from classify.runs.trained import Trained
from classify.pixel.adversarial import check as check_adversarial, fit_adversarial, settings_of
from featurecache.cache import Cache, CacheFile, iter_rows, split_shapes
from featurecache.errors import SettingError, UserError

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
    if cfg.calibrate and not spec_of(cfg.model).calibrates:
        calibrated = ", ".join(name for name, spec in SPECS.items() if spec.calibrates)
        raise SettingError(f"calibrate=True fits a temperature for {calibrated}, not for model={cfg.model!r}; "
                           "leave out `calibrate`")


def calibrate(y_test: np.ndarray, proba: np.ndarray, y_val: np.ndarray, val_proba: np.ndarray) -> tuple[np.ndarray, dict]:
    """Temperature scaling fitted on the validation rows, applied to the test probabilities:
    (calibrated test probabilities, {"temperature", "ece_before"})."""
    t = fit_temperature(y_val, val_proba)
    return calibrated(proba, t), {"temperature": t, "ece_before": ece(y_test, proba)}


def val_accuracy(proba: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of the kept model on the validation rows (None when there are none): what picks the
    best run of a cache, since the test rows must not."""
    return float(accuracy_score(labels, proba.argmax(axis=1))) if len(labels) else None


def split_note(rows: Rows, trained: Trained) -> str:
    """What the validation split was drawn over ("rows", or "source images" where the cache records
    each row's source image); a grouped split is noted in the model's details too, so the run says so."""
    if rows.split_by != "rows":
        trained.details["val_split"] = rows.split_by
    return rows.split_by


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


class MemoryRows:
    """The rows of a cache read whole: the spec's `fit` on the fit rows (views included), the test
    and validation rows scored from memory."""

    def __init__(self, cache: Cache, cfg: ClassifyConfig):
        if cfg.tta and cache.test.views is None:
            raise SettingError(f"tta=True needs test views, and {cache.path} has none; re-extract with augment=SPEC "
                               "views=K test_views=K, or leave out `tta`")
        self.cache, self.cfg = cache, cfg
        # the split is over images: an image and all its views land on the same side
        self.rows = training_rows(cache, cfg)   # less the rows --exclude names
        views = cache.train.views if cfg.views == "all" else None   # (N, K, D) or None
        # (n_fit * (K + 1), D): originals, then views
        self.X_fit, self.y_fit = fit_rows(cache.train.features, cache.train.labels, self.rows.fit, views)

    def fit(self, spec: ModelSpec, curves: bool) -> Trained:
        X, y, val = self.cache.train.features, self.cache.train.labels, self.rows.val
        return spec.fit(self.X_fit, self.y_fit, X[val], y[val], len(self.cache.class_names), self.cfg, curves)

    def test_proba(self, trained: Trained) -> np.ndarray:
        test = self.cache.test
        proba = trained.predict_proba(test.features)   # (n_test, C): the only use of the test rows
        if self.cfg.tta:
            # test-time augmentation: the mean over the original and each of its K' views
            per_view = [trained.predict_proba(test.views[:, j]) for j in range(test.views.shape[1])]
            proba = np.mean([proba, *per_view], axis=0)
        return proba

    def validation(self, trained: Trained) -> tuple[np.ndarray, np.ndarray]:
        """(n_val, C) probabilities of the validation rows, and their labels: they pick the best run."""
        val = self.rows.val
        return trained.predict_proba(self.cache.train.features[val]), self.cache.train.labels[val]

    def counts(self, trained: Trained) -> dict:
        return {"n_fit": len(self.y_fit), "n_val": len(self.rows.val), "fit_images": len(self.rows.fit),
                "fit_rows": len(self.y_fit)}


class StreamRows:
    """The rows of a cache read without features (larger than --max-memory): the spec's `fit_stream`
    reads them from the file opened at the start, a chunk at a time, and so does the scoring."""

    def __init__(self, cache: Cache, cfg: ClassifyConfig, spec: ModelSpec):
        self.source = cache.file or CacheFile(cache.path)
        shapes = split_shapes(self.source)
        if cfg.tta and not shapes["test"].views:
            raise SettingError(f"tta=True needs test views, and {cache.path} has none; re-extract with augment=SPEC "
                               "views=K test_views=K, or leave out `tta`")
        self.cache, self.cfg = cache, cfg
        self.rows = training_rows(cache, cfg)   # less the rows --exclude names
        budget = memory_budget(cfg.max_memory)
        train = shapes["train"]
        self.k = train.views if cfg.views == "all" else 0
        self.batch = getattr(cfg.own, spec.batch_param) if spec.batch_param else 0   # the MLP's batches are held too
        chunk, held = stream_layout(budget, train.dim, max(self.k, shapes["test"].views if cfg.tta else 0), self.batch)
        self.stream = Stream(self.source, cache.train.labels, self.rows.fit, self.rows.val, train.dim, self.k, chunk,
                             budget, held)

    def fit(self, spec: ModelSpec, curves: bool) -> Trained:
        trained = spec.fit_stream(self.stream, len(self.cache.class_names), self.cfg, curves)
        s = self.stream
        if s.held > s.budget:
            trained.details["over_budget"] = {"held_bytes": s.held, "budget_bytes": s.budget, "chunk_rows": s.chunk,
                                              "batch_size": self.batch or None}
        return trained

    def test_proba(self, trained: Trained) -> np.ndarray:
        proba = stream_proba(trained, self.source, "test", self.stream.chunk, self.cfg.tta)   # (n_test, C)
        if self.source.replaced():   # every row still came from the file opened at the start
            trained.details["cache_replaced"] = True
        return proba

    def validation(self, trained: Trained) -> tuple[np.ndarray | None, np.ndarray | None]:
        val = [(trained.predict_proba(X), y) for X, y in self.stream.val_chunks()]   # from the file opened at the start
        if not val:
            return None, None
        return np.concatenate([v[0] for v in val]), np.concatenate([v[1] for v in val])

    def counts(self, trained: Trained) -> dict:
        # what was fitted: every fit image and its views, or the forest's subsample of them
        sub = trained.details.get("subsample")
        fit_images, n_fit = (sub["images"], sub["rows"]) if sub else (len(self.rows.fit), len(self.rows.fit) * (1 + self.k))
        return {"n_fit": n_fit, "n_val": sub["val_rows"] if sub else len(self.rows.val), "fit_images": fit_images,
                "fit_rows": n_fit}


def train_and_evaluate(cache: Cache, cfg: ClassifyConfig, curves: bool = True) -> RunResult:
    """Fit cfg.model on the cache's training rows (validation carved from them), score the test rows.

    The model's spec (classify.training.specs) fits it: `fit` on rows in memory, or `fit_stream` when
    `load_for_training` read the cache without features (larger than --max-memory); then the rows
    are read and scored from its open file a chunk at a time (`StreamRows`)."""
    check_calibrate(cfg)
    check_adversarial(cfg, cache.attrs)
    spec = spec_of(cfg.model)
    if cache.train.features is None and settings_of(cfg):
        raise SettingError("adversarial training holds the fit rows in memory, and this cache is larger than "
                           "`max_memory`; pass a larger `max_memory`, or train without `adversarial`")
    if len(cache.test.labels) == 0:
        raise UserError(f"{cache.path} has no test rows to report on; extract a cache with a test split")
    rows = MemoryRows(cache, cfg) if cache.train.features is not None else StreamRows(cache, cfg, spec)
    start = time.perf_counter()
    adversarial = settings_of(cfg)   # None: plain training (no --adversarial, or --adv-ratio 0)
    if adversarial:   # classify.pixel.adversarial imports TensorFlow only now
        X, y, val = cache.train.features, cache.train.labels, rows.rows.val
        trained = fit_adversarial(cache, cfg, rows.rows, rows.X_fit, rows.y_fit, X[val], y[val], adversarial)
    else:
        trained = rows.fit(spec, curves)
    # fits made only to draw a curve (a given C's neighbours) are not the model's fit time
    curve_time = trained.history.pop("curve_seconds", 0.0)
    train_time = time.perf_counter() - start - curve_time
    start = time.perf_counter()
    proba = rows.test_proba(trained)
    predict_time = time.perf_counter() - start
    val_proba, val_y = rows.validation(trained)
    calibration = None
    if cfg.calibrate:
        proba, calibration = calibrate(cache.test.labels, proba, val_y, val_proba)
    metrics, text, report, confusion = evaluate(cache.test.labels, proba, cache.class_names)
    metrics.update(train_time_s=round(train_time, 3), predict_time_s=round(predict_time, 3),
                   n_test=len(cache.test.labels), **rows.counts(trained), val_split=split_note(rows.rows, trained),
                   val_accuracy=val_accuracy(val_proba, val_y) if val_proba is not None else None,
                   **audit_metrics(cache, cfg, proba))
    if curve_time:
        metrics["curve_time_s"] = round(curve_time, 3)
    return RunResult(trained, rows.rows, proba, metrics, text, report, confusion, calibration)


def gallery_items(cache: Cache, proba: np.ndarray, limit: int = GALLERY_SIZE) -> tuple[list[dict], str | None]:
    """The most confident mistakes on the test rows, with their pictures.

    Returns (items, why_not): items = [{image (h, w, 3) uint8, true, predicted, probability, source}],
    why_not says why there is no gallery (no sources, data moved) or is None.
    """
    from featurecache.images import source_image

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
