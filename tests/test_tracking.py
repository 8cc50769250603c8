"""--track mlflow: runs logged to a temporary SQLite tracking store and read back with MLflow's client
(parameters, final accuracy, per-epoch MLP curves, PNG and model artifacts); the reports folder is the
same with tracking as without; a missing MLflow or a broken tracking URI is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from classify.commands import compare
from classify.cli import cli as classify_cli
from conftest import ROOT, error_line


def classify(*args):
    return CliRunner().invoke(classify_cli, [str(a) for a in args])


def records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*-run.json"))]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite tracking store; artifacts land under tmp_path (MLflow puts them beside the working folder)."""
    pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "featurecache-test")
    return MlflowClient(tracking_uri=uri)


def logged_runs(client) -> list:
    experiment = client.get_experiment_by_name("featurecache-test")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def artifact_names(client, run_id: str, folder: str) -> set[str]:
    return {a.path.split("/")[-1] for a in client.list_artifacts(run_id, folder)}


def test_classify_logs_params_accuracy_pngs_and_model_and_leaves_reports_as_without(tiny_cache, tmp_path, store):
    plain, tracked = tmp_path / "plain", tmp_path / "tracked"
    assert classify("--model", "lr", "--features", tiny_cache, "--out-dir", plain).exit_code == 0
    r = classify("--model", "lr", "--features", tiny_cache, "--out-dir", tracked, "--track", "mlflow")
    assert r.exit_code == 0, r.output
    (record,) = records(tracked)
    (run,) = logged_runs(store)
    assert f"mlflow: run {run.info.run_id}" in r.output
    params = run.data.params
    assert params["model"] == "lr" and params["C"] == "0.01" and params["seed"] == "0"
    assert params["cache.backbone"] == "vgg16" and params["cache.pooling"] == "gap" and params["cache.image_size"] == "32"
    assert params["run_id"] == record["run_id"] and params["cache_id"] == record["cache_id"]
    assert run.data.metrics["accuracy"] == pytest.approx(record["metrics"]["accuracy"])
    assert run.data.metrics["macro_f1"] == pytest.approx(record["metrics"]["macro_f1"])
    pngs = {name for key, name in ((k, v.split("/")[-1]) for k, v in record["files"].items()) if name.endswith(".png")}
    assert len(pngs) == 4 and artifact_names(store, run.info.run_id, "plots") == pngs   # curves, confusion, gallery, reliability
    assert artifact_names(store, run.info.run_id, "model") == {record["model_file"]}
    assert run.data.tags["featurecache.run_record"] == record["files"]["run"]
    # tracking writes nothing else under the reports folder: the same files, the same reports
    assert {p.name for p in tracked.iterdir()} == {p.name for p in plain.iterdir()}
    (plain_record,) = records(plain)
    assert Path(record["files"]["report_txt"]).read_text() == Path(plain_record["files"]["report_txt"]).read_text()
    for key in ("run_id", "cache_id", "hyperparameters", "chosen", "class_names"):
        assert record[key] == plain_record[key], key
    assert record["metrics"]["accuracy"] == plain_record["metrics"]["accuracy"]


