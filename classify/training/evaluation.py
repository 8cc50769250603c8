"""Numbers beside a run's test accuracy: its bootstrap interval, calibration error, temperature scaling.

Plain numpy (and scipy's scalar minimiser); functions take labels and probabilities and return
plain numbers, so `classify.training.train`, `classify.workflows.compare` and `classify.workflows.fewshot` share them.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000       # bootstrap resamples of the test rows
LEVEL = 0.95           # the interval's coverage
BINS = 15              # equal-width confidence bins of the expected calibration error
BOOTSTRAP_SEED = 0     # the resamples are seeded: one run's interval is the same every time
DRAW_ELEMENTS = 2**22  # row indices drawn per block of resamples (32 MiB of int64)


def bootstrap_interval(correct: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (accuracy: the mean of a 0/1 vector per test row).

    Each resample draws len(correct) rows with replacement (`rng.integers(0, n, n)`, in blocks
    of resamples drawn at once, which gives the same indices as drawing them one by one)."""
    x = np.asarray(correct, dtype=np.float64)
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, DRAW_ELEMENTS // n)
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        means[start:start + b] = x[rng.integers(0, n, (b, n))].mean(axis=1)   # (b, n) -> (b,)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def accuracy_interval(y: np.ndarray, proba: np.ndarray) -> list[float]:
    """[low, high] bootstrap 95% interval of the test accuracy of probabilities (n, C)."""
    return list(bootstrap_interval(np.asarray(proba).argmax(axis=1) == np.asarray(y)))


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = BINS) -> dict:
    """Per equal-width confidence bin (lo, hi]: rows, mean confidence and accuracy of the top class
    (NaN where a bin is empty); lists, for the run record and the reliability diagram."""
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")   # bin i holds edges[i] < conf <= edges[i + 1]
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        accuracy = np.bincount(which, correct, minlength=bins) / count
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(), "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist()}


def ece(y: np.ndarray, proba: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the row-weighted mean gap |accuracy - confidence| over the bins."""
    r = reliability(y, proba, bins)
    count = np.asarray(r["count"], dtype=np.float64)
    gap = np.abs(np.nan_to_num(np.asarray(r["accuracy"]) - np.asarray(r["confidence"])))
    return float((gap * count).sum() / max(1.0, count.sum()))


def calibrated(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T). For LR and the MLP, log p is the
    logits less a per-row constant, so this is softmax(logits / T); for kNN, the votes' log shares.
    The top class never changes, so accuracy does not either."""
    z = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, None)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y_val: np.ndarray, proba_val: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the validation rows' log loss of `calibrated(p, T)`."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_val)
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-np.log(calibrated(proba_val, np.exp(log_t))[rows, y] + 1e-12).mean())

    best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))
