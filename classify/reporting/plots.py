"""PNG figures: training curves, confusion matrix, misclassified gallery, comparison, learning curve,
active-learning curves, accuracy under attack and adversarial examples.

Each figure has a `*_figure` function that draws it from plain data and returns the matplotlib
Figure (what tests measure: every text's box inside the canvas, no two boxes overlapping); `png`
gives a figure's PNG bytes (a run's four figures: `classify.runs.outputs.draw_run`), and the other
figures have a function of their own name that draws and saves them to the path it is given. Figures use
constrained layout and are saved at their own size (no tight bounding box), so the checked
figure is the saved one. Agg canvas; no display needed.
"""

from __future__ import annotations

import io
import textwrap
import threading
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
GALLERY_MIN_PX = 96        # the shorter side of a gallery picture at least, unless the model's input is smaller
GALLERY_PX = 160           # gallery picture box (pixels a side) when the model's input is not known
# held while a figure is built and drawn where another thread may draw too (compare, where it trains runs
# ahead in a thread): matplotlib's settings (rcParams, font families) are one per process
DRAWING = threading.RLock()

__all__ = ["DPI", "DRAWING", "new_figure", "save", "png", "wrap", "curves_figure", "confusion_figure",
           "gallery_side", "gallery_figure", "comparison_figure", "comparison", "learning_curve_figure",
           "learning_curve", "active_figure", "robustness_figure", "adversarial_figure"]


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A Figure on an Agg canvas (not registered with pyplot: nothing to close, nothing leaks)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path) -> None:
    """Save at the figure's own size (to a path or a binary file): what the overlap check measured is
    what is written. The layout is computed once, then fixed: `savefig` would walk every artist once
    more just to lay them out."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")
    fig.savefig(path, format="png", dpi=DPI)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, saved as `save` saves it."""
    buffer = io.BytesIO()
    save(fig, buffer)
    return buffer.getvalue()


