"""Optional experiment tracking: a finished run, logged to MLflow from its run record.

`--track mlflow` (or FEATURECACHE_TRACK=mlflow) on `classify` and `compare` logs each run, after
its files are written, to the tracking server MLFLOW_TRACKING_URI names (MLflow's default: a
SQLite file `mlflow.db` in the working folder, artifacts under `mlruns/`), in the experiment
MLFLOW_EXPERIMENT_NAME names (default "featurecache"):

    parameters   the settings that applied to the run (its record's `settings`: the model and its
                 own hyperparameters, seed, validation share, training-set size),
                 what training chose (chosen.C, chosen.epochs_run, ...), and the cache's identity
                 (cache.backbone, cache.pooling, cache.image_size, cache.weights, ...)
    metrics      accuracy, macro_f1, train_time_s, predict_time_s, n_fit, n_val, n_test; and the
                 training curves (train_loss, val_loss, train_acc, val_acc) per epoch for the
                 MLP, per number of trees for the forest
    artifacts    plots/ (the PNGs), report/ (text and JSON report, the run record), model/ (the
                 saved model file, exactly as in the reports folder)
    tags         featurecache.run_record, featurecache.cache_path, featurecache.run_id

A tracking server that cannot be reached fails within seconds, not minutes: unless the environment
sets them, MLflow's own HTTP settings are MLFLOW_HTTP_REQUEST_MAX_RETRIES=1,
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1 and MLFLOW_HTTP_REQUEST_TIMEOUT=5 (MLflow's defaults, 7 retries
and 120 s, take about 4 minutes), and a database store is tried DB_ATTEMPTS times (MLflow's
MAX_RETRY_COUNT, 10 attempts over about 100 s; it has no environment variable). A new store's tables
are created under the reports folder's lock (classify.reporting.report.LOCK), so two first runs started
together do not both create them.

Everything is read from the run record and the files already in place, so tracking never
changes what is written under the reports folder. MLflow is an extra
(`pip install -e '.[tracking]'`); it is imported only when tracking is asked for.
"""

from __future__ import annotations

import os

from classify.runs.record import RunRecord
from featurecache.errors import SettingError, UserError, reason

TRACKERS = ("mlflow",)
ENV = "FEATURECACHE_TRACK"
DEFAULT_EXPERIMENT = "featurecache"
INSTALL = "pip install -e '.[tracking]' (or `make install`)"
PARAM_SKIP = ("features", "out_dir", "plot_name", "report_name")   # paths: tags, not parameters
CACHE_PARAMS = ("dataset", "backbone", "pooling", "image_size", "weights", "precision", "feature_dim",
                "data_fingerprint", "weights_sha256", "backbone_sha256", "feature_layer", "seed")
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")
ARTIFACT_DIRS = {"curves": "plots", "confusion": "plots", "gallery": "plots", "reliability": "plots", "report_txt": "report",
                 "report_json": "report", "run": "report", "model": "model"}

# MLflow's own retry and timeout settings, where the environment does not set them: fail in seconds
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
DB_ATTEMPTS = 3

__all__ = ["require", "params_of", "metrics_of", "log_run", "fail_fast"]


def require(track: str | None) -> None:
    """Refuse, before any training, a `track` whose library is not installed."""
    if track != "mlflow":
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise SettingError(f"track='mlflow' needs MLflow, which is not installed: {INSTALL}") from None


def applied(record: RunRecord) -> dict:
    """The settings that applied to a run: its record's `settings` summary; for a record written before
    there was one, its config without the other models' hyperparameters and the file names."""
    from classify.training.specs import MODEL_PARAMS

    if record.settings is not None:
        return record.settings
    others = {k for model, keys in MODEL_PARAMS.items() if model != record.model for k in keys}
    own = set(MODEL_PARAMS.get(record.model, ()))
    return {k: v for k, v in record.config.items() if k in own or k not in others}


def params_of(record: RunRecord) -> dict[str, str]:
    """MLflow parameters of a run record: the settings that applied, chosen values and the cache's
    identity, as strings."""
    out = {}
    for key, value in applied(record).items():
        if key not in PARAM_SKIP and value is not None:
            out[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    for key, value in record.chosen.items():
        if not isinstance(value, (list, dict)) and value is not None:
            out[f"chosen.{key}"] = str(value)
    attrs = record.cache.attrs
    for key in CACHE_PARAMS:
        if attrs.get(key) not in (None, ""):
            out[f"cache.{key}"] = str(attrs[key])
    out["cache_id"] = str(record.cache_id)
    out["run_id"] = str(record.run_id)
    return out


def metrics_of(record: RunRecord) -> list[tuple[str, float, int]]:
    """(name, value, step) of a run: final metrics at step 0, then the training curves per step
    (epoch for the MLP, trees for the forest; LR's curve is over C, not steps, and is left out)."""
    out = [(k, v, 0) for k, v in record.metrics.numbers().items()]
    history = record.history
    if history.get("x_label") in ("epoch", "trees"):
        for name in CURVES:
            out += [(name, float(v), int(x)) for x, v in zip(history["x"], history.get(name, []))]
    return out


def fail_fast() -> None:
    """Set MLflow's retries and timeouts (HTTP_LIMITS, DB_ATTEMPTS) so that a store it cannot reach fails in
    seconds; an environment variable the user set wins. MLflow's "Operation will be retried" warnings go:
    the one line log_run gives says the same."""
    import logging

    from mlflow.store.db import utils as db_utils

    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    if getattr(db_utils, "MAX_RETRY_COUNT", 0) > DB_ATTEMPTS:
        db_utils.MAX_RETRY_COUNT = DB_ATTEMPTS
    logging.getLogger(db_utils.__name__).setLevel(logging.ERROR)


def experiment_id(client) -> str:
    """The id of the experiment MLFLOW_EXPERIMENT_NAME names (default DEFAULT_EXPERIMENT), created if new."""
    import mlflow

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a run beside this one
        return client.get_experiment_by_name(name).experiment_id


def log_run(record: RunRecord) -> str:
    """Log one written run to MLflow; returns MLflow's run id. Any failure of the tracking server
    is one line that says the run's own files are kept."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from classify.reporting.report import LOCK
    from featurecache.files import locked

    fail_fast()
    run_file = record.path
    stem = record.name
    try:
        with locked(run_file.parent / LOCK, f"the reports folder {run_file.parent}"):
            client = MlflowClient()   # a new store's tables are created here, one run at a time
            experiment = experiment_id(client)
        tags = {"featurecache.run_record": record.files["run"], "featurecache.run_id": str(record.run_id),
                "featurecache.cache_path": str(record.cache.path), "model": str(record.model)}
        run = client.create_run(experiment, run_name=stem, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in metrics_of(record)]
        params = [Param(k, v) for k, v in params_of(record).items()]
        for start in range(0, max(len(metrics), len(params)), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100])
        for key in record.files:
            if record.located(key).is_file():
                client.log_artifact(run_id, str(record.located(key)), ARTIFACT_DIRS.get(key, "files"))
        client.set_terminated(run_id)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a tracking server's errors are many kinds; each becomes one line
        uri = mlflow.get_tracking_uri()
        raise UserError(f"the run's files are written, but logging it to MLflow at {uri} failed ({reason(e, 2000)}); "
                        "check MLFLOW_TRACKING_URI") from None
    return run_id
