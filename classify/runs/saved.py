"""Saved classifiers: written in formats that load without running code, and read back for `predict`.

A run writes its model in its folder beside its run record (`<name>-run.json`, classify.runs.record):

    lr   <name>-model.h5      HDF5 arrays: coef, intercept, classes, scaler mean and scale
    rf   <name>-model.h5      HDF5 arrays: every tree's nodes (children, feature, threshold, leaf
                              class fractions), scored by `forest_proba`
    mlp  <name>-model.keras   Keras v3 archive, loaded with safe_mode=True (no lambdas, no custom code)
    knn  <name>-model.h5      HDF5 arrays: the L2-normalised training rows, their labels, k and T
                              (classify.training.knn)

Each model's suffix, writer and loader are its entry's in the model table (classify.training.specs).

Which files are safe to load: run records (plain JSON) and these three model
formats, through `load_run`. None of them is a pickle, and nothing here ever
unpickles. `load_run` also refuses files this tool did not write: the run
record must say format="featurecache-run", and the model file must have the
SHA-256 the record holds, so a model swapped in beside a record is rejected.

    run = load_run("reports/cifar10-vgg16-gap-32px-lr-run.json")
    proba = run.predict_proba(features)      # (n, D) float32 -> (n, C), standardisation included

Why plain arrays in HDF5 rather than a pickle or skops: loading one reads
numbers and runs no code, so a model file from elsewhere cannot execute
anything (a pickle can, and skops only narrows which types it will trust);
and the file does not depend on the scikit-learn version that wrote it:
scikit-learn only guarantees its pickles load in the same version, while
these arrays are read by the functions below, which are the only inference
path: a fresh forest is converted to the same arrays and scored by the same
`forest_proba` before it is saved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from classify.runs.record import RunRecord
from featurecache.files import sha256
from featurecache.errors import UserError, reason

MODEL_FORMAT = "featurecache-model"
FORMAT_VERSION = 1
FOREST_ARRAYS = ("roots", "left", "right", "feature", "threshold", "value", "classes")


# --------------------------------------------------------------------------- arrays -> probabilities


def expand(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, k) probabilities over the classes a model saw -> (n, n_classes), zeros for the unseen."""
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    out = np.zeros((len(proba), n_classes), dtype=proba.dtype)
    out[:, classes] = proba
    return out


def linear_proba(features: np.ndarray, w: dict, n_classes: int) -> np.ndarray:
    """Standardise, then multinomial (softmax) or binary (sigmoid) logistic regression; (n, C)."""
    z = ((features - w["mean"]) / w["scale"]) @ w["coef"].T + w["intercept"]   # (n, k) or (n, 1)
    if z.shape[1] == 1:  # scikit-learn's binary case: one coefficient row for class 1
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        proba = np.stack([1.0 - p1, p1], axis=1)
    else:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        proba = e / e.sum(axis=1, keepdims=True)
    return expand(proba, w["classes"], n_classes)


