"""The Python API: every stage in a few calls, for a notebook or a script (docs/python-api.md).

    import featurecache as fc

    cache = fc.extract("photos/", backbone="vgg16", weights="none")   # images -> features/<name>.h5 -> Cache
    run = fc.train(cache, model="lr", C="auto")                          # -> Run, saved under reports/
    predictions = run.predict("new-photos/")                             # -> [{"image", "class", "probability", ...}]
    run.export("exports/lr")                                             # model.keras, saved_model/, labels.json

This module sits above the stages: it imports extract and classify inside its functions only, so
`import featurecache` stays cheap (no TensorFlow) and the shared core never imports a stage. Mistakes
raise `featurecache.errors.UserError`, worded in Python's terms (`pooling='x'`, not `--pooling x`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from featurecache.cache import Cache, read_cache
from featurecache.errors import UserError

PathLike = str | os.PathLike
BEST = "best"   # load_run("best"): the run of a cache with the best validation accuracy

# ExtractConfig fields extract() takes as keywords: all but the data, backbone and out (its own
# arguments) and the shard (a slice of a cache, merged by the command; not a cache to load)
EXTRACT_NOT_SETTINGS = ("data_dir", "backbone", "out", "shard")
# ClassifyConfig fields train() takes as keywords: all but these, which train() sets itself
TRAIN_NOT_PARAMS = ("model", "features", "out_dir", "plot_name", "report_name")


def _say(message: str) -> None:
    """What was chosen and where it went, on stderr, as the commands say it."""
    print(message, file=sys.stderr)


def _fields(config_class, leave_out: tuple[str, ...]) -> list[str]:
    names = config_class.setting_names() if hasattr(config_class, "setting_names") else \
        [f.name for f in dataclasses.fields(config_class)]
    return sorted(n for n in names if n not in leave_out)


def _check_names(call: str, given: dict, allowed: list[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UserError(f"{call}() got unknown setting(s) {', '.join(map(repr, unknown))}; "
                        f"the settings are: {', '.join(allowed)}")


# --------------------------------------------------------------------------- caches


def extract(data_dir: PathLike | None, backbone: str = "vgg16", out: PathLike | None = None, **settings) -> Cache:
    """Run a frozen backbone over a data set once and cache its features; the cache, read back.

    `data_dir`: a folder of photos with one subfolder per class (optionally under train/ and test/), a
    cifar-10-batches-py folder, or None for CIFAR-10 through Keras' download. `out`: the cache file
    (default: features/<dataset>-<backbone>-<pooling>-<size>px[...].h5, which then becomes the default
    cache). `settings`: any other field of `extract.config.ExtractConfig` (pooling, image_size, weights,
    seed, precision, limit, augment, ...). An up-to-date cache is reused; an interrupted one resumes."""
    from extract.config import ExtractConfig

    _check_names("extract", settings, _fields(ExtractConfig, EXTRACT_NOT_SETTINGS))
    if data_dir is not None and not Path(data_dir).exists():
        raise UserError(f"data_dir={str(data_dir)!r} does not exist; pass a folder of photos with one "
                        "subfolder per class, or a cifar-10-batches-py folder")
    if out is not None and (os.path.basename(str(out)) in ("", ".", "..") or Path(out).is_dir()):
        raise UserError(f"out={str(out)!r} names no file; pass the cache's file path, e.g. out='features/x.h5'")
    from extract.api import extract as run_extract

    path = run_extract(data_dir, backbone, out, log=_say, progress=True, **settings)   # features/LATEST too
    return read_cache(path)


def load(path: PathLike) -> Cache:
    """A feature cache read into memory: `cache.train.features` (N, D) float32, `.labels` (N,) int64,
    `.sources`; the same for `cache.test` (and `cache.val` where the data set has one); `cache.class_names`,
    `cache.attrs` (backbone, pooling, image size, weights, ...), `cache.path`."""
    check_cache_path(path)
    return read_cache(path)


def check_cache_path(path: PathLike) -> None:
    """A missing cache, in Python's terms (read_cache names an interrupted one, a folder, a damaged file)."""
    if not Path(path).exists() and not Path(f"{path}.partial").is_dir():
        raise UserError(f"no feature cache at {path}: pass the path of an .h5 file that featurecache.extract wrote")


# --------------------------------------------------------------------------- runs


def train(cache: Cache | PathLike, model: str = "lr", out: PathLike = "reports", **params) -> Run:
    """Train one classifier on a cache, as `python -m classify` does: validation rows carved from the
    training rows, the test rows scored once; the run (record, model, plots, report) is saved under
    `out` and returned as a `Run`. `params`: any other field of `classify.training.config.ClassifyConfig`
    (C, max_iter, n_estimators, hidden, epochs, k, seed, val_fraction, train_size, calibrate, ...)."""
    from classify.reporting.report import write_index
    from classify.runs.outputs import check_out_dir, run_paths, write_run
    from classify.training.config import ClassifyConfig
    from classify.training.specs import SPECS
    from classify.training.train import load_for_training, train_and_evaluate

    if model not in SPECS:
        raise UserError(f"model={model!r} is not one of {', '.join(map(repr, sorted(SPECS)))}")
    _check_names("train", params, _fields(ClassifyConfig, TRAIN_NOT_PARAMS))
    cfg = ClassifyConfig(model=model, **params)
    if not isinstance(cache, Cache):
        check_cache_path(cache)
        cache = load_for_training(Path(cache), cfg)   # streamed from the file where it exceeds max_memory
    cfg.features = str(cache.path)
    if cfg.exclude:
        from classify.workflows.audit_record import check_exclude

        check_exclude(cfg.exclude)
    out_dir = check_out_dir(out)
    paths = run_paths(out_dir, cache, cfg)
    write_run(cache, cfg, train_and_evaluate(cache, cfg), paths)
    write_index(out_dir)   # the report page shows every run in the folder, this one too
    run = Run.load(paths["run"])
    _say(f"train: {model} on {cache.path}: test accuracy {run.accuracy:.4f}; saved {run.path}")
    return run


