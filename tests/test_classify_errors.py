"""classify on bad input: one-line error, non-zero exit, no traceback, earlier outputs byte-for-byte intact;
and saved models that this tool did not write are refused."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from classify.cli import cli
from classify.runs.saved import load_run, sha256
from featurecache.errors import UserError
from conftest import assert_clean_failure, blob_cache, invoke, snapshot

NAMES = ["--plot-name", "p", "--report-name", "r"]  # every run below aims at the same files


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A good lr run whose files the failing runs must leave alone: (cache, out_dir, bytes of every file)."""
    root = tmp_path_factory.mktemp("earlier")
    cache = blob_cache(root / "blobs.h5")
    out = root / "reports"
    result = invoke(cli, ["--model", "lr", "--features", cache, "--out-dir", out, *NAMES])
    assert result.exit_code == 0, result.output
    files = snapshot(out)
    assert {"p.png", "p-confusion.png", "r.txt", "r.json", "r-run.json", "r-model.h5"} <= set(files)
    return cache, out, files


def run_bad(earlier, args, *words, code: int = 1):
    cache, out, before = earlier
    args = ["--features", cache, *args] if "--features" not in args else args
    result = invoke(cli, [*args, "--out-dir", out, *NAMES])
    assert_clean_failure(result, *words, code=code)
    assert snapshot(out) == before  # same names, same bytes, no leftovers


def test_missing_cache(earlier, tmp_path):
    run_bad(earlier, ["--features", tmp_path / "nope.h5"], "no features at", "make features")


