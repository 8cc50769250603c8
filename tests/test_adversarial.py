"""Adversarial training (classify --adversarial) and the robust-model workflow, on the real CIFAR-10 fixture
with random VGG16 weights at 32 px and two augmented views: tiny, but every part real."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CIFAR_FIXTURE, error_line, layout_problems, run_extract

TINY = ["--initial", "30", "--batch", "10", "--budget", "50", "--seeds", "2", "--limit", "8", "--epochs", "2",
        "--adv-every", "1", "--adv-steps", "1", "--pgd-steps", "2", "--eps", "0,2,8"]


@pytest.fixture(scope="module")
def views_cache(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adv-features") / "cifar-vgg16-views.h5"
    result = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none",
                          "--augment", "flip,color", "--views", "2", "--precision", "float32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def classify(*args):
    from classify.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def attack_of(cache_path, seed=0):
    """A PixelAttack on the cache's float32 backbone and a random Dense head (seeded)."""
    from classify.pixel.endtoend import float_backbone
    from classify.pixel.gradients import PixelAttack
    from featurecache.cache import read_cache
    from featurecache.extractor import Extractor
    from featurecache.tfimport import keras

    cache = read_cache(cache_path)
    keras().utils.set_random_seed(seed)
    dense = keras().layers.Dense(len(cache.class_names))
    dense.build((None, cache.train.features.shape[1]))
    return cache, PixelAttack(float_backbone(Extractor.from_cache(cache.attrs, keras=True), cache.attrs),
                              lambda f, training=False: dense(f))


def test_adversarial_examples_stay_in_the_eps_ball_and_in_0_255_and_trace_once(views_cache):
    from classify.pixel.adversarial import read_pixels

    cache, attack = attack_of(views_cache)
    x = read_pixels(cache.attrs, cache.train.sources[:12], attack.size)
    y = cache.train.labels[:12].astype(np.int64)
    out = attack.fgsm(x, y, [1, 2.5, 8])
    for i, eps in enumerate((1, 2.5, 8)):
        diff = np.abs(out["images"][i].astype(int) - x.astype(int))
        assert diff.max() <= np.floor(eps) and diff.max() > 0   # moved, and never beyond the integer ball
    pgd = attack.pgd(x[:7], y[:7], 3.7, steps=3, step_size=3.0, rng=np.random.default_rng(1))
    diff = np.abs(pgd["images"].astype(int) - x[:7].astype(int))
    assert pgd["images"].dtype == np.uint8 and 0 < diff.max() <= 3
    assert attack.pgd(x, y, 8.0, steps=5)["images"].max() <= 255   # uint8 by construction; values come from clip
    assert attack.traces == 2   # one trace per function, whatever the eps, steps or batch size


def test_adversarial_training_records_its_settings_and_keeps_its_examples_in_bounds(views_cache, tmp_path):
    r = classify("--features", views_cache, "--out-dir", tmp_path, "--adversarial", "pgd", "--adv-eps", "3",
                 "--adv-steps", "2", "--adv-every", "2", "--epochs", "3", "--batch-size", "32")
    assert r.exit_code == 0, r.output
    run = next(tmp_path.glob("*-run.json"))
    assert "-lr-adv-pgd2-eps3-r0.5-every2-" in run.name
    record = json.loads(run.read_text())
    adv = record["adversarial"]
    assert {k: adv[k] for k in ("method", "eps", "steps", "ratio", "every")} == \
        {"method": "pgd", "eps": 3.0, "steps": 2, "ratio": 0.5, "every": 2}
    assert record["config"]["adversarial"] == "pgd" and record["settings"]["adv_eps"] == 3.0
    assert [g["epoch"] for g in adv["regenerations"]] == [1, 3]
    for g in adv["regenerations"]:
        assert 0 < g["max_linf"] <= 3 and 0 <= g["min_pixel"] and g["max_pixel"] <= 255
    assert sorted(adv["regenerated_rows"]) == sorted(set(range(100)) - set(record["val_images"]))
    assert adv["traces"] == 1
    from classify.runs.saved import load_run

    assert load_run(run).predict_proba(np.zeros((2, 512), np.float32)).shape == (2, 10)   # saved as an LR run


def test_adv_ratio_0_is_plain_training(views_cache, tmp_path):
    plain, zero = tmp_path / "plain", tmp_path / "zero"
    for out, extra in ((plain, []), (zero, ["--adversarial", "pgd", "--adv-ratio", "0"])):
        r = classify("--features", views_cache, "--out-dir", out, "--model", "mlp", "--epochs", "3", *extra)
        assert r.exit_code == 0, r.output
    a, b = (json.loads(next(d.glob("*-run.json")).read_text()) for d in (plain, zero))
    assert next(plain.glob("*-run.json")).name == next(zero.glob("*-run.json")).name
    assert a["run_id"] == b["run_id"] and b.get("adversarial") is None
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"] and a["history"]["val_loss"] == b["history"]["val_loss"]
    ra, rb = (json.loads(next(d.glob("**/*-report.json")).read_text()) for d in (plain, zero))   # in the run's folder
    assert ra == rb


def test_adversarial_refuses_what_it_cannot_train(views_cache, tmp_path):
    r = classify("--features", views_cache, "--out-dir", tmp_path, "--model", "rf", "--adversarial", "fgsm")
    assert "lr or mlp" in error_line(r, 1)
    r = classify("--features", views_cache, "--out-dir", tmp_path, "--adversarial", "fgsm", "--C", "auto")
    assert "--C auto" in error_line(r, 1)
    assert not list(tmp_path.glob("*-run.json"))


