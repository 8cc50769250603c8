"""PNG figures: training curves, confusion matrix, misclassified gallery, comparison and learning curve.

Each function draws from plain data and saves to the path it is given
(matplotlib's Agg backend; no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path, tight: bool = True) -> None:
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight" if tight else None)
    plt.close(fig)


def curves(history: dict, path: Path, title: str) -> None:
    """Two panels, loss and accuracy, training vs validation, over the model's own progress
    (history["x"]: C, trees or epochs). Against C the x axis is logarithmic and the C that was
    kept (history["chosen"]) is marked with a vertical line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "loss", "log loss"), (axes[1], "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(history["x"], history[f"{split}_{metric}"], style, markersize=3 if len(history["x"]) > 1 else 6,
                    label="training" if split == "train" else "validation")
        if history["x_label"] == "C":
            ax.set_xscale("log")
        if "chosen" in history:
            single = len(history["x"]) == 1  # a fixed C: its point, on the axes a sweep would use
            ax.axvline(history["chosen"], color="gray", linestyle="--", linewidth=1,
                       label=f"{'fixed' if single else 'chosen'} C = {history['chosen']:g}")
            if single:
                ax.set_xlim(history["chosen"] / 100, history["chosen"] * 100)
                ax.margins(y=0.5)
        ax.set_xlabel(history["x_label"])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    fig.suptitle(title)
    _save(fig, path)


def confusion(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> None:
    """Counts, true class down, predicted class across, class names on both axes."""
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * n, 1.0 + 0.6 * n))
    ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d",
        text_kw={"fontsize": 8})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def gallery(items: list[dict], path: Path, title: str, columns: int = 6) -> None:
    """Misclassified test images, each captioned true -> predicted (probability).

    Laid out by hand in figure coordinates (inches below, converted), without subplot titles
    or a tight bounding box: each of those makes matplotlib measure every text again, which
    took half a second a gallery, longer than training a model on a small cache."""
    rows = -(-len(items) // columns)
    head, cell, image, foot = 0.5, 2.3, 1.75, 0.15   # inches: title band, row, picture, bottom margin
    height = head + rows * cell + foot
    fig = plt.figure(figsize=(2.0 * columns, height))
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        bottom = (foot + (rows - 1 - r) * cell) / height
        ax = fig.add_axes((c / columns + 0.01, bottom, 1 / columns - 0.02, image / height))
        ax.imshow(item["image"])
        ax.set_axis_off()
        fig.text((c + 0.5) / columns, bottom + (image + 0.05) / height,
                 f"true {item['true']}\npred {item['predicted']} ({item['probability']:.2f})",
                 fontsize=8, ha="center", va="bottom")
    fig.suptitle(title)
    _save(fig, path, tight=False)


def reliability(bins: dict, path: Path, title: str) -> None:
    """Reliability diagram: accuracy of the test rows in each equal-width confidence bin against
    the diagonal of perfect calibration; bar shade by the share of rows in the bin."""
    edges = np.asarray(bins["edges"])
    count = np.asarray(bins["count"], dtype=float)
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=float))
    conf = np.asarray(bins["confidence"], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.4), layout="constrained")
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfectly calibrated")
    shade = 0.25 + 0.75 * count / max(1.0, count.max())
    ax.bar(edges[:-1], acc, width=np.diff(edges), align="edge", color=plt.cm.Blues(shade), edgecolor="white",
           label="accuracy in bin")
    seen = count > 0
    ax.plot(conf[seen], acc[seen], "o", color="black", markersize=3, label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy (test rows)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    _save(fig, path, tight=False)


def comparison(rows: list[dict], path: Path) -> None:
    """Grouped bars: test accuracy per cache, one bar per model."""
    caches = list(dict.fromkeys(r["cache"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(caches) * len(models) / 2 + 2), 4))
    for k, model in enumerate(models):
        xs, ys, err = [], [], [[], []]
        for i, cache in enumerate(caches):
            for r in rows:
                if r["cache"] == cache and r["model"] == model:
                    xs.append(i + (k - (len(models) - 1) / 2) * width)
                    ys.append(float(r["accuracy"]))
                    # the bootstrap 95% interval where the row has one (older tables do not)
                    lo, hi = (float(r.get(c) or r["accuracy"]) for c in ("accuracy_low", "accuracy_high"))
                    err[0].append(max(0.0, ys[-1] - lo))
                    err[1].append(max(0.0, hi - ys[-1]))
        bars = ax.bar(xs, ys, width, label=model, yerr=err, capsize=2, error_kw={"linewidth": 0.8})
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(caches)), caches, rotation=15, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("classifiers on cached features (bars: bootstrap 95% interval)")
    _save(fig, path)


def learning_curve(points: list[dict], path: Path, title: str) -> None:
    """Mean test accuracy (band: min..max over seeds) against training-set size, log x."""
    sizes = sorted({p["train_size"] for p in points})
    acc = [[p["accuracy"] for p in points if p["train_size"] == s] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [np.mean(a) for a in acc], "-o", label="mean over seeds")
    ax.fill_between(sizes, [min(a) for a in acc], [max(a) for a in acc], alpha=0.25, label="min..max")
    ax.set_xscale("log")
    ax.set_xlabel("training-set size (rows, validation included)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title)
    _save(fig, path)


def fewshot(rows: list[dict], path: Path, title: str) -> None:
    """Mean test accuracy against training images per class (log x), one line per model, its
    95% interval as a band."""
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["shots"])
        shots = [r["shots"] for r in mine]
        ax.plot(shots, [r["mean"] for r in mine], "-o", markersize=4, label=model)
        ax.fill_between(shots, [r["low"] for r in mine], [r["high"] for r in mine], alpha=0.2)
    ax.set_xscale("log")
    shots = sorted({r["shots"] for r in rows})
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.minorticks_off()
    ax.set_xlabel("training images per class (shots)")
    ax.set_ylabel("test accuracy (whole test split)")
    ax.grid(alpha=0.3)
    ax.legend(title="model")
    ax.set_title(title, fontsize=10)
    _save(fig, path, tight=False)
