"""Few-shot accuracy on cached features: K training images per class, several seeded draws, scored on
the whole test split (the command: `featurecache fewshot`)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from classify.training.config import ClassifyConfig
from classify.training.evaluation import bootstrap_interval
from classify.training.knn import K_GRID
from featurecache.errors import SettingError

FEWSHOT_MODELS = ("lr", "knn", "mlp")


def draw_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` row indices of every class present in `labels` (the train split's), seeded; sorted.
    The same (labels, shots, seed) always gives the same rows."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < shots:
        raise SettingError(f"shots={shots}: class {int(classes[counts.argmin()])} has only {int(counts.min())} "
                           f"training rows; pass shots={int(counts.min())} or fewer")
    rng = np.random.default_rng([seed, shots])
    picked = [rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def fit_draw(model: str, X: np.ndarray, y: np.ndarray, n_classes: int, cfg: ClassifyConfig):
    """Fit one few-shot set: no validation rows exist, so the fit rows stand in for them."""
    from classify.training.specs import SPECS

    shots = int(np.bincount(y).max())
    run = dataclasses.replace(cfg, model=model, k=min(K_GRID[0], shots) if model == "knn" else cfg.k)
    return SPECS[model].fit(X, y, X, y, n_classes, run, False)


def summarise(acc: list[float], single_ci: tuple[float, float]) -> dict:
    """mean, std (ddof 1) and the 95% interval of the mean over seeds (bootstrap of one draw if one seed)."""
    from scipy import stats

    a = np.asarray(acc)
    if len(a) == 1:
        return {"mean": float(a[0]), "std": 0.0, "low": single_ci[0], "high": single_ci[1], "interval": "bootstrap"}
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "low": float(max(0.0, a.mean() - half)),
            "high": float(min(1.0, a.mean() + half)), "interval": "t over seeds"}


def fewshot(cache, models: tuple[str, ...], shots: list[int], seeds: int, cfg: ClassifyConfig) -> dict:
    """Every (model, shots, seed) draw fitted and scored on the whole test split; plain data."""
    X, y = cache.train.features, cache.train.labels
    X_test, y_test = cache.test.features, cache.test.labels     # scored only
    n_classes = len(cache.class_names)
    draws = {s: {cfg.seed + i: draw_shots(y, s, cfg.seed + i) for i in range(seeds)} for s in shots}
    rows, runs = [], []
    for model in models:
        for s in shots:
            acc, ci = [], (float("nan"), float("nan"))
            for seed, idx in draws[s].items():
                start = time.perf_counter()
                trained = fit_draw(model, X[idx], y[idx], n_classes, dataclasses.replace(cfg, seed=seed))
                correct = trained.predict_proba(X_test).argmax(axis=1) == y_test
                acc.append(float(correct.mean()))
                ci = bootstrap_interval(correct)
                runs.append({"model": model, "shots": s, "seed": seed, "accuracy": acc[-1], "accuracy_ci": list(ci),
                             "seconds": round(time.perf_counter() - start, 3)})
            rows.append({"model": model, "shots": s, "seeds": seeds, **summarise(acc, ci)})
    return {"rows": rows, "runs": runs, "draws": {str(s): {str(k): v.tolist() for k, v in d.items()}
                                                  for s, d in draws.items()}}