def load_run(path: PathLike, reports: PathLike = "reports", features: Cache | PathLike | None = None) -> Run:
    """A saved run: a `<name>-run.json` written by classify (its model file beside it, checked against the
    digest the record holds), or "best": the run of the cache `features` (default: the one features/LATEST
    names) with the best validation accuracy in the folder `reports`."""
    if str(path) == BEST:
        path = best_run(reports, features)
    elif not Path(path).is_file():
        raise UserError(f"no run record at {path}: pass a <name>-run.json that featurecache.train wrote, or 'best'")
    return Run.load(path)


def best_run(reports: PathLike, features: Cache | PathLike | None = None) -> Path:
    """The run record of a cache's best validation accuracy in the folder `reports`; says which on stderr."""
    from classify.reporting.report import best_run_of
    from featurecache.cache import default_cache

    if isinstance(features, Cache):
        features = features.path
    cache = Path(features) if features is not None else default_cache()[0]
    if not cache.is_file():
        raise UserError(f"no feature cache at {cache}: pass features='CACHE.h5' with load_run('best')")
    path = best_run_of(reports, cache)
    _say(f"run: {path} (best validation accuracy of the runs of {cache} in {reports})")
    return path


class Predictions(list):
    """One dict per predicted image ({"image", "class", "probability", "probabilities"}), in order;
    `skipped` lists the files that were not predicted, each {"file", "reason"}."""

    def __init__(self, items: list[dict], skipped: list[dict]):
        super().__init__(items)
        self.skipped = skipped


class Run:
    """A saved classify run: its record and its model, loaded without running code.

    `name`, `model`, `accuracy` (test), `val_accuracy`, `metrics`, `class_names`, `path` (the run record),
    `model_path`, `cache_path`, `record` (the run record as saved). `predict(images)` and
    `predict_proba(features)` use it; `export(folder)` writes it as one model for deployment."""

    def __init__(self, saved):
        self.saved = saved   # classify.runs.saved.SavedRun: the one place this class reads a run from

    @classmethod
    def load(cls, path: PathLike) -> Run:
        from classify.runs.saved import load_run as load_saved

        return cls(load_saved(path))

    @property
    def record(self):
        """The run record (classify.runs.record.RunRecord): settings, metrics, cache, files."""
        return self.saved.record

    @property
    def path(self) -> Path:
        return self.saved.path

    @property
    def model_path(self) -> Path:
        return self.saved.model_path

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".json").removesuffix("-run")

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def metrics(self) -> dict:
        return self.record.metrics.to_dict()

    @property
    def accuracy(self) -> float:
        return float(self.record.metrics.accuracy)

    @property
    def val_accuracy(self) -> float | None:
        return self.record.metrics.val_accuracy

    @property
    def class_names(self) -> list[str]:
        return list(self.saved.class_names)

    @property
    def cache_path(self) -> Path:
        return Path(self.record.cache.path)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, model={self.model!r}, accuracy={self.accuracy:.4f}, path='{self.path}')"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features extracted with the run's cache settings -> (n, C) class probabilities."""
        return self.saved.predict_proba(features)

    def predict(self, images: PathLike | Iterable[PathLike], batch_size: int = 32, runtime: str = "auto") -> Predictions:
        """The class of each image: `images` is an image file, a folder (searched recursively), or a list of
        them. Features are extracted with the run's cache settings, so a prediction sees what training saw.
        Files that are not images, or cannot be read, are skipped with a warning and listed in `.skipped`;
        when none can be predicted, UserError."""
        from classify.pixel.predict import collect_images, predict_images

        given = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        files, not_images = collect_images(tuple(Path(p) for p in given))
        results, skipped = predict_images(self.saved, files, batch_size, runtime=runtime)
        skipped = not_images + skipped
        if not results:
            reasons = sorted({s["reason"].split(":")[0] for s in skipped}) or ["no files"]
            raise UserError(f"none of the {len(skipped)} file(s) given could be predicted ({', '.join(reasons)}); "
                            "pass image files or folders of them")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} file(s) that could not be predicted (see .skipped): "
                          f"{skipped[0]['file']}: {skipped[0]['reason']}", stacklevel=2)
        return Predictions(results, skipped)

    def export(self, folder: PathLike, force: bool = False) -> dict[str, Path]:
        """Write the run as one model for deployment (docs/deployment.md): folder/model.keras,
        folder/saved_model/, folder/labels.json (and model.xml where OpenVINO is installed); their paths.
        `force` replaces an earlier export there, never other files."""
        from classify.pixel.export import export_run

        return export_run(self.saved, Path(folder), force)