def test_compare_with_the_environment_variable_logs_mlp_curves_per_epoch(tiny_cache, tmp_path, store, monkeypatch):
    monkeypatch.setenv("FEATURECACHE_TRACK", "mlflow")
    r = CliRunner().invoke(compare.cli, ["--model", "mlp", "--epochs", "3", "--hidden", "16", "--features",
                                         str(tiny_cache), "--out-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    (record,) = records(tmp_path / "out")
    (run,) = logged_runs(store)
    epochs = record["chosen"]["epochs_run"]
    for name in ("train_loss", "val_loss", "train_acc", "val_acc"):
        history = store.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == list(range(1, epochs + 1))
    assert [m.value for m in store.get_metric_history(run.info.run_id, "val_loss")] == \
        pytest.approx(record["history"]["val_loss"])
    assert run.data.params["chosen.epochs_run"] == str(epochs) and run.data.params["hidden"] == "16"
    assert artifact_names(store, run.info.run_id, "model") == {record["model_file"]}


def test_without_mlflow_track_is_one_line_before_training(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError, as when not installed
    r = classify("--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path, "--track", "mlflow")
    assert isinstance(r.exception, SystemExit)
    line = error_line(r, 1)
    assert "--track mlflow" in line and "pip install -e '.[tracking]'" in line
    assert not list(tmp_path.glob("*-run.json"))


def test_unknown_tracker_in_the_environment_is_refused_at_parse_time(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURECACHE_TRACK", "wandb")
    r = classify("--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path)
    assert r.exit_code == 2 and "wandb" in r.output and not list(tmp_path.glob("*-run.json"))


def test_a_broken_tracking_uri_is_one_line_and_keeps_the_runs_files(tiny_cache, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    r = classify("--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path / "out", "--track", "mlflow")
    line = error_line(r, 1)
    assert "files are written" in line and "MLFLOW_TRACKING_URI" in line
    (record,) = records(tmp_path / "out")
    assert Path(record["files"]["model"]).is_file() and (tmp_path / "out" / "index.html").is_file()


@pytest.fixture(scope="module")
def run_record(tiny_cache, tmp_path_factory) -> Path:
    """One real LR run, written without tracking: its run record."""
    out = tmp_path_factory.mktemp("tracked") / "reports"
    assert classify("--model", "lr", "--features", tiny_cache, "--out-dir", out).exit_code == 0
    (path,) = out.glob("*-run.json")
    return path


LOG_ONE = """
import json, sys, time
import mlflow, mlflow.entities, mlflow.tracking   # imported before the clock starts
from classify.runs.record import RunRecord
from classify.runs.tracking import log_run
t = time.perf_counter()
try:
    log_run(RunRecord.load(sys.argv[1]))
except Exception as e:
    print(e, file=sys.stderr)
print(round(time.perf_counter() - t, 1))
"""


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no one can write into: mode 555, made immutable with chattr where the tests run as root."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: no folder is unwritable")
    return folder


@pytest.mark.parametrize("store", ["http", "sqlite"])
def test_an_unreachable_tracking_store_fails_within_15_seconds(run_record, tmp_path, store):
    """MLflow's defaults retry for minutes (4 min against a closed port, 100 s on an SQLite file it cannot
    create); the run's one line comes within 15 s. A real process: MLflow reads its settings per process."""
    pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")
    folder = unwritable_folder(tmp_path) if store == "sqlite" else None
    uri = "http://127.0.0.1:1" if store == "http" else f"sqlite:///{folder}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_")}
    try:
        proc = subprocess.run([sys.executable, "-c", LOG_ONE, str(run_record)], capture_output=True, text=True,
                              cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)},
                              timeout=60)
    finally:
        if folder is not None and os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the run's files are written, but logging it to MLflow" in proc.stderr, proc.stderr[-2000:]
    assert "will be retried" not in proc.stderr and float(proc.stdout.split()[-1]) < 15, proc.stderr[-2000:]


def test_the_file_store_refusal_is_shown_whole(tiny_cache, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    r = classify("--model", "lr", "--features", tiny_cache, "--out-dir", tmp_path / "out", "--track", "mlflow")
    line = error_line(r, 1)
    assert "MLFLOW_ALLOW_FILE_STORE=true" in line and "sqlite:///mlflow.db" in line and " ..." not in line, line


@pytest.mark.slow
def test_two_first_tracked_runs_into_a_new_folder_both_log(tiny_cache, tmp_path):
    """Two classify processes started together, with a tracking store neither has created yet: both log."""
    pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "featurecache-test",
           "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "classify", "--model", model, "--features", str(tiny_cache),
                               "--out-dir", str(tmp_path / "reports"), "--track", "mlflow"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for model in ("lr", "rf")]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-2000:]
    runs = logged_runs(MlflowClient(tracking_uri=uri))
    assert sorted(r.data.params["model"] for r in runs) == ["lr", "rf"]


@pytest.mark.slow
def test_an_lr_run_shows_records_and_logs_no_mlp_or_forest_setting(tiny_cache, tmp_path, store):
    """A real `python -m classify --model lr --track mlflow` process: its printed settings, its run
    record's settings summary and its MLflow parameters hold LR's settings and no other model's."""
    import os
    import subprocess

    from classify.training.specs import MODEL_PARAMS
    from conftest import ROOT

    others = set(MODEL_PARAMS["mlp"]) | set(MODEL_PARAMS["rf"])
    r = subprocess.run([sys.executable, "-m", "classify", "--model", "lr", "--features", str(tiny_cache),
                        "--out-dir", str(tmp_path / "reports"), "--track", "mlflow"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("settings: ")]
    printed = json.loads(line.removeprefix("settings: "))
    (record,) = records(tmp_path / "reports")
    (run,) = logged_runs(store)
    for shown in (printed, record["settings"], run.data.params):
        assert {"C", "max_iter", "seed"} <= set(shown) and not others & set(shown), sorted(shown)
    assert others <= set(record["config"])  # the full configuration is kept in the record