def forest_leaves(features: np.ndarray, f: dict) -> np.ndarray:
    """The leaf each row reaches in each tree of the node arrays `f`; (n, T) node indices.

    Walks every tree at once, one level per step, a few thousand rows at a time, carrying only
    the (row, tree) pairs still at an inner node: a row goes left where its feature value is <=
    the node's threshold (float32 features against float64 thresholds, as scikit-learn compares).
    """
    X = np.asarray(features, dtype=np.float32)                  # (n, D)
    roots, left, right = f["roots"], f["left"], f["right"]     # (T,), (nodes,), (nodes,)
    feature, threshold = f["feature"], f["threshold"]
    out = np.empty((len(X), len(roots)), dtype=np.int64)
    chunk = max(1, 2**20 // max(1, len(roots)))                 # (rows, trees) pairs per block
    for start in range(0, len(X), chunk):
        xb = X[start:start + chunk]
        node = np.repeat(roots[None, :].astype(np.int64), len(xb), axis=0).ravel()  # (b * T,)
        row = np.repeat(np.arange(len(xb)), len(roots))                              # (b * T,)
        active = np.flatnonzero(left[node] >= 0)
        for _ in range(len(left)):  # children follow their parent, so every walk ends in fewer steps
            if not len(active):
                break
            at = node[active]
            go_left = xb[row[active], feature[at]] <= threshold[at]
            nxt = np.where(go_left, left[at], right[at])
            node[active] = nxt
            active = active[left[nxt] >= 0]
        out[start:start + len(xb)] = node.reshape(len(xb), len(roots))
    return out


def forest_proba(features: np.ndarray, f: dict, n_classes: int) -> np.ndarray:
    """A random forest's class probabilities from its node arrays; (n, C): the mean over trees of
    the leaves' class fractions, as in scikit-learn's `predict_proba`. The only way classify
    scores a forest, right after training and after loading."""
    leaves = forest_leaves(features, f)                         # (n, T)
    return expand(leaf_mean(f["value"], leaves), f["classes"], n_classes)


def leaf_mean(value: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """Mean of the leaves' class fractions over trees: value (nodes, k), leaves (n, T) -> (n, k)."""
    out = np.zeros((len(leaves), value.shape[1]))
    for t in range(leaves.shape[1]):   # one tree at a time: never an (n, T, k) array
        out += value[leaves[:, t]]
    return out / max(1, leaves.shape[1])


# --------------------------------------------------------------------------- writers


def save_linear(path: Path, weights: dict) -> None:
    """LR: coef (k, D), intercept (k,), classes (k,), mean (D,), scale (D,) as HDF5 datasets."""
    with h5py.File(path, "w") as f:
        for key in ("coef", "intercept", "classes", "mean", "scale"):
            f.create_dataset(key, data=np.asarray(weights[key]))
        f.attrs["format"] = MODEL_FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = "linear"


def forest_arrays(forest) -> dict:
    """A fitted RandomForestClassifier as node arrays, all trees' nodes concatenated:
    roots (T,) first node of each tree; left/right (nodes,) children as indices into the same
    arrays, -1 at leaves; feature (nodes,), threshold (nodes,); value (nodes, k) class fractions at
    the leaves, each row normalised as scikit-learn's predict_proba does, and zeros at inner nodes,
    which no prediction reads; classes (k,); n_features."""
    trees = [e.tree_ for e in forest.estimators_]
    starts = np.cumsum([0] + [t.node_count for t in trees])
    index = np.int32 if starts[-1] < 2**31 else np.int64
    left, right, value = [], [], []
    for t, start in zip(trees, starts):
        leaf = t.children_left < 0
        left.append(np.where(leaf, -1, t.children_left + start))
        right.append(np.where(leaf, -1, t.children_right + start))
        v = t.value[:, 0, :].astype(np.float64)               # (node_count, k)
        total = v.sum(axis=1, keepdims=True)
        value.append(np.where(leaf[:, None], v / np.where(total == 0, 1.0, total), 0.0))
    return {
        "roots": starts[:-1].astype(index),
        "left": np.concatenate(left).astype(index),
        "right": np.concatenate(right).astype(index),
        "feature": np.concatenate([np.maximum(t.feature, 0) for t in trees]).astype(index),  # leaves: 0, never read
        "threshold": np.concatenate([t.threshold for t in trees]).astype(np.float64),
        "value": np.concatenate(value),
        "classes": np.asarray(forest.classes_),
        "n_features": int(forest.n_features_in_),
    }


def save_forest(path: Path, arrays: dict) -> None:
    """RF: the node arrays of `forest_arrays` as HDF5 datasets, n_features as an attribute."""
    with h5py.File(path, "w") as f:
        for key in FOREST_ARRAYS:
            # leaf fractions are mostly 0 and 1: lzf makes them 5x smaller at little cost
            f.create_dataset(key, data=arrays[key], **({"compression": "lzf"} if key == "value" else {}))
        f.attrs["format"] = MODEL_FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = "forest"
        f.attrs["n_features"] = int(arrays["n_features"])


def save_keras(path: Path, model) -> None:
    model.save(path)  # path ends in .keras: the safe v3 format


# --------------------------------------------------------------------------- readers


def read_linear(path: Path) -> dict:
    """An LR model file's arrays: coef (k, D), intercept (k,), classes (k,), mean (D,), scale (D,)."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != MODEL_FORMAT or f.attrs.get("kind") != "linear":
                raise UserError(f"{path} is not a linear model written by classify; re-run `python -m classify --model lr`")
            return {k: f[k][()] for k in ("coef", "intercept", "classes", "mean", "scale")}
    except (OSError, KeyError) as e:
        raise UserError(f"{path} is not a readable model file ({reason(e, 60)}); re-run classify to write it again") from None


def load_forest(path: Path, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    """An RF model file -> predict_proba, its node arrays checked to form trees (`forest_ok`)."""
    refuse = f"{path} is not a forest model written by classify"
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != MODEL_FORMAT or f.attrs.get("kind") != "forest":
                raise UserError(f"{refuse}; re-run `python -m classify --model rf`")
            w = {k: f[k][()] for k in FOREST_ARRAYS}
            n_features = int(f.attrs["n_features"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not a readable model file ({reason(e, 60)}); re-run classify to write it again") from None
    if not forest_ok(w, n_features, n_classes):
        raise UserError(f"{refuse} (its node arrays do not form trees); re-run `python -m classify --model rf`")
    return lambda x: forest_proba(x, w, n_classes)


def forest_ok(w: dict, n_features: int, n_classes: int) -> bool:
    """Shapes, types and links of the node arrays: children lie after their parent within the
    arrays (scikit-learn numbers nodes that way), so every walk from a root ends at a leaf."""
    nodes = len(w["left"])
    arrays = (w["left"], w["right"], w["feature"], w["roots"], w["classes"])
    if not all(a.ndim == 1 and a.dtype.kind in "iu" for a in arrays) or w["threshold"].shape != (nodes,):
        return False
    if w["value"].shape != (nodes, len(w["classes"])) or w["right"].shape != (nodes,):
        return False
    if w["value"].dtype.kind != "f" or w["threshold"].dtype.kind != "f":
        return False
    if not nodes or not len(w["roots"]) or w["feature"].shape != (nodes,):
        return False
    idx = np.arange(nodes)
    inner = w["left"] >= 0
    return bool(
        ((w["left"] > idx) | ~inner).all() and ((w["right"] > idx) | ~inner).all()
        and (w["right"][inner] < nodes).all() and (w["left"][inner] < nodes).all() and (w["right"][~inner] < 0).all()
        and ((w["roots"] >= 0) & (w["roots"] < nodes)).all()
        and ((w["feature"] >= 0) & (w["feature"] < n_features)).all()
        and ((w["classes"] >= 0) & (w["classes"] < n_classes)).all() and len(np.unique(w["classes"])) == len(w["classes"])
        and np.isfinite(w["value"]).all() and not np.isnan(w["threshold"][inner]).any()
    )


def load_keras_model(path: Path):
    """An MLP model file as a Keras model, loaded with safe_mode (no custom code runs)."""
    from featurecache.tfimport import keras

    try:
        return keras().saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - unsafe or broken archives are refused as one
        raise UserError(f"{path} is not a Keras model classify can load safely ({reason(e, 80)}); re-run classify --model mlp") from None


# --------------------------------------------------------------------------- runs


def calibrated_proba(proba: Callable, t: float, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A model's predict_proba followed by the run's temperature scaling (classify.training.evaluation.calibrated)."""
    from classify.training.evaluation import calibrated

    if not (0 < t < float("inf")):
        raise UserError(f"{path} holds no usable calibration temperature ({t!r}); re-run classify --calibrate")
    return lambda x: calibrated(proba(x), float(t))


@dataclass
class SavedRun:
    record: RunRecord              # the run record (classify.runs.record)
    class_names: list[str]
    cache_attrs: dict              # the source cache's attributes: backbone, pooling, image_size, weights, ...
    _proba: Callable[[np.ndarray], np.ndarray]
    model_path: Path | None = None  # the verified model file beside the record
    path: Path | None = None        # the run record itself

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features from the same extraction settings -> (n, C) class probabilities."""
        features = np.asarray(features, dtype=np.float32)
        want = self.cache_attrs.get("feature_dim")
        if features.ndim != 2 or (want and features.shape[1] != int(want)):
            raise UserError(
                f"features of shape {features.shape} do not fit this run, trained on {want}-wide features; "
                "extract them with the run's cache settings"
            )
        return self._proba(features)


def load_run(run_json_path: str | os.PathLike) -> SavedRun:
    """Read a run record written by classify and the model in its folder, refusing anything else."""
    from classify.training.specs import spec_for_format   # the specs' modules import this one

    path = Path(run_json_path)
    if not path.is_file():
        raise UserError(f"no run record at {path}: pass a reports/<name>-run.json written by `python -m classify`")
    record = RunRecord.load(path)
    name = record.model_file
    spec = spec_for_format(record.model_format)   # the model table: its file's suffix and loader
    if not name or Path(name).name != name or spec is None or not name.endswith(spec.suffix):
        raise UserError(f"{path} names no model file classify could have written; re-run classify")
    model_path = record.located(name)
    if not model_path.is_file():
        raise UserError(f"the model file {model_path} named by {path} is missing; keep the run's files as classify "
                        "wrote them (beside the run record, or in its folder) or re-run classify")
    if sha256(model_path) != record.model_sha256:
        raise UserError(
            f"{model_path} is not the model its run record {path.name} describes (its checksum differs: the file "
            "was changed, truncated or replaced since classify wrote it); re-run classify to write it again"
        )
    class_names = list(record.class_names)
    proba = spec.load(model_path, len(class_names))
    if record.calibration:   # --calibrate: predict gives the calibrated probabilities the run reported
        proba = calibrated_proba(proba, record.calibration.temperature, path)
    return SavedRun(record, class_names, dict(record.cache.attrs), proba, model_path, path)
