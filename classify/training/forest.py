"""Random forest: its settings, its fits (in memory; a subsample that fits when streamed), its model file.

Trees on raw features, on all cores, converted once to node arrays (`classify.runs.saved.forest_arrays`)
that are saved as HDF5 and scored by `saved.forest_proba`, right after training and after loading
alike. A forest has no gradient and no Keras form: its runs are not exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from classify.runs import saved
from classify.runs.trained import Trained
from classify.training.modelspec import ModelSpec, check_int, check_real
from classify.training.models import CURVE_ROWS, add_point, check_training_rows, curve_rows, new_history, scores

if TYPE_CHECKING:
    from classify.training.config import ClassifyConfig
    from classify.training.data import Stream

RF_MIN_SAMPLES = 2500   # rows a tree's bootstrap sample draws at least
RF_MAX_FEATURES = "log2"  # features tried per split: 9 of 512, where scikit-learn's "sqrt" tries 22;
                          # the same test accuracy in half the CPU (docs/performance.md)
RF_CURVE_ROWS = 1000    # training rows scored at each curve point: every point walks them through every tree


@dataclass
class RFParams:
    # many trees, each on a bootstrap sample of part of the rows (as scikit-learn's own benchmarks grow
    # them): on 45,000 x 512 rows, 300 trees on 10% each reach the test accuracy of 100 trees on all
    # rows in a third of the time (docs/performance-scale.md)
    n_estimators: int = 300
    max_depth: int | None = None         # None: grow until leaves are pure
    max_samples: float | None = None     # share of the rows in each tree's bootstrap sample;
                                         # None: 10%, at least RF_MIN_SAMPLES rows (all, when fewer)

    def __post_init__(self) -> None:
        check_int("n_estimators", self.n_estimators)
        check_int("max_depth", self.max_depth, none=True)
        check_real("max_samples", self.max_samples, 0, 1, low_open=True, none=True)


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
                                   max_features=RF_MAX_FEATURES, random_state=cfg.seed,
                                   max_samples=sample if sample < len(y_fit) else None)
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
        details={"trees": len(arrays["roots"]), "bootstrap_rows": sample, "max_features": RF_MAX_FEATURES},
    )


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



SPEC = ModelSpec(
    name="rf", title="random forest", params=RFParams, fit=fit_rf, fit_stream=fit_rf_stream,
    format="forest", suffix=".h5", load=saved.load_forest, calibrates=False,
    export_refusal="{run} is a random-forest run, which has no Keras form to export; "
                   "export an lr or mlp run of the same cache",
)
