"""Extraction from Python: one call assembles and runs what `python -m extract` runs.

    extract(data_dir, backbone="vgg16", out=None, *, log=None, progress=True, **settings) -> Path
        a notebook's call: the cache file written (or found up to date); says what it does on stderr
    run_extraction(config, *, log=None, progress=False) -> Summary
        the same from an `ExtractConfig`: what the command calls
    prepare(config, log) -> Job, then run(job, log, progress) -> Summary (bench times the two apart)
        its two steps: settings checked, model configured and data listed; then the features computed
    make_config(**settings) -> ExtractConfig
        keyword settings (ExtractConfig's field names) checked before anything loads

Settings are ExtractConfig's fields in Python terms (`image_size=224`, `weights="none"`). A mistake
raises `featurecache.errors.SettingError` whose `setting` is the keyword at fault and whose message
names it as `name=value`; only the command line turns that into its flag. What the command prints
on stderr (the data set, the settings, the pipeline's notes) goes to `log`: stderr for `extract`,
nowhere for the lower-level calls unless given. Points features/LATEST at the cache as the command
does (not for a shard, nor for a cache outside features/).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from extract.config import ExtractConfig, augment_settings
from extract.data import Dataset
from extract.pipeline import Summary
from featurecache.backbones import POOLINGS, PRECISIONS
from featurecache.errors import SettingError
from featurecache.extractor import Extractor
from featurecache.runtime import RUNTIMES

Log = Callable[[str], None]
SETTINGS = tuple(f.name for f in fields(ExtractConfig))


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)

# setting -> (what it must be, the test); settings absent here are checked where they are used
# (backbone, weights, pooling... by the Extractor; shard by extract.shards; augment by featurecache.augment)
CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "image_size": ("a whole number of pixels from 8 to 2048", lambda v: _whole(v) and 8 <= v <= 2048),
    "batch_size": ("a whole number of images, 1 or more", lambda v: _whole(v) and v >= 1),
    "limit": ("a whole number of images, 1 or more", lambda v: _whole(v) and v >= 1),
    "seed": ("a whole number", _whole),
    "test_fraction": ("a fraction strictly between 0 and 1", lambda v: _number(v) and 0 < v < 1),
    "checkpoint_every": ("a whole number of rows, 1 or more", lambda v: _whole(v) and v >= 1),
    "decode_workers": ("a whole number of threads, 1 or more", lambda v: _whole(v) and v >= 1),
    "store_dtype": ("'float32' or 'float16'", lambda v: v in ("float32", "float16")),
    "engine": ("'local' or 'ray'", lambda v: v in ("local", "ray")),
    "precision": (f"one of {', '.join(map(repr, ('auto',) + PRECISIONS))}", lambda v: v in ("auto",) + PRECISIONS),
    "runtime": (f"one of {', '.join(map(repr, RUNTIMES))}", lambda v: v in RUNTIMES),
    "pooling": (f"one of {', '.join(map(repr, POOLINGS))}", lambda v: v in POOLINGS),
}
OPTIONAL = {"image_size", "batch_size", "limit", "decode_workers"}  # None: the default


def make_config(**settings) -> ExtractConfig:
    """An ExtractConfig from keyword settings, checked: an unknown keyword or a wrong value is one SettingError."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SettingError(f"{unknown[0]!r} is not a setting of extract; the settings are: "
                           f"{', '.join(SETTINGS)}", setting=unknown[0])
    for name, value in list(settings.items()):
        if isinstance(value, os.PathLike) and name in ("data_dir", "out", "backbone", "weights"):
            settings[name] = os.fspath(value)
    config = ExtractConfig(**settings)
    check_config(config)
    return config


def check_config(config: ExtractConfig) -> None:
    """Each setting's type and range (what the command line checks when it parses its options)."""
    for name, (must, ok) in CHECKS.items():
        value = getattr(config, name)
        if not (value is None and name in OPTIONAL) and not ok(value):
            raise SettingError(f"{name}={value!r} is not {must}; pass {must}")
    if config.out is not None:
        from extract.pipeline import check_out

        check_out(config.out)


def check_engine(config: ExtractConfig) -> None:
    """The settings beyond one process, checked before any model is built: one error for each mistake."""
    from extract.shards import parse_shard

    if config.shard is not None:
        parse_shard(config.shard)
    if config.engine != "ray":
        given = [name for name in ("workers", "address") if getattr(config, name) is not None]
        if given:
            raise SettingError(f"{' and '.join(f'{n}={getattr(config, n)!r}' for n in given)} apply to "
                               "engine='ray' only; pass engine='ray' or leave them out")
        return
    if config.workers is not None and (not _whole(config.workers) or config.workers < 1):
        raise SettingError(f"workers={config.workers!r} is not a number of actors; pass workers=1 or more")
    if config.augment:
        raise SettingError("`augment` runs on the local engine only; leave out engine='ray' for an "
                           "augmented cache")
    from extract.ray_engine import check_reachable, import_ray

    import_ray(config.verbose)
    if config.address or os.environ.get("RAY_ADDRESS"):
        check_reachable(config.address or os.environ["RAY_ADDRESS"])


@dataclass
class Job:
    """One extraction, ready to run: its settings, model, data and cache path."""

    config: ExtractConfig
    extractor: Extractor
    dataset: Dataset
    out: Path                       # the cache file (a shard's own file with `shard`)
    extra_attrs: dict | None = None  # a shard's attributes (extract/shards.py)