def wrap(text: str, width_in: float, fontsize: float = 12) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points (a character of the
    default font is at most about 0.62 em wide)."""
    chars = max(12, int(width_in * 72 / (0.62 * fontsize)))
    return "\n".join(textwrap.wrap(str(text), chars, break_on_hyphens=True, break_long_words=True)) or str(text)


def headline(fig: Figure, text: str, fontsize: float = 11) -> None:
    fig.suptitle(wrap(text, fig.get_figwidth() - 0.3, fontsize), fontsize=fontsize)


# --------------------------------------------------------------------------- training curves


def mark_label(history: dict) -> str:
    """What the marked x is and why: the C kept (or given), the epoch whose weights were restored."""
    if history.get("mark_label"):
        return str(history["mark_label"])
    x, kind = history["chosen"], history["x_label"]
    if kind == "C":
        return f"chosen C = {x:g} (best validation accuracy)"
    if kind == "epoch":
        return f"restored epoch {x:g} (lowest validation loss)"
    return f"kept {kind} {x:g}"


def curves_figure(history: dict, name: str) -> Figure:
    """Two panels, loss and accuracy, training vs validation, over the model's own progress
    (history["x"]: C, trees, epochs or passes). Against C the x axis is logarithmic. The x in
    history["chosen"] (the C kept or given, the epoch restored) is marked and the legend says why."""
    fig = new_figure(9, 4.2)
    axes = fig.subplots(1, 2)
    xs = history["x"]
    for ax, metric, label in ((axes[0], "loss", "log loss"), (axes[1], "accuracy", "accuracy")):
        key = "loss" if metric == "loss" else "acc"
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(xs, history[f"{split}_{key}"], style, markersize=4 if len(xs) > 1 else 7,
                    label="training" if split == "train" else "validation")
        if history["x_label"] == "C":
            ax.set_xscale("log")
        if "chosen" in history and history["chosen"] in xs:
            i = xs.index(history["chosen"])
            ax.axvline(history["chosen"], color="gray", linestyle="--", linewidth=1, label=mark_label(history))
            ax.plot([history["chosen"]], [history[f"val_{key}"][i]], "o", markersize=11, markerfacecolor="none",
                    markeredgecolor="black")
            if len(xs) == 1:  # a record from before neighbouring C were drawn: its point, on a sweep's axes
                ax.set_xlim(history["chosen"] / 100, history["chosen"] * 100)
                ax.margins(y=0.5)
        ax.set_xlabel(history["x_label"] + (" (log scale)" if history["x_label"] == "C" else ""))
        ax.set_ylabel(label)
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    headline(fig, name)
    return fig


# --------------------------------------------------------------------------- confusion matrix


def confusion_figure(matrix: np.ndarray, class_names: list[str], name: str) -> Figure:
    """Counts, true class down, predicted class across, class names on both axes (predicted names
    turned upright when they would not fit their column)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(class_names)
    longest = max((len(str(c)) for c in class_names), default=1)
    fig = new_figure(max(4.5, 2.0 + 0.08 * longest + 0.6 * n), 2.0 + 0.08 * longest + 0.6 * n)
    ax = fig.subplots()
    upright = longest * 0.09 > 0.55  # inches of the longest name at 9 pt against a column's width
    ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=90 if upright else 0, values_format="d",
        text_kw={"fontsize": 8})
    ax.tick_params(labelsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    headline(fig, name, 10)
    return fig


# --------------------------------------------------------------------------- gallery


def gallery_side(image_size) -> int:
    """Pixels a side of a gallery picture's box: the model's input size, at least GALLERY_MIN_PX (so
    a 4:3 photo's shorter side has GALLERY_MIN_PX too) and at most 224."""
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        return GALLERY_PX
    return int(min(224, max(size, GALLERY_MIN_PX * 4 // 3)))


def picture(image: np.ndarray, side_px: int) -> np.ndarray:
    """`image` ((h, w, 3) uint8) scaled to fit a box of `side_px` pixels a side, keeping its shape:
    small pictures enlarged by whole pixels (a 32 px image stays sharp), large ones reduced smoothly."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = side_px / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return np.ascontiguousarray(image)
    resample = Image.NEAREST if scale >= 3 else Image.LANCZOS if scale < 1 else Image.BICUBIC
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, resample))


def gallery_figure(items: list[dict], name: str, columns: int = 6, side_px: int = GALLERY_PX) -> Figure:
    """Misclassified test images, each captioned true -> predicted (probability), in boxes of
    `side_px` pixels a side.

    Laid out by hand in figure coordinates (inches below, converted), without constrained layout,
    each picture placed at its own pixels (`figimage`: scaled once by PIL, no axes): measuring every
    text again, and an axes per picture, took longer than training a model on a small cache. The
    layout leaves each caption its own band, so nothing overlaps."""
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    image = side_px / DPI                                  # inches a side
    cell_w = max(image, 1.7) + 0.15                        # captions of long class names need ~1.7 in
    width = max(cell_w * columns, 5.0)
    head_text = wrap(name, width - 0.3, 11)
    head = 0.25 + 0.22 * (head_text.count("\n") + 1)       # title band
    cell, foot = image + 0.45, 0.1                         # a row: picture and its two-line caption
    height = head + rows * cell + foot
    fig = new_figure(width, height, layout=None)
    left = (width - cell_w * columns) / 2
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        bottom = foot + (rows - 1 - r) * cell              # inches from the bottom of the picture's box
        centre = left + (c + 0.5) * cell_w
        pic = picture(item["image"], side_px)
        ph, pw = pic.shape[:2]                             # centred in its box, whole pixels
        fig.figimage(pic, xo=round(centre * DPI - pw / 2), yo=round(bottom * DPI + (side_px - ph) / 2),
                     origin="upper")
        fig.text(centre / width, (bottom + image + 0.04) / height,
                 f"true {item['true']}\npred {item['predicted']} ({item['probability']:.2f})",
                 fontsize=8, ha="center", va="bottom")
    fig.text(0.5, 1 - 0.1 / height, head_text, fontsize=11, ha="center", va="top")
    return fig


# --------------------------------------------------------------------------- comparison


def comparison_figure(rows: list[dict]) -> Figure:
    """Horizontal bars: test accuracy of each run, one colour per cache, runs of a cache together;
    the value at each bar's end, the caches in a legend below the bars."""
    caches = list(dict.fromkeys(r["cache"] for r in rows))
    colours = {c: f"C{i % 10}" for i, c in enumerate(caches)}
    ordered = [r for c in caches for r in rows if r["cache"] == c]
    ys, y, last = [], 0.0, None
    for r in ordered:
        y += 1.6 if last is not None and r["cache"] != last else 1.0  # a gap between caches
        ys.append(y)
        last = r["cache"]
    fig = new_figure(8.5, 1.6 + 0.3 * len(ordered) + 0.25 * len(caches))
    ax = fig.subplots()
    for cache in caches:
        picked = [(yy, r) for yy, r in zip(ys, ordered) if r["cache"] == cache]
        acc = [float(r["accuracy"]) for _, r in picked]
        # the bootstrap 95% interval where the row has one (older tables do not)
        lo = [a - float(r.get("accuracy_low") or a) for a, (_, r) in zip(acc, picked)]
        hi = [float(r.get("accuracy_high") or a) - a for a, (_, r) in zip(acc, picked)]
        bars = ax.barh([yy for yy, _ in picked], acc, 0.8, color=colours[cache], label=wrap(cache, 7.5, 9),
                       xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], error_kw={"linewidth": 0.8, "capsize": 2})
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_yticks(ys, [wrap(r["model"], 2.6, 9) for r in ordered], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("test accuracy")
    ax.grid(alpha=0.3, axis="x")
    fig.legend(loc="outside lower center", ncols=1 if max(map(len, caches)) > 40 else min(3, len(caches)), fontsize=9,
               title="cache", title_fontsize=9)
    headline(fig, "classifiers on cached features (lines: bootstrap 95% interval)", 11)
    return fig


def reliability_figure(bins: dict, name: str) -> Figure:
    """Reliability diagram: accuracy of the test rows in each equal-width confidence bin against
    the diagonal of perfect calibration; bar shade by the share of rows in the bin."""
    from matplotlib import colormaps

    edges = np.asarray(bins["edges"])
    count = np.asarray(bins["count"], dtype=float)
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=float))
    conf = np.asarray(bins["confidence"], dtype=float)
    fig = new_figure(6.5, 4.8)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfectly calibrated")
    shade = 0.25 + 0.75 * count / max(1.0, count.max())
    ax.bar(edges[:-1], acc, width=np.diff(edges), align="edge", color=colormaps["Blues"](shade), edgecolor="white",
           label="accuracy in bin")
    seen = count > 0
    ax.plot(conf[seen], acc[seen], "o", color="black", markersize=3, label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy (test rows)")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    headline(fig, name, 10)
    return fig


def comparison(rows: list[dict], path: Path) -> None:
    with DRAWING:   # compare draws it while runs ahead may be drawing theirs
        save(comparison_figure(rows), path)


# --------------------------------------------------------------------------- learning and active-learning curves


def learning_curve_figure(points: list[dict], name: str) -> Figure:
    """Mean test accuracy (band: min..max over seeds) against training-set size, log x."""
    sizes = sorted({p["train_size"] for p in points})
    acc = [[p["accuracy"] for p in points if p["train_size"] == s] for s in sizes]
    fig = new_figure(6.5, 4.5)
    ax = fig.subplots()
    ax.plot(sizes, [np.mean(a) for a in acc], "-o", label="mean over seeds")
    ax.fill_between(sizes, [min(a) for a in acc], [max(a) for a in acc], alpha=0.25, label="min..max over seeds")
    ax.set_xscale("log")
    ax.set_xlabel("training-set size (rows, validation included; log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)
    headline(fig, name)
    return fig


def learning_curve(points: list[dict], path: Path, title: str) -> None:
    save(learning_curve_figure(points, title), path)


def fewshot_figure(rows: list[dict], name: str) -> Figure:
    """Mean test accuracy against training images per class (log x), one line per model, its
    95% interval as a band."""
    fig = new_figure(6.5, 4.5)
    ax = fig.subplots()
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["shots"])
        shots = [r["shots"] for r in mine]
        line, = ax.plot(shots, [r["mean"] for r in mine], "-o", markersize=4, label=model)
        ax.fill_between(shots, [r["low"] for r in mine], [r["high"] for r in mine], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    shots = sorted({r["shots"] for r in rows})
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.minorticks_off()
    ax.set_xlabel("training images per class (shots)")
    ax.set_ylabel("test accuracy (whole test split)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9, title="model", title_fontsize=9)
    headline(fig, name)
    return fig


def fewshot(rows: list[dict], path: Path, title: str) -> None:
    save(fewshot_figure(rows, title), path)


def active_figure(curves: dict[str, dict], seeds: int, name: str) -> Figure:
    """Mean test accuracy +- one sd over seeds against labelled images, one line per strategy
    (curves: strategy -> {labelled, mean, sd}, as classify.workflows.active.curves gives them)."""
    fig = new_figure(7, 4.8)
    ax = fig.subplots()
    for s, v in curves.items():
        line, = ax.plot(v["labelled"], v["mean"], "-o", markersize=3, label=s)
        ax.fill_between(v["labelled"], v["mean"] - v["sd"], v["mean"] + v["sd"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("labelled training images")
    ax.set_ylabel(f"test accuracy (mean ± 1 sd, {seeds} seed{'s' * (seeds > 1)})")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(4, len(curves)), fontsize=9, title="query strategy",
               title_fontsize=9)
    headline(fig, name)
    return fig


# --------------------------------------------------------------------------- robustness


FGSM_NOTE = ("FGSM takes a single step of size eps: at large eps it overshoots, so its accuracy can rise again. "
             "PGD (--attack pgd) is the stronger attack; read its curve where it is given.")


def fgsm_rises(results: list[dict]) -> bool:
    rows = sorted((r for r in results if r["attack"] == "fgsm"), key=lambda r: r["eps"])
    return any(b["accuracy"] > a["accuracy"] for a, b in zip(rows, rows[1:]))


def robustness_figure(doc: dict, name: str) -> Figure:
    """Test accuracy against eps, one line per attack; when FGSM's accuracy rises again at a larger
    eps, a note under the axes says why."""
    fig = new_figure(7, 4.6)
    ax = fig.subplots()
    for attack in doc["settings"]["attacks"]:
        rows = sorted((r for r in doc["results"] if r["attack"] == attack), key=lambda r: r["eps"])
        ax.plot([r["eps"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=attack.upper())
    ax.set_xlabel("eps (pixel values out of 255, L-infinity)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9, title="attack", title_fontsize=9)
    if fgsm_rises(doc["results"]):
        fig.supxlabel(wrap(FGSM_NOTE, 6.6, 8), fontsize=8, color="#444")
    headline(fig, name)
    return fig


def adversarial_figure(examples: dict, attacks: list[str], eps: float, names: list[str], name: str) -> Figure:
    """A few test images, clean and attacked at `eps`: one row per kind (named on its left), each
    picture titled with the class predicted (green: correct, red: wrong)."""
    rows = [("clean", "clean")] + [(a, f"{a.upper()}\neps {eps:g}") for a in attacks if a in examples]
    n = max(len(examples.get("clean", [])), 1)
    fig = new_figure(max(1.7 * n + 0.8, 4.5), 1.9 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (key, label) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if c >= len(examples.get(key, [])):
                continue
            pred = int(examples[f"{key}_pred"][c])
            ok = pred == int(examples["labels"][c])
            ax.imshow(examples[key][c])
            ax.set_title(wrap(names[pred], 1.5, 7), fontsize=7, color="green" if ok else "red")
    headline(fig, name, 9)
    return fig
