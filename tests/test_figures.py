"""Every figure the project draws, from real small runs on the CIFAR-10 fixture cache, measured with
matplotlib's own renderer at the size it is saved: every text's box lies inside the canvas, no two
text boxes overlap, no text or legend lies on another panel's axes, and gallery pictures are at
least 96 px on a side (or the model's input size)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from classify.reporting import plots
from conftest import classify_run, drawn_texts, layout_problems

# --------------------------------------------------------------------------- the check can fail


def test_the_check_finds_overlaps_clipped_titles_covering_legends_and_small_pictures():
    fig = plots.new_figure(3, 2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend()
    fig.text(0.5, 0.5, "over the data")
    fig.text(0.5, 0.52, "and over that text")
    fig.suptitle("a title far too long to fit a figure three inches wide, clipped at both ends")
    problems = layout_problems(fig)
    assert any("leaves the canvas" in p for p in problems)
    assert any("overlaps" in p for p in problems)
    assert any("another panel" in p for p in problems)
    assert any("legend inside" in p for p in problems)
    small = plots.new_figure(2, 2, layout=None)
    small.add_axes((0.1, 0.1, 0.3, 0.3)).imshow(np.zeros((32, 32, 3), np.uint8))
    assert any("under 96" in p for p in layout_problems(small, 96))
    placed = plots.new_figure(3, 2, layout=None)   # pictures at their own pixels, as the gallery places them
    placed.figimage(np.zeros((64, 48, 3), np.uint8), xo=10, yo=10)
    placed.figimage(np.zeros((100, 100, 3), np.uint8), xo=40, yo=40)
    placed.text(0.1, 0.2, "a caption on a picture")
    found = layout_problems(placed, 96)
    assert any("48x64 px, under 96" in p for p in found) and "two pictures overlap" in found
    assert any("lies on a picture" in p for p in found)


# --------------------------------------------------------------------------- real runs of each kind


@pytest.fixture(scope="module")
def runs(tiny_cache):
    """lr (given C), lr (C auto), rf and mlp on the fixture cache: {name: (RunResult, cache, cfg)}."""
    from classify.training.config import ClassifyConfig
    from classify.training.train import load_for_training, train_and_evaluate

    base = ClassifyConfig(features=str(tiny_cache))
    out = {}
    for name, cfg in (("lr", base), ("lr-auto", dataclasses.replace(base, C="auto")),
                      ("rf", dataclasses.replace(base, model="rf", n_estimators=20)),
                      ("mlp", dataclasses.replace(base, model="mlp", epochs=8, patience=2))):
        cache = load_for_training(tiny_cache, cfg)
        out[name] = (train_and_evaluate(cache, cfg), cache, cfg)
    return out


@pytest.mark.parametrize("name", ["lr", "lr-auto", "rf", "mlp"])
def test_curves_of_each_model_are_clean_and_mark_why(runs, name):
    result, cache, cfg = runs[name]
    history = result.trained.history
    fig = plots.curves_figure(history, f"{cfg.model} on {cache.path.stem}")
    assert layout_problems(fig) == []
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    if name == "lr":  # a given C: its point on a curve of neighbouring C, marked as given
        assert len(history["x"]) == 5 and history["chosen"] == 0.01 and "given C = 0.01" in labels[-1]
        assert result.metrics["curve_time_s"] >= 0 and "curve_seconds" not in history
    if name == "lr-auto":
        assert len(history["x"]) > 1 and labels[-1].startswith(f"chosen C = {history['chosen']:g}")
    if name == "mlp":  # the restored epoch: lowest validation loss
        best = int(np.argmin(history["val_loss"])) + 1
        assert history["chosen"] == best == result.trained.details["best_epoch"]
        assert labels[-1].startswith(f"restored epoch {best}")


def test_confusion_matrix_with_ten_class_names(runs):
    result, cache, _ = runs["lr"]
    fig = plots.confusion_figure(result.confusion, cache.class_names, f"lr on {cache.path.stem}: test accuracy 0.5")
    assert layout_problems(fig) == []


def test_gallery_pictures_are_at_least_96_px(runs):
    from classify.training.train import gallery_items

    result, cache, _ = runs["lr"]
    items, why = gallery_items(cache, result.proba)
    assert why is None and items
    side = plots.gallery_side(cache.attrs["image_size"])
    assert side >= 96
    for n in (1, len(items)):
        fig = plots.gallery_figure(items[:n], f"lr on {cache.path.stem}: most confident mistakes", side_px=side)
        assert layout_problems(fig, min_image_px=96) == []


def test_comparison_of_two_caches_with_long_names_and_several_settings(tiny_cache, tmp_path):
    from classify.commands.compare import cli
    from classify.workflows.compare import labelled, read_rows

    for models, extra in ((["lr", "rf"], []), (["lr"], ["--C", "auto"]), (["rf"], ["--n-estimators", "20"])):
        r = CliRunner().invoke(cli, ["--features", str(tiny_cache), "--n-estimators", "10", "--out-dir", str(tmp_path),
                                     *[a for m in models for a in ("--model", m)], *extra])
        assert r.exit_code == 0, r.output
        # each compare merged its fresh row with rows read back from the CSV: labelled by what differs only
        md = (tmp_path / "comparison.md").read_text()
        assert "seed=" not in md and "val_fraction=" not in md, md
    assert "| rf n_estimators=10 |" in md and "| rf n_estimators=20 |" in md and "| lr C=auto |" in md
    rows = read_rows(tmp_path / "comparison.csv")
    assert len(rows) == 4
    # the same rows again as those of a second cache with a long file name
    other = [{**r, "cache": "cifar10-vgg16-gap-32px-a-copy-with-a-rather-long-file-name-to-wrap",
              "cache_id": "0badcafe"} for r in rows]
    shown = labelled(rows + other)
    assert {r["model"] for r in shown} == {"lr C=auto", "lr C=0.01", "rf n_estimators=10", "rf n_estimators=20"}
    assert layout_problems(plots.comparison_figure(shown)) == []


def test_learning_curve_and_active_learning(runs):
    from classify.workflows import active
    from classify.workflows.learning_curve import learning_curve

    _, cache, cfg = runs["lr"]
    points = learning_curve(cache, dataclasses.replace(cfg, val_fraction=0.5), [30, 60, 100], seeds=2)
    assert layout_problems(plots.learning_curve_figure(points, f"lr on {cache.path.stem}")) == []
    done = active.active_learning(cache, cfg, ["margin", "random"], [0, 1], active.Plan(initial=20, batch=20, budget=60))
    fig = plots.active_figure(active.curves(done), 2, f"active learning: lr on {cache.path.stem}")
    assert layout_problems(fig) == []


@pytest.fixture(scope="module")
def attacked(tiny_cache, tmp_path_factory):
    from classify.pixel.attacks import AttackConfig, robustness
    from classify.runs.saved import load_run

    run = load_run(classify_run(tiny_cache, tmp_path_factory.mktemp("attacked")))
    return robustness(run, AttackConfig(attacks=("fgsm", "pgd"), eps=(0, 2, 8), pgd_steps=3, limit=6)), run


def test_robustness_curve_and_adversarial_examples(attacked):
    doc, run = attacked
    stem = "cifar10-vgg16-gap-32px-lr-1a2b3c4d"
    fig = plots.robustness_figure(doc, f"{stem}: accuracy under attack")
    assert layout_problems(fig) == []
    fig = plots.adversarial_figure(doc["examples"], ["fgsm", "pgd"], 8, run.class_names,
                                   f"{stem}: clean and attacked (green: correct)")
    assert layout_problems(fig) == []


def test_fgsm_rising_again_is_explained_on_the_figure(attacked):
    doc, _ = attacked
    # the real results, with FGSM's accuracy at the largest eps raised above the one before it
    results = [dict(r) for r in doc["results"]]
    fgsm = sorted((r for r in results if r["attack"] == "fgsm"), key=lambda r: r["eps"])
    fgsm[-1]["accuracy"] = min(1.0, fgsm[-2]["accuracy"] + 0.2)
    assert plots.fgsm_rises(results) and not plots.fgsm_rises(
        [{"attack": "fgsm", "eps": e, "accuracy": a} for e, a in ((0, 0.9), (2, 0.5), (8, 0.5))])
    fig = plots.robustness_figure({**doc, "results": results}, "cifar10-vgg16-gap-32px-lr: accuracy under attack")
    assert any("overshoots" in t.get_text() for t in drawn_texts(fig))
    assert layout_problems(fig) == []


def test_saved_figures_are_the_checked_size(runs, tmp_path):
    from PIL import Image

    result, cache, _ = runs["lr"]
    fig = plots.curves_figure(result.trained.history, "lr")
    plots.save(fig, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == (round(fig.bbox.width), round(fig.bbox.height))
