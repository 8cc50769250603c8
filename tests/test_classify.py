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

from classify import models
from classify.cli import cli
from classify.config import C_GRID, ClassifyConfig
from classify.saved import load_run
from classify.train import train_and_evaluate
from conftest import ROOT
from featurecache.cache import read_cache
from test_classify_data import blob_cache, invoke


def run_base(out_dir, stem: str, model: str) -> str:
    """<stem>-<model>-<run id>: the name the latest run of `model` on the cache `stem` was written under."""
    return json.loads((out_dir / f"{stem}-{model}-latest.json").read_text())["run"].removesuffix("-run.json")


def run_files(out_dir, stem: str, model: str) -> dict:
    return {k: out_dir / f"{run_base(out_dir, stem, model)}-{k}" for k in
            ("curves.png", "confusion.png", "gallery.png", "report.txt", "report.json", "run.json")}


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return blob_cache(tmp_path_factory.mktemp("blobs") / "blobs-none-gap-1px.h5")


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
    if model == "lr":
        assert h["x_label"] == "solver iteration" and h["x"][-1] <= 60 and h["x"] == sorted(h["x"])


def test_lr_run_on_real_tiny_cache_writes_every_file_holding_what_it_claims(tiny_cache, tmp_path):
    result = invoke(cli, ["--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path, "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    stem = tiny_cache.stem
    files = run_files(tmp_path, stem, "lr")
    for name, path in files.items():
        assert path.is_file(), name
        assert str(path) in result.output  # the summary says where each file went
    assert (tmp_path / f"{run_base(tmp_path, stem, 'lr')}-model.h5").is_file()
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
    # the config is logged once
    assert result.output.count("config: ") == 1


def test_gallery_shows_misclassified_test_images(tiny_cache):
    from classify.train import gallery_items

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
    assert load_run(tmp_path / "my_report-run.json").record["files"]["curves"] == str(tmp_path / "my_plot.png")


def test_features_are_standardised_with_training_statistics_only(blobs, monkeypatch):
    from classify.data import split_rows

    cache = read_cache(blobs)
    cfg = ClassifyConfig(model="lr", max_iter=50)
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    trained = models.fit_lr(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], 3, cfg, curves=False)
    seen = {}
    monkeypatch.setattr("classify.saved.save_linear", lambda path, weights: seen.update(weights))
    trained.save(None)
    np.testing.assert_allclose(seen["mean"], X[rows.fit].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(seen["scale"], X[rows.fit].std(axis=0), rtol=1e-4)
    assert not np.allclose(seen["mean"], np.concatenate([X, cache.test.features]).mean(axis=0), rtol=1e-3)


# --------------------------------------------------------------------------- --C auto


def test_C_sweep_chooses_on_validation_rows_only(tmp_path, monkeypatch):
    # few rows, many noisy dimensions: regularisation matters, so the sweep's accuracies differ
    path = blob_cache(tmp_path / "noisy.h5", n_train=90, n_test=60, dim=120, classes=3, spread=0.35, seed=4)
    cache = read_cache(path)
    calls = []
    real = models.choose_C

    def spy(X_fit, y_fit, X_val, y_val, grid, max_iter):
        calls.append((X_fit.copy(), y_fit.copy(), X_val.copy(), y_val.copy()))
        return real(X_fit, y_fit, X_val, y_val, grid, max_iter)

    monkeypatch.setattr(models, "choose_C", spy)
    cfg = ClassifyConfig(model="lr", C="auto", val_fraction=0.3, seed=2)
    result = train_and_evaluate(cache, cfg, curves=False)
    assert len(calls) == 1
    X_fit, y_fit, X_val, y_val = calls[0]
    # the chooser saw exactly the fit and validation rows, and no test row
    np.testing.assert_array_equal(X_fit, cache.train.features[result.rows.fit])
    np.testing.assert_array_equal(X_val, cache.train.features[result.rows.val])
    test_rows = {r.tobytes() for r in cache.test.features}
    assert not any(r.tobytes() in test_rows for r in np.concatenate([X_fit, X_val]))
    # the chosen C is the one with the best validation accuracy, checked with independent fits
    sweep = result.trained.details["C_sweep"]
    assert [s["C"] for s in sweep] == sorted(C_GRID)
    assert len({s["val_accuracy"] for s in sweep}) > 1, "the case should make the choice matter"
    scaler = StandardScaler().fit(X_fit)
    independent = {C: LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(X_fit), y_fit)
                   .score(scaler.transform(X_val), y_val) for C in C_GRID}
    best = max(independent.values())
    assert independent[result.trained.details["C"]] == pytest.approx(best, abs=1 / len(y_val) + 1e-9)
    assert max(s["val_accuracy"] for s in sweep) == pytest.approx(
        next(s for s in sweep if s["C"] == result.trained.details["C"])["val_accuracy"])
    # scrambling the test split changes nothing about the choice
    scrambled = blob_cache(tmp_path / "scrambled.h5", n_train=90, n_test=60, dim=120, classes=3, spread=0.35,
                           seed=4, test_labels=np.random.default_rng(0).integers(0, 3, 60))
    again = train_and_evaluate(read_cache(scrambled), cfg, curves=False)
    assert again.trained.details["C"] == result.trained.details["C"]
    assert again.trained.details["C_sweep"] == sweep


def test_C_auto_from_the_command_line_is_recorded(blobs, tmp_path):
    result = invoke(cli, ["--model", "lr", "--features", blobs, "--out-dir", tmp_path, "--C", "auto"])
    assert result.exit_code == 0, result.output
    assert "C sweep (validation accuracy)" in result.output
    record = json.loads((tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', 'lr')}-run.json").read_text())
    assert record["hyperparameters"]["C"] == "auto" and record["chosen"]["C"] in C_GRID


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
    with h5py.File(tmp_path / f"{run_base(tmp_path, 'blobs-none-gap-1px', 'lr')}-model.h5") as f:
        assert f.attrs["format"] == "featurecache-model"
        assert set(f) == {"coef", "intercept", "classes", "mean", "scale"}
        assert f["coef"].shape == (3, 16) and np.issubdtype(f["coef"].dtype, np.floating)


# --------------------------------------------------------------------------- random forest: curve and saved file


def test_forest_curve_scores_the_forest_of_its_first_trees(tiny_cache):
    from sklearn.ensemble import RandomForestClassifier

    from classify.data import split_rows

    cache = read_cache(tiny_cache)
    cfg = ClassifyConfig(model="rf", n_estimators=20, val_fraction=0.2)
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    trained = models.fit_rf(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], 10, cfg)
    h = trained.history
    assert h["x"] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    # each point is exactly what a forest of that many trees with the same seed scores
    for k in (4, 20):
        forest = RandomForestClassifier(n_estimators=k, random_state=cfg.seed, n_jobs=-1).fit(X[rows.fit], y[rows.fit])
        p = np.zeros((len(rows.val), 10))
        p[:, forest.classes_] = forest.predict_proba(X[rows.val])
        i = h["x"].index(k)
        assert h["val_loss"][i] == pytest.approx(models.log_loss(y[rows.val], p), rel=1e-9)
        assert h["val_acc"][i] == pytest.approx(models.accuracy(y[rows.val], p))
    assert h["train_acc"][-1] > h["val_acc"][-1]  # trees fit their own rows far better


def test_saved_forest_is_plain_arrays_predicting_as_scikit_learn(tiny_cache, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from classify import saved

    cache = read_cache(tiny_cache)
    X, y = cache.train.features, cache.train.labels
    keep = y != 3  # a class the forest never sees still gets a (zero) column
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(X[keep], y[keep])
    path = tmp_path / "forest.h5"
    saved.save_forest(path, forest)
    with h5py.File(path) as f:
        assert f.attrs["format"] == "featurecache-model" and f.attrs["kind"] == "forest"
        assert set(f) == set(saved.FOREST_ARRAYS)
        assert all(f[k].dtype.kind in "iuf" for k in f)  # numbers only: nothing to run, nothing to unpickle
    proba = saved._load_forest(path, 10)(cache.test.features)
    want = np.zeros((len(cache.test.labels), 10))
    want[:, forest.classes_] = forest.predict_proba(cache.test.features)
    np.testing.assert_allclose(proba, want, rtol=0, atol=1e-12)
    assert (proba[:, 3] == 0).all()


# --------------------------------------------------------------------------- logistic regression: the solver


def _standardised_tiny(tiny_cache):
    cache = read_cache(tiny_cache)
    scaler = StandardScaler().fit(cache.train.features)
    return scaler.transform(cache.train.features), cache.train.labels, scaler.transform(cache.test.features)


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_logreg_fits_what_scikit_learn_fits(tiny_cache, C):
    from classify import logreg

    X, y, X_test = _standardised_tiny(tiny_cache)
    ours = logreg.fit(X, y, C, max_iter=2000, tol=1e-8)
    ref = LogisticRegression(C=C, max_iter=2000, tol=1e-8).fit(X, y)
    assert ours.converged and list(ours.classes) == list(ref.classes_)
    np.testing.assert_allclose(ours.coef, ref.coef_, atol=2e-3 * np.abs(ref.coef_).max())
    p = logreg.proba(X_test, ours.params(), len(ours.classes))
    np.testing.assert_allclose(p, ref.predict_proba(X_test), atol=5e-3)  # float32 products vs float64
    assert (p.argmax(1) == ref.predict(X_test)).mean() >= 0.95


def test_logreg_path_is_the_solvers_descent_and_max_iter_stops_it(tiny_cache):
    from classify import logreg

    X, y, _ = _standardised_tiny(tiny_cache)
    full = logreg.fit(X, y, 0.01, max_iter=300, path_points=1000)
    assert full.converged and [i for i, _ in full.path] == list(range(1, full.iterations + 1)) and full.iterations >= 5
    np.testing.assert_array_equal(full.path[-1][1], full.params())
    thin = logreg.fit(X, y, 0.01, max_iter=300, path_points=3)  # the same run, fewer iterates kept
    steps = np.diff([i for i, _ in thin.path[:-1]])
    assert len(thin.path) <= 2 * 3 + 1 and thin.path[-1][0] == full.iterations and len(set(steps)) == 1
    np.testing.assert_array_equal(thin.path[0][1], full.path[thin.path[0][0] - 1][1])
    n, k = len(y), len(full.classes)
    yi = np.searchsorted(full.classes, y)

    def objective(w):
        p = logreg.proba(X, w, k)
        W = w[: k * X.shape[1]]
        return -np.mean(np.log(p[np.arange(n), yi])) + 0.5 / (0.01 * n) * np.dot(W, W)

    values = [objective(w) for _, w in full.path]
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:]))  # every iteration goes downhill
    short = logreg.fit(X, y, 0.01, max_iter=3)
    assert short.iterations == 3 and not short.converged


