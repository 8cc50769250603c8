"""The audit's figures: duplicate pairs side by side, suspected label errors, the similarity histogram.

Each function draws from plain data and saves a PNG at the path it is given (Agg backend).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def pairs_gallery(items: list[dict], path: Path, title: str, columns: int = 3) -> None:
    """Pairs of pictures side by side, each pair captioned with its sources and similarity.

    items: [{first (h, w, 3) uint8, second, first_source, second_source, similarity}]."""
    rows = -(-len(items) // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.2 * 2 * columns, 2.6 * rows + 0.6),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        for side, key in enumerate(("first", "second")):
            ax = axes[r, 2 * c + side]
            ax.imshow(item[key])
            ax.set_title(short(item[f"{key}_source"]), fontsize=7)
        axes[r, 2 * c].text(1.02, -0.08, f"cosine {item['similarity']:.3f}", transform=axes[r, 2 * c].transAxes,
                            fontsize=8, ha="center", va="top")
    fig.suptitle(title)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def suspects_gallery(items: list[dict], path: Path, title: str, columns: int = 6) -> None:
    """Training images whose given label the features disagree with, captioned given -> predicted.

    items: [{image, source, given, predicted, score}]."""
    rows = -(-len(items) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.5 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for k, item in enumerate(items):
        ax = axes.flat[k]
        ax.imshow(item["image"])
        ax.set_title(f"{short(item['source'])}\ngiven {item['given']}, predicted {item['predicted']}\n"
                     f"score {item['score']:.2f}", fontsize=7)
    fig.suptitle(title)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def similarity_histogram(groups: dict[str, np.ndarray], threshold: float, path: Path, title: str) -> None:
    """Histograms of cosine similarity, one per group (known duplicates, random pairs), with the threshold."""
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    bins = np.linspace(-0.2, 1.0, 121)
    for name, values in groups.items():
        ax.hist(values, bins=bins, density=True, alpha=0.55, label=f"{name} (n={len(values):,})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"default --threshold {threshold:g}")
    ax.set_xlabel("cosine similarity of L2-normalised features")
    ax.set_ylabel("density (per group)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def short(source: str, width: int = 28) -> str:
    return source if len(source) <= width else "…" + source[-(width - 1):]