def test_not_an_hdf5_file(earlier, tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello, not HDF5\n")
    run_bad(earlier, ["--features", bad], "is not an HDF5 file")


def test_foreign_hdf5_file(earlier, tmp_path):
    bad = tmp_path / "foreign.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((3, 3)))
    run_bad(earlier, ["--features", bad], "is not a featurecache cache")


def test_truncated_cache(earlier, tmp_path):
    cache = earlier[0]
    bad = tmp_path / "cut.h5"
    bad.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    run_bad(earlier, ["--features", bad], str(bad))


def test_incomplete_cache(earlier, tmp_path):
    (tmp_path / "half.h5.partial").mkdir()
    run_bad(earlier, ["--features", tmp_path / "half.h5"], "incomplete", "re-run the same extract command")


def test_no_default_cache(earlier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no features/LATEST here
    monkeypatch.delenv("FEATURECACHE_FEATURES_DIR")
    cache, out, before = earlier
    result = invoke(cli, ["--out-dir", out, *NAMES])
    assert_clean_failure(result, "no feature cache in features/", "make features")
    assert snapshot(out) == before


@pytest.mark.parametrize("args, words", [
    (["--model", "svm"], ["'--model'", "svm"]),
    (["--model", "mlp", "--epochs", "0"], ["'--epochs'"]),
    (["--model", "mlp", "--learning-rate", "-0.1"], ["'--learning-rate'"]),
    (["--model", "mlp", "--learning-rate", "0"], ["'--learning-rate'"]),
    (["--model", "mlp", "--decay-rate", "-1"], ["'--decay-rate'"]),
    (["--model", "mlp", "--dropout", "1"], ["'--dropout'"]),
    (["--model", "mlp", "--hidden", "512,0"], ["'--hidden'", "positive"]),
    (["--model", "mlp", "--hidden", "wide"], ["'--hidden'"]),
    (["--model", "mlp", "--batch-size", "-5"], ["'--batch-size'"]),
    (["--model", "rf", "--n-estimators", "0"], ["'--n-estimators'"]),
    (["--model", "lr", "--C", "-1"], ["'--C'", "positive"]),
    (["--model", "lr", "--C", "lots"], ["'--C'", "auto"]),
    (["--model", "lr", "--max-iter", "0"], ["'--max-iter'"]),
    (["--val-fraction", "0"], ["'--val-fraction'"]),
    (["--val-fraction", "1"], ["'--val-fraction'"]),
    (["--val-fraction", "1.5"], ["'--val-fraction'"]),
])
def test_nonsense_options(earlier, args, words):
    run_bad(earlier, args, *words, code=2)  # click's parse-time check


@pytest.mark.parametrize("option", ["--C", "--dropout", "--val-fraction", "--decay-rate", "--momentum", "--learning-rate"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_float_options_refuse_inf_and_nan(earlier, option, value):
    model = "lr" if option == "--C" else "mlp"
    run_bad(earlier, ["--model", model, option, value], f"'{option}'", code=2)


@pytest.mark.parametrize("args, words", [
    (["--train-size", "1000"], ["--train-size 1000", "at most 300"]),
    (["--train-size", "3"], ["--train-size 3", "too small", "pass --train-size 21 or more"]),
])
def test_train_size_out_of_range(earlier, args, words):
    run_bad(earlier, args, *words)


def test_the_smallest_train_size_named_works(earlier, tmp_path):
    result = invoke(cli, ["--features", earlier[0], "--train-size", "21", "--out-dir", tmp_path])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("model", ["lr", "rf", "mlp"])
def test_one_class_of_training_rows_is_refused_before_fitting(earlier, tmp_path, model):
    one = blob_cache(tmp_path / "one.h5", n_train=40, n_test=10, train_labels=np.zeros(40))
    result = invoke(cli, ["--model", model, "--features", one, "--out-dir", tmp_path / "out"])
    assert_clean_failure(result, "all of one class", "two")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("model", ["lr", "rf", "mlp"])
def test_every_builder_refuses_no_rows_or_one_class_before_fitting(model):
    from classify.training.config import ClassifyConfig
    from classify.training.specs import SPECS

    X, cfg = np.zeros((6, 4), np.float32), ClassifyConfig(model=model)
    with pytest.raises(UserError, match="no training rows"):
        SPECS[model].fit(X[:0], np.zeros(0, np.int64), X, np.zeros(6, np.int64), 2, cfg)
    with pytest.raises(UserError, match="all of one class"):
        SPECS[model].fit(X, np.zeros(6, np.int64), X, np.zeros(6, np.int64), 2, cfg)


@pytest.mark.slow
def test_a_diverging_mlp_fails_with_one_line_and_saves_nothing(earlier, tmp_path):
    result = invoke(cli, ["--model", "mlp", "--features", earlier[0], "--out-dir", tmp_path, "--epochs", "3",
                          "--hidden", "16", "--learning-rate", "1e30"])
    assert_clean_failure(result, "diverged", "smaller --learning-rate")
    assert not list(tmp_path.iterdir())


def test_output_folder_that_is_a_file(earlier, tmp_path):
    cache, out, before = earlier
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = invoke(cli, ["--features", cache, "--out-dir", blocker, *NAMES])
    assert_clean_failure(result, "'--out-dir'", "is a file", code=2)  # click's parse-time check
    result = invoke(cli, ["--features", cache, "--out-dir", blocker / "sub", *NAMES])
    assert_clean_failure(result, "cannot write to --out-dir", "pass a folder you can write to")
    assert snapshot(out) == before


def test_output_folder_without_write_permission(earlier, tmp_path):
    cache = earlier[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if (locked / ".probe").exists() or _can_write(locked):
            pytest.skip("running as root: permissions do not stop writes")
        result = invoke(cli, ["--features", cache, "--out-dir", locked])
        assert_clean_failure(result, "cannot write to --out-dir")
    finally:
        locked.chmod(0o700)


def _can_write(folder) -> bool:
    try:
        (folder / ".probe").write_text("")
        (folder / ".probe").unlink()
        return True
    except OSError:
        return False


def test_plot_name_with_a_folder_is_refused(earlier):
    cache, out, before = earlier
    result = invoke(cli, ["--features", cache, "--out-dir", out, "--plot-name", "sub/p.png"])
    assert_clean_failure(result, "--plot-name", "plain file name")
    assert snapshot(out) == before


def test_a_run_failing_while_writing_leaves_earlier_files_intact(earlier, monkeypatch):
    cache, out, before = earlier

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")  # a bug, after some files were already written aside

    monkeypatch.setattr("classify.runs.saved.save_linear", broken)
    result = invoke(cli, ["--features", cache, "--out-dir", out, "--C", "0.5", *NAMES])
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- loading saved runs


@pytest.fixture
def run_copy(earlier, tmp_path):
    """A copy of the earlier run's record and model, free to tamper with."""
    for name in ("r-run.json", "r-model.h5"):
        shutil.copy(earlier[1] / name, tmp_path / name)
    return tmp_path / "r-run.json"


def test_saved_run_loads(run_copy):
    run = load_run(run_copy)
    assert run.predict_proba(np.zeros((2, 16), np.float32)).shape == (2, 3)
    with pytest.raises(UserError, match="do not fit this run"):
        run.predict_proba(np.zeros((2, 7), np.float32))


def test_replaced_model_file_is_refused(run_copy):
    model = run_copy.with_name("r-model.h5")
    with h5py.File(model, "r+") as f:
        f["coef"][0, 0] = 123.0
    with pytest.raises(UserError, match="checksum differs"):
        load_run(run_copy)


def test_foreign_model_file_is_refused_even_with_a_matching_checksum(run_copy):
    model = run_copy.with_name("r-model.h5")
    model.unlink()
    with h5py.File(model, "w") as f:
        for k in ("coef", "intercept", "classes", "mean", "scale"):
            f.create_dataset(k, data=np.zeros(3))
    record = json.loads(run_copy.read_text())
    record["model_sha256"] = sha256(model)
    run_copy.write_text(json.dumps(record))
    with pytest.raises(UserError, match="not a linear model written by classify"):
        load_run(run_copy)


@pytest.fixture
def forest_run(blobs_for_forest, tmp_path):
    """A fresh rf run's record and model, free to tamper with."""
    result = invoke(cli, ["--model", "rf", "--features", blobs_for_forest, "--out-dir", tmp_path,
                          "--n-estimators", "5", "--report-name", "f"])
    assert result.exit_code == 0, result.output
    return tmp_path / "f-run.json"


@pytest.fixture(scope="module")
def blobs_for_forest(tmp_path_factory):
    return blob_cache(tmp_path_factory.mktemp("forest") / "blobs.h5")


def _rewrite_forest(run_json, edit) -> None:
    """Change the forest's node arrays with `edit(arrays)` and record the new checksum, as an attacker could."""
    model = run_json.with_name("f-model.h5")
    with h5py.File(model, "r") as f:
        arrays = {k: f[k][()] for k in f}
        attrs = dict(f.attrs)
    edit(arrays)
    with h5py.File(model, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        f.attrs.update(attrs)
    record = json.loads(run_json.read_text())
    record["model_sha256"] = sha256(model)
    run_json.write_text(json.dumps(record))


def _loop_back(a):
    inner = np.flatnonzero(a["left"] >= 0)
    a["left"][inner[-1]] = inner[-1]  # a node that is its own child: a walk that never ends


@pytest.mark.parametrize("edit", [
    _loop_back,
    lambda a: a["right"].__setitem__(np.flatnonzero(a["right"] >= 0)[0], len(a["right"]) + 5),  # child past the end
    lambda a: a["feature"].__setitem__(0, 999),                 # a feature the cache does not have
    lambda a: a.update(value=a["value"][:-1]),                  # fewer class rows than nodes
    lambda a: a.update(classes=np.array([0, 1, 7])),            # a class beyond the run's classes
    lambda a: a.pop("threshold"),
], ids=["loop", "child-out-of-range", "feature", "value-rows", "classes", "missing-array"])
def test_forest_files_whose_arrays_are_not_trees_are_refused(forest_run, edit):
    assert load_run(forest_run).predict_proba(np.zeros((2, 16), np.float32)).shape == (2, 3)
    _rewrite_forest(forest_run, edit)
    with pytest.raises(UserError, match="forest model written by classify|not a readable model file") as e:
        load_run(forest_run)
    assert "\n" not in str(e.value.message)


def test_a_linear_model_in_place_of_a_forest_is_refused(forest_run, run_copy):
    model = forest_run.with_name("f-model.h5")
    shutil.copy(run_copy.with_name("r-model.h5"), model)  # a real classify file, of the wrong kind
    record = json.loads(forest_run.read_text())
    record["model_sha256"] = sha256(model)
    forest_run.write_text(json.dumps(record))
    with pytest.raises(UserError, match="not a forest model written by classify"):
        load_run(forest_run)


@pytest.mark.parametrize("change", [
    lambda r: r.pop("format"),
    lambda r: r.update(model_file="../../etc/passwd"),
    lambda r: r.update(model_format="pickle"),
])
def test_run_records_not_from_classify_are_refused(run_copy, change):
    record = json.loads(run_copy.read_text())
    change(record)
    run_copy.write_text(json.dumps(record))
    with pytest.raises(UserError):
        load_run(run_copy)


def test_non_json_run_record_is_refused(tmp_path):
    bad = tmp_path / "x-run.json"
    bad.write_bytes(b"\x80\x04\x95 a pickle, not JSON")
    with pytest.raises(UserError, match="not a run record"):
        load_run(bad)
    with pytest.raises(UserError, match="no run record"):
        load_run(tmp_path / "missing-run.json")
