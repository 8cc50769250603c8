"""classify: each model on small caches, what a run writes, the C sweep, saved models, no TensorFlow for lr/rf."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sklearn.metrics import accuracy_score, log_loss

from classify.training.forest import RF_MAX_FEATURES, bootstrap_rows, fit_rf

from classify.runs import saved
from classify.cli import cli
from classify.training.config import ClassifyConfig
from classify.training.lr import C_GRID, fit_lr
from classify.training.specs import FORMATS
from classify.training.data import split_rows
from classify.runs.saved import load_run
from classify.training.train import train_and_evaluate
from conftest import ROOT, blob_cache, invoke
from featurecache.cache import read_cache

BLOBS_FILE = "blobs-none-gap-1px.h5"   # the `blobs` fixture's file: the runs' names below start with its stem


def run_base(out_dir, stem: str, model: str) -> str:
    """<stem>-<model>-<run id>: the name the latest run of `model` on the cache `stem` was written under."""
    return json.loads((out_dir / f"{stem}-{model}-latest.json").read_text())["run"].removesuffix("-run.json")


def run_file(out_dir, stem: str, model: str, suffix: str):
    """A file of the latest run: the record at the top of out_dir, the others in the run's folder <base>/."""
    base = run_base(out_dir, stem, model)
    return (out_dir if suffix == "run.json" else out_dir / base) / f"{base}-{suffix}"


def run_files(out_dir, stem: str, model: str) -> dict:
    return {k: run_file(out_dir, stem, model, k) for k in
            ("curves.png", "confusion.png", "gallery.png", "report.txt", "report.json", "run.json")}


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# --------------------------------------------------------------------------- each model