def test_lr_curve_follows_the_solver_in_one_run(blobs):
    from classify.data import split_rows

    cache = read_cache(blobs)
    cfg = ClassifyConfig(model="lr")
    rows = split_rows(cache.train.labels, cfg.val_fraction, cfg.seed)
    X, y = cache.train.features, cache.train.labels
    trained = models.fit_lr(X[rows.fit], y[rows.fit], X[rows.val], y[rows.val], 3, cfg)
    h = trained.history
    assert h["x"][0] == 1 and h["x"][-1] == trained.details["iterations"] and len(h["x"]) <= models.CURVE_POINTS
    # the last point is the model that was kept
    p = trained.predict_proba(X[rows.val])
    assert h["val_loss"][-1] == pytest.approx(models.log_loss(y[rows.val], p), rel=1e-6)


def test_mlp_learning_rate_defaults_to_the_optimizers_own():
    assert ClassifyConfig(model="mlp").optimizer == "adam" and ClassifyConfig(model="mlp").learning_rate == 0.001
    assert ClassifyConfig(model="mlp", optimizer="sgd").learning_rate == 0.01
    assert ClassifyConfig(model="mlp", optimizer="sgd", learning_rate=0.2).learning_rate == 0.2
    assert ClassifyConfig(model="mlp", optimizer="sgd").hyperparameters()["learning_rate"] == 0.01  # recorded resolved