def test_the_evaluation_attacks_the_model_under_evaluation(views_cache):
    from classify.pixel.adversarial import read_pixels
    from classify.workflows.robust_model import evaluate_model

    from classify.pixel.endtoend import float_backbone
    from classify.training.lr import lr_pipeline, lr_weights
    from classify.workflows.robust_model import BaselineAttack
    from featurecache.cache import read_cache
    from featurecache.extractor import Extractor

    cache = read_cache(views_cache)
    backbone = float_backbone(Extractor.from_cache(cache.attrs, keras=True), cache.attrs)
    X, labels = cache.train.features, cache.train.labels
    a, b = (BaselineAttack(backbone, X.shape[1], 10).set_lr(lr_weights(lr_pipeline(C, 300).fit(X[rows], labels[rows])), 10)
            for C, rows in ((0.01, slice(0, 100)), (10.0, slice(0, 100, 2))))   # two different LR models
    x = read_pixels(cache.attrs, cache.test.sources[:20], a.size)
    y = cache.test.labels[:20].astype(np.int64)
    rows = {(r["attack"], r["eps"]): r["accuracy"] for r in evaluate_model(a, x, y, (0, 1), 2, 0)}
    own = a.fgsm(x, y, [1])
    assert rows[("fgsm", 0.0)] == rows[("pgd", 0.0)] == np.mean(own["clean_pred"] == y) > 0
    assert rows[("fgsm", 1.0)] == np.mean(own["pred"][0] == y)        # crafted on a, scored by a
    crafted_on_b = b.fgsm(x, y, [1])["images"][0]
    assert (crafted_on_b != own["images"][0]).any()   # b's gradients give other images ...
    transfer = a.fgsm(crafted_on_b, y, [0])["clean_pred"]   # ... scored by a
    assert rows[("fgsm", 1.0)] < np.mean(transfer == y)   # the own-gradient attack is the stronger one


@pytest.fixture(scope="module")
def workflow(views_cache, tmp_path_factory):
    from classify.pixel import adversarial
    from classify.commands.robust_model import cli

    out = tmp_path_factory.mktemp("robust")
    read = []
    real = adversarial.read_pixels

    def spy(attrs, sources, size):   # the real reader; the test only notes which pictures were read
        read.append([str(s) for s in sources])
        return real(attrs, sources, size)

    mp = pytest.MonkeyPatch()
    mp.setattr(adversarial, "read_pixels", spy)
    try:
        r = CliRunner().invoke(cli, ["--features", str(views_cache), "--out-dir", str(out), *TINY])
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    return out, read


def test_the_workflow_writes_its_table_figure_and_settings(workflow):
    out, _ = workflow
    files = {p.suffix: p for p in out.glob("*-robust-model.*")}
    assert set(files) == {".csv", ".md", ".json", ".png"}
    rows = list(csv.DictReader(files[".csv"].open()))
    assert len(rows) == 2 * 2 * 2 * 3   # models x seeds x attacks x eps
    assert {(r["model"], r["seed"]) for r in rows} == {(m, s) for m in ("baseline", "robust") for s in ("0", "1")}
    doc = json.loads(files[".json"].read_text())
    s = doc["settings"]
    assert (s["seeds"], s["limit"], s["eps"], s["pgd_steps"], s["initial"], s["batch"], s["budget"], s["adversarial"],
            s["adv_steps"], s["adv_every"], s["epochs"]) == (2, 8, [0.0, 2.0, 8.0], 2, 30, 10, 50, "pgd", 1, 1, 2)
    assert s["n_test"] == 8 and s["input_size"] == 32
    for seed in doc["seeds"]:
        assert seed["baseline"]["attacked_against"] == "baseline" and seed["robust"]["attacked_against"] == "robust"
        assert len(seed["robust"]["rows"]) == len(seed["baseline"]["rows"]) == 50
        assert seed["robust"]["adversarial"]["method"] == "pgd"
    assert "| robust | PGD |" in files[".md"].read_text()
    page = (out / "index.html").read_text()
    assert "Robust model" in page and files[".png"].name in page and files[".md"].name in page


def test_no_test_image_is_used_for_training_or_regeneration(workflow, views_cache):
    from featurecache.cache import read_cache

    out, read = workflow
    cache = read_cache(views_cache)
    test = {str(s) for s in cache.test.sources}
    train = [str(s) for s in cache.train.sources]
    doc = json.loads(next(out.glob("*-robust-model.json")).read_text())
    evaluated = doc["settings"]["test_sources"]
    assert read[0] == evaluated and set(evaluated) <= test   # read once, to be attacked and scored
    assert len(read) == 1 + 2   # the test pictures, then one regeneration set per seed
    for seed, sources in zip(doc["seeds"], read[1:]):
        assert sources == [train[i] for i in seed["robust"]["regenerated_rows"]] == seed["robust"]["sources"]
        assert not set(sources) & test and not set(seed["baseline"]["sources"]) & test


def test_the_workflow_refuses_a_cache_without_views(tiny_cache, tmp_path):
    from classify.commands.robust_model import cli

    r = CliRunner().invoke(cli, ["--features", str(tiny_cache), "--out-dir", str(tmp_path), *TINY])
    assert "has no augmented views" in error_line(r, 1)


def test_the_workflow_figure_is_clean(workflow):
    from classify.workflows.robust_model import figure

    out, _ = workflow
    doc = json.loads(next(out.glob("*-robust-model.json")).read_text())
    fig = figure(doc["summary"], 2, "a-long-cache-name-0123456789abcdef-robust-model: baseline vs robust model under attack")
    assert layout_problems(fig) == []
