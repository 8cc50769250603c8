"""The model table (classify.training.specs.SPECS): the one place a model's name is a key, and what
drives every model's settings, fits, saved file and loading."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from classify.runs.outputs import run_paths, write_run
from classify.runs.saved import load_run
from classify.training.config import ClassifyConfig
from classify.training.modelspec import ModelSpec
from classify.training.specs import SPECS, spec_for_format
from classify.training.train import load_for_training, train_and_evaluate
from conftest import ROOT
from featurecache.errors import UserError

PACKAGES = ("classify", "extract", "featurecache", "bench")


def python_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def keyed_by_model_names(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines of the mappings in `tree` keyed by a model's name: dict literals ({"lr": ...}) and
    dict(lr=...) calls."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            keys = {k.arg for k in node.keywords}
        else:
            continue
        if keys & names:
            lines.append(node.lineno)
    return lines


def spec_entries(tree: ast.AST) -> list[str]:
    """The names given to ModelSpec(name=...) in `tree`."""
    return [k.value.value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModelSpec"
            for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)]


def test_each_model_name_is_a_key_in_exactly_one_table():
    """No module keeps its own mapping keyed by model names (a builder table, a suffix table, a
    settings table): each model is one ModelSpec(name=...) entry, and SPECS holds each of them once."""
    names = set(SPECS)
    assert names >= {"lr", "rf", "mlp", "knn"}
    tables, entries = [], []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        tables += [f"{path.relative_to(ROOT)}:{line}" for line in keyed_by_model_names(tree, names)]
        entries += spec_entries(tree)
    assert tables == [], f"mappings keyed by model names outside the model table: {tables}"
    assert sorted(entries) == sorted(names), entries   # one entry per model, in its own module
    assert all(isinstance(spec, ModelSpec) and spec.name == name for name, spec in SPECS.items())


def test_the_scan_finds_a_mapping_keyed_by_model_names():
    """The scan above can fail: yesterday's tables (MODELS, MODEL_SUFFIX, dict(knn=...)) are found."""
    tree = ast.parse('MODELS = {"lr": fit_lr, "rf": fit_rf}\nSUFFIX = dict(knn=".h5")\nOTHER = {"a": 1}\n')
    assert keyed_by_model_names(tree, set(SPECS)) == [1, 2]


def test_settings_belong_to_one_model_each_and_are_checked_there():
    """A flat setting goes to the one model that owns it; a bad value is refused by that model's
    settings with the setting named as Python spells it."""
    owned = [k for spec in SPECS.values() for k in spec.param_names()]
    assert len(owned) == len(set(owned))
    cfg = ClassifyConfig(model="rf", C=0.5, n_estimators=7, epochs=3, k=5)
    assert (cfg.params["lr"].C, cfg.params["rf"].n_estimators, cfg.params["mlp"].epochs, cfg.params["knn"].k) == (0.5, 7, 3, 5)
    assert cfg.hyperparameters() == {"n_estimators": 7, "max_depth": None, "max_samples": None}
    for setting, bad in (("C", -1.0), ("max_iter", 0), ("n_estimators", 2.5), ("max_samples", 1.5), ("hidden", (0,)),
                         ("dropout", 1.0), ("optimizer", "rmsprop"), ("learning_rate", float("nan")), ("k", 0),
                         ("temperature", 0.0)):
        with pytest.raises(UserError, match=rf"^{setting}="):
            ClassifyConfig(**{setting: bad})
    with pytest.raises(UserError, match="model='svm'"):
        ClassifyConfig(model="svm")


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("model", sorted(SPECS))
def test_the_table_drives_fit_save_and_load_of_every_model(model, streamed, tiny_cache, tmp_path):
    """For each entry of SPECS, on a real cache: its fit (or streamed fit, under a tiny --max-memory),
    its file written under its suffix and format, and its loader's predictions equal the fitted ones."""
    spec = SPECS[model]
    # short settings where a model has them (a flat setting goes to the one model that owns it)
    cfg = ClassifyConfig(model=model, features=str(tiny_cache), max_memory=20_000 if streamed else None, epochs=3,
                         n_estimators=30)
    cache = load_for_training(tiny_cache, cfg)
    assert (cache.train.features is None) == streamed
    result = train_and_evaluate(cache, cfg, curves=False)
    assert result.trained.format == spec.format
    paths = run_paths(tmp_path, cache, cfg)
    record, _ = write_run(cache, cfg, result, paths)
    assert paths["model"].name.endswith(f"-model{spec.suffix}") and paths["model"].is_file()
    assert record.model_format == spec.format and spec_for_format(record.model_format) is spec
    assert record.hyperparameters == json.loads(json.dumps(cfg.hyperparameters()))
    run = load_run(paths["run"])
    if cache.test.features is None:
        from featurecache.cache import read_cache

        cache = read_cache(tiny_cache)
    np.testing.assert_allclose(run.predict_proba(cache.test.features), result.proba, rtol=1e-5, atol=1e-6)
    if spec.keras_head is not None and not streamed:   # the saved model as Keras layers: the same probabilities
        from featurecache.tfimport import keras

        k = keras()
        features = k.Input((cache.test.features.shape[1],), dtype="float32")
        head = k.Model(features, spec.keras_head(run.model_path, len(cache.class_names), features, k))
        logits = np.asarray(head.predict(cache.test.features, verbose=0), np.float64)
        softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), result.proba, atol=1e-5)
    refusal = spec.refusal("x-run.json", record.chosen)
    assert (refusal is None) == (spec.keras_head is not None), model   # what exports has a Keras head