def prepare(config: ExtractConfig, log: Log | None = None) -> Job:
    """Settings checked, the model configured (not yet built), the data listed and fingerprinted, the cache
    path chosen; what the run will do goes to `log`."""
    from extract.datasets import dataset_name, is_image_folder, load_dataset
    from extract.index import index_path
    from extract.naming import default_cache_path
    from extract.pipeline import settings
    from featurecache.precision import resolve_precision
    from featurecache.runtime import resolve_runtime

    log = log or (lambda msg: None)
    check_config(config)
    check_engine(config)
    augment_settings(config)  # bad augmentation options fail before anything loads or is written
    extractor = Extractor(config.backbone, config.pooling, config.image_size, config.weights, config.seed,
                          resolve_precision(config.precision), config.feature_layer,
                          runtime=resolve_runtime(config.runtime))
    folder = is_image_folder(Path(config.data_dir)) if config.data_dir else False
    out = Path(config.out) if config.out else default_cache_path(dataset_name(config.data_dir),
                                                                 settings(config, extractor, folder))
    dataset = load_dataset(config.data_dir, extractor.sizes.model, config.limit, config.test_fraction, config.seed,
                           index=index_path(out), verify=config.verify, workers=config.decode_workers)
    extra_attrs = None
    if config.shard:
        from extract.shards import parse_shard, shard_dataset

        shard = parse_shard(config.shard)
        dataset, extra_attrs = shard_dataset(dataset, shard)
        out = shard.path(out)
    extractor.feed(dataset.image_size)  # CIFAR-10 arrives at 32 px and is resized inside the graph
    announce(config, dataset, extractor, out, log)
    return Job(config, extractor, dataset, out, extra_attrs)


def announce(config: ExtractConfig, dataset: Dataset, extractor: Extractor, out: Path, log: Log) -> None:
    """The lines a run starts with: files that are not images, the data set and the cache, the settings."""
    if dataset.not_images:
        shown = ", ".join(dataset.not_images[:5]) + (" ..." if len(dataset.not_images) > 5 else "")
        log(f"skipped {len(dataset.not_images)} file(s) that are not images: {shown}")
    sizes = ", ".join(f"{s} {len(d):,}" for s, d in dataset.splits.items())
    log(f"extract: {dataset.name} ({sizes} images) -> {out}")
    shown = {**config.settings(dataset.kind == "folder"), "precision": extractor.precision,
             "runtime": extractor.runtime}
    log("settings: " + json.dumps(shown, allow_nan=False))


def run(job: Job, log: Log | None = None, progress: bool = False, engine=None) -> Summary:
    """Compute the features of a prepared job into its cache (resuming its checkpoints); `progress` draws a
    bar per split (featurecache.progress); `engine` defaults to what `job.config.engine` names."""
    from extract import pipeline

    config = job.config
    if engine is None and config.engine == "ray":
        from extract.ray_engine import RayEngine

        engine = RayEngine(config.workers or 2, config.address, config.verbose)
    make_bar = progress_bar if progress else None
    return pipeline.run(config, job.dataset, job.out, job.extractor, make_bar=make_bar, log=log or (lambda msg: None),
                        extra_attrs=job.extra_attrs, engine=engine)


def progress_bar(split: str, total: int, initial: int):
    from featurecache.progress import progress

    return progress(f"extract {split}", total, "img", initial)


def run_extraction(config: ExtractConfig, *, log: Log | None = None, progress: bool = False,
                   started: Callable[[Job], None] | None = None) -> Summary:
    """Prepare and run one extraction, then point features/LATEST at the cache (not for a shard).

    `started(job)` is called once the cache path is known (the command uses it to say where an
    interrupted run's checkpoints are). Returns the pipeline's `Summary`; `Summary.out` is the cache."""
    from featurecache.cache import features_dir, set_latest

    log = log or (lambda msg: None)
    job = prepare(config, log)
    if started:
        started(job)
    result = run(job, log, progress)
    note = set_latest(features_dir(), job.out) if not config.shard else None  # a shard is no cache to classify
    if note:
        log(note)
    return result


def extract(data_dir: str | os.PathLike | None = None, backbone: str | os.PathLike = "vgg16",
            out: str | os.PathLike | None = None, *, log: Log | None = None, progress: bool = True,
            **settings) -> Path:
    """Extract the features of `data_dir` (a CIFAR-10 folder or archive, a photo folder with one subfolder
    per class; None: CIFAR-10 through Keras' download) with `backbone` (a featurecache.backbones name or a
    .keras file) into the cache `out` (None: the default name under features/), and return the cache's path.
    A cache already up to date is kept; an interrupted one resumes.

    `settings` are the other ExtractConfig fields (pooling, image_size, weights, seed, precision, runtime,
    batch_size, limit, test_fraction, store_dtype, checkpoint_every, force, no_wait, verify,
    decode_workers, shard, engine, workers, address, verbose, augment, views, rotate_degrees, test_views).
    What it does is said as the command says it, on stderr by default (`log` takes each line instead;
    `progress` draws a bar per split). Raises SettingError (a UserError) naming the keyword at fault;
    other UserErrors for bad data."""
    config = make_config(data_dir=data_dir, backbone=backbone, out=out, **settings)
    log = log or say
    result = run_extraction(config, log=log, progress=progress)
    if result.skipped:  # unreadable files: named, never dropped in silence
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        log(f"skipped {len(result.skipped)} unreadable file(s), listed in the cache's 'skipped' attribute: {shown}")
    return result.out


def say(message: str) -> None:
    print(message, file=sys.stderr)