@pytest.mark.parametrize("model, extra", [
    ("lr", ["--max-iter", "60"]),
    ("rf", ["--n-estimators", "20"]),
    ("mlp", ["--epochs", "4", "--hidden", "32", "--learning-rate", "0.05"]),
])
def test_each_model_learns_separable_clusters_and_reloads(model, extra, blobs, tmp_path):
    result = invoke(cli, ["--model", model, "--features", blobs, "--out-dir", tmp_path, *extra])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', model)}-run.json").read_text())
    assert record["metrics"]["accuracy"] >= 0.95
    assert result.output.rstrip().splitlines()[-1].startswith(
        f"{model} on blobs-none-gap-1px: test accuracy {record['metrics']['accuracy']:.4f}")
    # the saved model, reloaded through the predict contract, gives the same test predictions
    run = load_run(tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', model)}-run.json")
    cache = read_cache(blobs)
    proba = run.predict_proba(cache.test.features)
    assert proba.shape == (len(cache.test.labels), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-4)
    assert np.mean(proba.argmax(1) == cache.test.labels) == pytest.approx(record["metrics"]["accuracy"])
    assert run.class_names == ["class0", "class1", "class2"]
    assert run.cache_attrs["backbone"] == "none" and run.cache_attrs["feature_dim"] == 16
    h = record["history"]
    assert len(h["x"]) == len(h["train_loss"]) == len(h["val_loss"]) == len(h["train_acc"]) == len(h["val_acc"]) >= 1
    if model == "mlp":
        assert h["x_label"] == "epoch" and len(h["x"]) <= 4 and record["chosen"]["best_epoch"] <= len(h["x"])
    if model == "rf":
        assert h["x_label"] == "trees" and h["x"][-1] == 20 and h["x"] == sorted(h["x"])
    if model == "lr":  # a given C: its point, marked, on a curve of neighbouring C fitted for the figure only
        assert h["x_label"] == "C" and h["chosen"] == 0.01 and 0.01 in h["x"] and len(h["x"]) == 5
        assert h["x"] == sorted(h["x"]) and h["x"][0] == pytest.approx(0.001) and h["x"][-1] == pytest.approx(0.1)
        assert "given C" in h["mark_label"] and record["metrics"]["curve_time_s"] >= 0


def test_lr_run_on_real_tiny_cache_writes_every_file_holding_what_it_claims(tiny_cache, tmp_path):
    result = invoke(cli, ["--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path, "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    stem = tiny_cache.stem
    files = run_files(tmp_path, stem, "lr")
    for name, path in files.items():
        assert path.is_file(), name
        assert str(path) in result.output  # the summary says where each file went
    assert run_file(tmp_path, stem, "lr", "model.h5").is_file()
    for png in ("curves.png", "confusion.png", "gallery.png"):
        w, h = png_size(files[png])
        assert w >= 400 and h >= 250, (png, w, h)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    text = files["report.txt"].read_text()
    assert all(n in text for n in names)
    report = json.loads(files["report.json"].read_text())
    assert set(names) <= set(report) and "macro avg" in report
    record = json.loads(files["run.json"].read_text())
    assert record["format"] == "featurecache-run"
    assert record["hyperparameters"] == {"C": 0.01, "max_iter": 300}
    assert record["config"]["val_fraction"] == 0.2 and record["config"]["seed"] == 0
    assert record["cache"]["path"] == str(tiny_cache)
    assert record["cache"]["attrs"]["backbone"] == "vgg16" and record["cache"]["attrs"]["data_kind"] == "cifar10"
    m = record["metrics"]
    assert {"accuracy", "macro_f1", "train_time_s", "predict_time_s"} <= set(m)
    assert (m["n_fit"], m["n_val"], m["n_test"]) == (80, 20, 20)
    assert m["accuracy"] == pytest.approx(report["accuracy"])
    assert record["gallery"] == "written" and record["class_names"] == names
    # the settings that apply are logged once; the record keeps every setting
    assert result.output.count("settings: ") == 1 and "n_estimators" not in result.output
    assert record["settings"] == {"model": "lr", "seed": 0, "val_fraction": 0.2, "train_size": None, "C": 0.01,
                                  "max_iter": 300}
    assert record["config"]["n_estimators"] == 300


def test_gallery_shows_misclassified_test_images(tiny_cache):
    from classify.training.train import gallery_items

    cache = read_cache(tiny_cache)
    result = train_and_evaluate(cache, ClassifyConfig(model="lr", val_fraction=0.2), curves=False)
    items, why_not = gallery_items(cache, result.proba)
    pred = result.proba.argmax(1)
    assert why_not is None
    assert len(items) == min(24, int((pred != cache.test.labels).sum()))
    for item in items:
        assert item["true"] != item["predicted"]
        assert item["image"].shape == (32, 32, 3) and item["image"].dtype == np.uint8
    probs = [i["probability"] for i in items]
    assert probs == sorted(probs, reverse=True)  # most confident mistakes first


def test_plot_and_report_names_are_the_users(blobs, tmp_path):
    result = invoke(cli, ["--model", "lr", "--features", blobs, "--out-dir", tmp_path,
                          "--plot-name", "my_plot.png", "--report-name", "my_report"])
    assert result.exit_code == 0, result.output
    for name in ("my_plot.png", "my_plot-confusion.png", "my_report.txt", "my_report.json",
                 "my_report-run.json", "my_report-model.h5"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob("blobs-*")) and not list(tmp_path.glob(".*tmp*"))
    assert load_run(tmp_path / "my_report-run.json").record.files["curves"] == str(tmp_path / "my_plot.png")


def test_features_are_standardised_with_training_statistics_only(blobs, tmp_path):
    assert invoke(cli, ["--model", "lr", "--features", blobs, "--out-dir", tmp_path]).exit_code == 0
    cache = read_cache(blobs)
    rows = split_rows(cache.train.labels, 0.1, 0)  # the run's defaults: --val-fraction 0.1, --seed 0
    X = cache.train.features
    with h5py.File(run_file(tmp_path, "blobs-none-gap-1px", "lr", "model.h5")) as f:
        mean, scale = f["mean"][()], f["scale"][()]
    np.testing.assert_allclose(mean, X[rows.fit].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scale, X[rows.fit].std(axis=0), rtol=1e-4)
    assert not np.allclose(mean, X.mean(axis=0), rtol=1e-3)  # the validation rows are not in it
    assert not np.allclose(mean, np.concatenate([X, cache.test.features]).mean(axis=0), rtol=1e-3)


def _fit_lr(cache, cfg, curves=True):
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    return rows, fit_lr(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], len(cache.class_names), cfg, curves)


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_lr_agrees_with_scikit_learn_on_standardised_features(tiny_cache, C):
    cache = read_cache(tiny_cache)
    rows, trained = _fit_lr(cache, ClassifyConfig(model="lr", C=C, val_fraction=0.2), curves=False)
    X, y = cache.train.features[rows.fit], cache.train.labels[rows.fit]
    scaler = StandardScaler().fit(X)
    ref = LogisticRegression(C=C, max_iter=300).fit(scaler.transform(X), y)
    want = np.zeros((len(cache.test.labels), 10))
    want[:, ref.classes_] = ref.predict_proba(scaler.transform(cache.test.features))
    np.testing.assert_allclose(trained.predict_proba(cache.test.features), want, atol=1e-6)
    assert trained.details == {"C": C, "converged": True} and trained.history == {}


def test_lr_on_two_classes_saves_one_coefficient_row_and_predicts_both(tmp_path):
    path = blob_cache(tmp_path / "two.h5", classes=2, spread=0.6, seed=3)
    result = invoke(cli, ["--model", "lr", "--features", path, "--out-dir", tmp_path, "--C", "auto"])
    assert result.exit_code == 0, result.output
    base = run_base(tmp_path, "two", "lr")
    with h5py.File(tmp_path / base / f"{base}-model.h5") as f:
        assert f["coef"].shape == (1, 16) and list(f["classes"][()]) == [0, 1]
    cache = read_cache(path)
    proba = load_run(tmp_path / f"{base}-run.json").predict_proba(cache.test.features)
    record = json.loads((tmp_path / f"{base}-run.json").read_text())
    assert proba.shape == (90, 2) and 0.5 < record["metrics"]["accuracy"] < 1.0  # overlapping: both classes matter
    assert accuracy_score(cache.test.labels, proba.argmax(1)) == pytest.approx(record["metrics"]["accuracy"])


# --------------------------------------------------------------------------- --C auto


def test_C_sweep_chooses_on_validation_rows_only(tmp_path):
    # few rows, many noisy dimensions: regularisation matters, so the sweep's accuracies differ
    shape = dict(n_train=90, n_test=60, dim=120, classes=3, spread=0.35, seed=4)
    cache = read_cache(blob_cache(tmp_path / "noisy.h5", **shape))
    cfg = ClassifyConfig(model="lr", C="auto", val_fraction=0.3, seed=2)
    result = train_and_evaluate(cache, cfg)
    sweep, chosen = result.trained.details["C_sweep"], result.trained.details["C"]
    assert [s["C"] for s in sweep] == sorted(C_GRID)
    assert len({s["val_accuracy"] for s in sweep}) > 1, "the case should make the choice matter"
    best = max(sweep, key=lambda s: (s["val_accuracy"], -s["val_loss"]))
    assert chosen == best["C"]
    # each sweep point is what scikit-learn fits at that C on the fit rows, scored on the validation rows
    X, y = cache.train.features, cache.train.labels
    scaler = StandardScaler().fit(X[result.rows.fit])
    for s in sweep:
        ref = LogisticRegression(C=s["C"], max_iter=2000, tol=1e-8).fit(scaler.transform(X[result.rows.fit]), y[result.rows.fit])
        p = ref.predict_proba(scaler.transform(X[result.rows.val]))
        assert s["val_accuracy"] == pytest.approx(accuracy_score(y[result.rows.val], p.argmax(1)), abs=1 / len(result.rows.val) + 1e-9)
        assert s["val_loss"] == pytest.approx(log_loss(y[result.rows.val], p), rel=5e-2)  # lbfgs stops at tol 1e-4
    # the kept model is the sweep's fit at the chosen C: its validation scores are the sweep's
    p = result.trained.predict_proba(X[result.rows.val])
    assert log_loss(y[result.rows.val], p) == pytest.approx(best["val_loss"], rel=1e-9)
    # other test rows (labels scrambled, features replaced by noise) change nothing about the sweep
    rng = np.random.default_rng(0)
    scrambled = blob_cache(tmp_path / "scrambled.h5", **shape, test_labels=rng.integers(0, 3, 60),
                           test_features=rng.normal(0, 5, (60, 120)))
    again = train_and_evaluate(read_cache(scrambled), cfg)
    assert again.trained.details["C_sweep"] == sweep and again.trained.details["C"] == chosen
    assert again.trained.history == result.trained.history


def test_C_sweep_curve_has_one_point_per_C_and_marks_the_choice(blobs):
    rows, trained = _fit_lr(read_cache(blobs), ClassifyConfig(model="lr", C="auto"))
    h = trained.history
    assert h["x_label"] == "C" and h["x"] == sorted(C_GRID) and h["chosen"] == trained.details["C"]
    assert [s["val_accuracy"] for s in trained.details["C_sweep"]] == h["val_acc"]
    assert [s["val_loss"] for s in trained.details["C_sweep"]] == h["val_loss"]
    assert all(len(h[k]) == len(C_GRID) for k in ("train_loss", "val_loss", "train_acc", "val_acc"))
    assert h["train_loss"][0] > h["train_loss"][-1]  # weaker regularisation fits the training rows closer


def test_C_auto_from_the_command_line_is_recorded(blobs, tmp_path):
    result = invoke(cli, ["--model", "lr", "--features", blobs, "--out-dir", tmp_path, "--C", "auto"])
    assert result.exit_code == 0, result.output
    assert "C sweep (validation accuracy)" in result.output
    record = json.loads((tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', 'lr')}-run.json").read_text())
    assert record["hyperparameters"]["C"] == "auto" and record["chosen"]["C"] in C_GRID
    assert record["history"]["x"] == sorted(C_GRID) and record["history"]["chosen"] == record["chosen"]["C"]
    w, h = png_size(run_file(tmp_path, "blobs-none-gap-1px", "lr", "curves.png"))
    assert w >= 400 and h >= 250


# --------------------------------------------------------------------------- no TensorFlow for lr / rf


@pytest.mark.parametrize("model", ["lr", "rf"])
def test_lr_and_rf_never_import_tensorflow(model, blobs, tmp_path):
    code = (
        "import sys\n"
        "from classify.cli import cli\n"
        f"try:\n    cli(['--model', '{model}', '--features', r'{blobs}', '--out-dir', r'{tmp_path}', '--n-estimators', '5'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('IMPORTED:', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED: []" in out.stdout
    assert (tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', model)}-run.json").is_file()


def test_saved_linear_model_is_plain_arrays(blobs, tmp_path):
    assert invoke(cli, ["--model", "lr", "--features", blobs, "--out-dir", tmp_path]).exit_code == 0
    with h5py.File(run_file(tmp_path, "blobs-none-gap-1px", "lr", "model.h5")) as f:
        assert f.attrs["format"] == "featurecache-model"
        assert set(f) == {"coef", "intercept", "classes", "mean", "scale"}
        assert f["coef"].shape == (3, 16) and np.issubdtype(f["coef"].dtype, np.floating)


# --------------------------------------------------------------------------- random forest: curve and saved file


def test_forest_curve_scores_the_forest_of_its_first_trees(tiny_cache):
    from sklearn.ensemble import RandomForestClassifier

    cache = read_cache(tiny_cache)
    cfg = ClassifyConfig(model="rf", n_estimators=20, val_fraction=0.2)
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    trained = fit_rf(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], 10, cfg)
    h = trained.history
    assert h["x"] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    # each point is exactly what a forest of that many trees with the same seed scores
    for k in (4, 20):
        forest = RandomForestClassifier(n_estimators=k, random_state=cfg.seed, n_jobs=-1,
                                        max_features=RF_MAX_FEATURES).fit(X[rows.fit], y[rows.fit])
        p = np.zeros((len(rows.val), 10))
        p[:, forest.classes_] = forest.predict_proba(X[rows.val])
        i = h["x"].index(k)
        assert h["val_loss"][i] == pytest.approx(log_loss(y[rows.val], p, labels=range(10)), rel=1e-9)
        assert h["val_acc"][i] == pytest.approx(accuracy_score(y[rows.val], p.argmax(1)))
    assert h["train_acc"][-1] > h["val_acc"][-1]  # trees fit their own rows far better


def test_forest_scores_the_same_fresh_and_loaded(tiny_cache, tmp_path):
    result = invoke(cli, ["--model", "rf", "--features", tiny_cache, "--out-dir", tmp_path, "--val-fraction", "0.2",
                          "--n-estimators", "12", "--report-name", "f"])
    assert result.exit_code == 0, result.output
    cache = read_cache(tiny_cache)
    fresh = train_and_evaluate(cache, ClassifyConfig(model="rf", n_estimators=12, val_fraction=0.2))
    with h5py.File(tmp_path / "f-model.h5") as f:
        arrays = {k: f[k][()] for k in saved.FOREST_ARRAYS}
    # the training-time test probabilities are forest_proba on the arrays the run saved
    np.testing.assert_array_equal(fresh.proba, saved.forest_proba(cache.test.features, arrays, 10))
    np.testing.assert_array_equal(load_run(tmp_path / "f-run.json").predict_proba(cache.test.features), fresh.proba)
    # and the last curve point is forest_proba too, on the validation rows
    X, y = cache.train.features[fresh.rows.val], cache.train.labels[fresh.rows.val]
    half = {**arrays, "roots": arrays["roots"][:6]}  # the forest of the first 6 trees
    p6 = saved.forest_proba(X, half, 10)
    h = fresh.trained.history
    assert h["val_loss"][h["x"].index(6)] == pytest.approx(log_loss(y, p6, labels=range(10)), rel=1e-12)


def test_saved_forest_is_plain_arrays_predicting_as_scikit_learn(tiny_cache, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    cache = read_cache(tiny_cache)
    X, y = cache.train.features, cache.train.labels
    keep = y != 3  # a class the forest never sees still gets a (zero) column
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(X[keep], y[keep])
    path = tmp_path / "forest.h5"
    saved.save_forest(path, saved.forest_arrays(forest))
    with h5py.File(path) as f:
        assert f.attrs["format"] == "featurecache-model" and f.attrs["kind"] == "forest"
        assert set(f) == set(saved.FOREST_ARRAYS)
        assert all(f[k].dtype.kind in "iuf" for k in f)  # numbers only: nothing to run, nothing to unpickle
    proba = FORMATS["forest"][1](path, 10)(cache.test.features)
    want = np.zeros((len(cache.test.labels), 10))
    want[:, forest.classes_] = forest.predict_proba(cache.test.features)
    np.testing.assert_allclose(proba, want, rtol=0, atol=1e-12)
    assert (proba[:, 3] == 0).all()


def test_mlp_learning_rate_defaults_to_the_optimizers_own():
    assert ClassifyConfig(model="mlp").optimizer == "adam" and ClassifyConfig(model="mlp").learning_rate == 0.001
    assert ClassifyConfig(model="mlp", optimizer="sgd").learning_rate == 0.01
    assert ClassifyConfig(model="mlp", optimizer="sgd", learning_rate=0.2).learning_rate == 0.2
    assert ClassifyConfig(model="mlp", optimizer="sgd").hyperparameters()["learning_rate"] == 0.01  # recorded resolved


def test_forest_trees_draw_bootstrap_samples_of_part_of_the_rows(tiny_cache):
    from sklearn.ensemble import RandomForestClassifier

    assert [bootstrap_rows(n, None) for n in (100, 2_500, 24_000, 45_000)] == [100, 2_500, 2_500, 4_500]
    assert bootstrap_rows(45_000, 0.5) == 22_500 and bootstrap_rows(3, 0.01) == 1
    cache = read_cache(tiny_cache)
    cfg = ClassifyConfig(model="rf", n_estimators=8, max_samples=0.5, val_fraction=0.2)
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    trained = fit_rf(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], 10, cfg, curves=False)
    half = round(0.5 * len(rows.fit))
    assert trained.details["bootstrap_rows"] == half
    forest = RandomForestClassifier(n_estimators=8, random_state=0, n_jobs=-1, max_samples=half,
                                    max_features=RF_MAX_FEATURES).fit(X[rows.fit], y[rows.fit])
    want = np.zeros((len(cache.test.labels), 10))
    want[:, forest.classes_] = forest.predict_proba(cache.test.features)
    np.testing.assert_allclose(trained.predict_proba(cache.test.features), want, atol=1e-12)


def test_max_samples_outside_zero_to_one_is_refused(tiny_cache, tmp_path):
    result = invoke(cli, ["--model", "rf", "--features", tiny_cache, "--out-dir", tmp_path, "--max-samples", "1.5"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2 and "--max-samples" in result.output
    assert not list(tmp_path.iterdir())
