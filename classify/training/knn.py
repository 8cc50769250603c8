"""Weighted k-nearest neighbours on cached features, as DINOv2 evaluates a backbone.

Features are L2-normalised; a row's neighbours are the k training rows of highest cosine
similarity s, each voting for its class with weight exp(s / T) (T = 0.07 by default); the
probabilities are the votes' shares. k is chosen on the validation split from K_GRID, each value
capped at the size of the smallest training class (a 5-shot set gets k = 5).

Similarities are computed a block of query rows against a block of training rows at a time,
keeping each query's running top k, so no (n_query, n_train) matrix is ever held: the blocks
are sized from --max-memory, and a training set larger than it is read from the cache file one
chunk at a time (`fit_knn_stream`).

The saved model (HDF5: the normalised training rows, their labels, k and T) holds the whole
training set; a kNN run therefore has no compact Keras form and is not exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import h5py
import numpy as np

from classify.training.modelspec import ModelSpec, check_int, check_real
from featurecache.errors import UserError, reason

K_GRID = (10, 20, 50, 100, 200)
FLOAT_BYTES = 4
SIM_COPIES = 3    # a block's similarities, the merged candidates, argpartition's work array
Source = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]   # -> (X (m, D) normalised float32, y (m,)) chunks


@dataclass
class KNNParams:
    k: int | str = "auto"                # neighbours, or "auto": chosen on the validation split from K_GRID
    temperature: float = 0.07            # T of the votes' weights, DINOv2's

    def __post_init__(self) -> None:
        check_int("k", self.k, auto=True)
        check_real("temperature", self.temperature, 0, low_open=True)


def normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (all-zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1.0, norms)


def array_source(X: np.ndarray, y: np.ndarray, chunk: int) -> Source:
    """A Source over normalised training rows held in memory, `chunk` rows at a time."""
    return lambda: ((X[i:i + chunk], y[i:i + chunk]) for i in range(0, len(y), chunk))


def query_rows(budget: int, train_chunk: int, k: int) -> int:
    """Query rows per block: SIM_COPIES float32 copies of (rows, train_chunk + k) fit the budget."""
    return int(np.clip(budget // (SIM_COPIES * FLOAT_BYTES * (train_chunk + k)), 1, 4096))


def neighbours(Q: np.ndarray, source: Source, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar training rows of each (normalised) query row, most similar first:
    similarities (n, k) float32 and labels (n, k). Fewer than k when the training set is smaller."""
    sims = np.full((len(Q), 0), -np.inf, dtype=np.float32)
    labels = np.zeros((len(Q), 0), dtype=np.int64)
    for X, y in source():
        s = np.concatenate([sims, Q @ X.T], axis=1)                        # (n, kept + m)
        lab = np.concatenate([labels, np.broadcast_to(y, (len(Q), len(y)))], axis=1)
        if s.shape[1] > k:
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s, lab = np.take_along_axis(s, top, 1), np.take_along_axis(lab, top, 1)
        sims, labels = s, lab
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, 1), np.take_along_axis(labels, order, 1)


def vote(sims: np.ndarray, labels: np.ndarray, k: int, temperature: float, n_classes: int) -> np.ndarray:
    """Class probabilities (n, C) from sorted neighbours: the first k vote with weight exp(s / T)."""
    w = np.exp(sims[:, :k].astype(np.float64) / temperature)              # (n, k)
    out = np.zeros((len(sims), n_classes))
    np.add.at(out, (np.repeat(np.arange(len(sims)), w.shape[1]), labels[:, :k].ravel()), w.ravel())
    return out / out.sum(axis=1, keepdims=True)


def sorted_neighbours(Q: np.ndarray, source: Source, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """`neighbours` of raw query rows, `block` rows at a time."""
    Q = normalise(Q)
    parts = [neighbours(Q[i:i + block], source, k) for i in range(0, len(Q), block)]
    if not parts:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def knn_proba(X: np.ndarray, source: Source, k: int, temperature: float, n_classes: int, block: int) -> np.ndarray:
    """(n, D) raw features -> (n, C) weighted-vote probabilities."""
    sims, labels = sorted_neighbours(X, source, k, block)
    return vote(sims, labels, k, temperature, n_classes)


def k_candidates(y_fit: np.ndarray, grid=K_GRID) -> list[int]:
    """K_GRID capped at the smallest training class's size, without repeats."""
    smallest = int(np.bincount(y_fit)[np.unique(y_fit)].min())
    return sorted({min(k, smallest) for k in grid})


def choose_k(source: Source, X_val, y_val, candidates: list[int], temperature: float, n_classes: int,
             block: int) -> tuple[int, list[dict]]:
    """The k of `candidates` with the best validation accuracy (lower validation loss, then the
    smaller k, break ties), and every candidate's scores. Validation rows only."""
    from classify.training.models import scores

    sims, labels = sorted_neighbours(X_val, source, max(candidates), block)
    sweep = []
    for k in candidates:
        loss, acc = scores(y_val, np.clip(vote(sims, labels, k, temperature, n_classes), 1e-12, 1))
        sweep.append({"k": k, "val_accuracy": acc, "val_loss": loss})
    best = max(sweep, key=lambda s: (s["val_accuracy"], -s["val_loss"], -s["k"]))
    return best["k"], sweep


# --------------------------------------------------------------------------- model file


def save_knn(path, source: Source, dim: int, k: int, temperature: float) -> None:
    """The normalised training rows (N, D) float32, their labels (N,), k and T as HDF5, written a
    chunk of `source` at a time."""
    from classify.runs.saved import FORMAT_VERSION, MODEL_FORMAT

    with h5py.File(path, "w") as f:
        feats = f.create_dataset("features", (0, dim), np.float32, maxshape=(None, dim), chunks=(256, dim))
        labels = f.create_dataset("labels", (0,), np.int64, maxshape=(None,), chunks=(4096,))
        for X, y in source():
            n = len(labels)
            feats.resize(n + len(y), axis=0)
            labels.resize(n + len(y), axis=0)
            feats[n:], labels[n:] = X, y
        f.attrs.update(format=MODEL_FORMAT, format_version=FORMAT_VERSION, kind="knn", k=int(k),
                       temperature=float(temperature))


def load_knn(path: Path, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    """A kNN model file -> predict_proba; refuses files classify did not write."""
    from classify.runs.saved import MODEL_FORMAT

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != MODEL_FORMAT or f.attrs.get("kind") != "knn":
                raise UserError(f"{path} is not a kNN model written by classify; re-run `python -m classify --model knn`")
            X, y = f["features"][()], f["labels"][()]
            k, temperature = int(f.attrs["k"]), float(f.attrs["temperature"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not a readable model file ({reason(e, 60)}); re-run classify to write it again") from None
    if X.ndim != 2 or y.shape != (len(X),) or k < 1 or not temperature > 0 or ((y < 0) | (y >= n_classes)).any():
        raise UserError(f"{path} is not a kNN model classify could have written; re-run `python -m classify --model knn`")
    source = array_source(X, y, 8192)
    return lambda Q: knn_proba(Q, source, k, temperature, n_classes, 1024)


# --------------------------------------------------------------------------- fitting


def knn_trained(source: Source, y_fit: np.ndarray, dim: int, X_val, y_val, n_classes: int, cfg, budget: int,
                chunk: int):
    """The Trained of a kNN over `source`: k fixed or chosen on the validation rows (never the test rows)."""
    from classify.runs.trained import Trained

    n_train = len(y_fit)
    candidates = k_candidates(y_fit)
    block = query_rows(budget, chunk, max(max(candidates), int(cfg.k) if cfg.k != "auto" else 0))
    T = float(cfg.temperature)
    details = {"temperature": T, "train_rows": int(n_train)}
    if cfg.k == "auto":
        k, sweep = choose_k(source, X_val, y_val, candidates, T, n_classes, block)
        details.update(k=k, k_sweep=sweep)
    else:
        k = min(int(cfg.k), int(n_train))
        details["k"] = k
    details["query_block_rows"] = block
    return Trained(
        predict_proba=lambda X: knn_proba(X, source, k, T, n_classes, block),
        save=lambda path: save_knn(path, source, dim, k, T),
        format="knn",
        history={},
        details=details,
    )


def fit_knn(X_fit, y_fit, X_val, y_val, n_classes: int, cfg, curves: bool = True):
    """kNN over the fit rows held in memory (normalised once); query blocks sized from --max-memory."""
    from classify.training.data import memory_budget
    from classify.training.models import check_training_rows

    check_training_rows(y_fit)
    X, y = normalise(X_fit), np.asarray(y_fit, dtype=np.int64)
    budget = memory_budget(cfg.max_memory)
    chunk = int(np.clip(budget // (4 * SIM_COPIES * FLOAT_BYTES * X.shape[1]), 256, 16384))
    return knn_trained(array_source(X, y, chunk), y, X.shape[1], X_val, y_val, n_classes, cfg, budget, chunk)


def fit_knn_stream(stream, n_classes: int, cfg, curves: bool = True):
    """kNN over a training set larger than --max-memory: every query block reads the fit rows (views
    included) from the cache one chunk at a time; the validation rows are read once to choose k."""
    from classify.training.models import check_training_rows

    check_training_rows(stream.fit_labels)
    source = lambda: ((normalise(X), y.astype(np.int64)) for X, y in stream.fit_chunks())  # noqa: E731
    X_val, y_val = stream.load(stream.val)
    return knn_trained(source, stream.fit_labels, stream.dim, X_val, y_val, n_classes, cfg, stream.budget,
                       stream.chunk)


SPEC = ModelSpec(
    name="knn", title="weighted k nearest neighbours", params=KNNParams, fit=fit_knn, fit_stream=fit_knn_stream,
    format="knn", suffix=".h5", load=load_knn,
    export_refusal="{run} is a kNN run: an exported graph would hold its whole training set "
                   "({rows} rows), so it is not exported; export an lr or mlp run of the same cache",
)
