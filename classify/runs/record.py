"""The run record (`<name>-run.json`): its one owner, `RunRecord`.

`classify` and `compare` write one per run, at the top of the reports folder; every reader (the
report page and best.json, compare, predict, export and robustness through
`classify.runs.saved.load_run`, MLflow tracking, bench) reads it through `RunRecord.load`, which
checks the type of every field. A file that is not a run record is one `RunRecordError`, whose
`problem` says in a few words what is wrong; the report lists it as "skipped: <path>: <problem>".

    record = RunRecord.load("reports/cifar10-vgg16-gap-32px-lr-1a2b3c4d-run.json")
    record.metrics.accuracy, record.metrics.accuracy_ci, record.cache.attrs["backbone"]
    record.located("confusion")        # where that figure is now, wherever the folder was moved
    record.save(path)                  # atomic (featurecache.files.write_text)

On disk it is JSON with the fields below as keys. `format` is "featurecache-run"; `format_version`:

    1   the run's figures, reports and model lie beside the record (the flat layout)
    2   adds `folder`: the run's own folder beside the record, which holds them ("" when they lie
        beside it, as for runs given --plot-name or --report-name)

Records of every version up to FORMAT_VERSION load (a field a record lacks takes its default); a
newer one is refused with "upgrade to read it". `files` holds the absolute paths the files were
written to; readers find a file at `located(key)` (the record's folder / `folder` / the file's name),
so a reports folder that was moved or copied still reads.

Adding a field (the record's or a part's, e.g. adversarial training settings):
  1. declare it on `RunRecord`, or on the part it belongs to (`Metrics`, `CacheRef`, `Calibration`,
     or a new dataclass of its own), with its type and a default that stands for records written
     before it existed (usually None): `adversarial: Adversarial | None = None`;
  2. fill it where the record is built (`classify.runs.outputs.run_record`);
  3. read it as an attribute (`record.adversarial`).
The type is checked on load from the annotation alone (str, int, float, bool, dict, list[X],
tuple[X, Y], dict[str, X], X | None, nested dataclasses); `check` methods add rules a type cannot say
(a score in 0..1). A new optional field needs no new format_version: readers that do not know it keep
it in `extra` and write it back unchanged. Bump FORMAT_VERSION only when older readers would misread
a record (as `folder` does: they would look for the files beside it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from featurecache.errors import UserError, reason

RUN_FORMAT = "featurecache-run"
FORMAT_VERSION = 2
SUFFIX = "-run.json"
SCORES = ("accuracy", "macro_f1", "val_accuracy")   # metrics that are numbers in 0..1 where present
REQUIRED = ("model", "hyperparameters", "config", "cache", "class_names", "metrics", "files")
SHARED_DEFAULTS = {"views": "all", "tta": False}   # what records from before these settings ran with

__all__ = ["RUN_FORMAT", "FORMAT_VERSION", "SUFFIX", "RunRecordError", "RunRecord", "Metrics", "CacheRef",
           "Calibration", "SharedSettings", "kind_name"]


class RunRecordError(UserError):
    """A `*-run.json` that is not a run record classify can read: `problem` says what is wrong."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} is not a run record classify can read ({problem}); "
                         "pass a <name>-run.json written by classify, or re-run classify to write it again")


class Problem(Exception):
    """What is wrong with a parsed record, in a few words (becomes RunRecordError.problem)."""


# --------------------------------------------------------------------------- typed parsing


def kind_name(value) -> str:
    """A JSON value's kind in words: "an object", "a list", "a string", "null", "a number"."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


KIND_WORDS = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
              int: "a number", float: "a number"}


def parse(kind, value, where: str):
    """`value` read from JSON as type `kind` (an annotation), or Problem naming `where`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]   # only `X | None` is used
        return parse(kind, value, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise Problem(f"{where} is {kind_name(value)}, not an object")
        return kind.from_json(value, where)
    base = origin or kind
    if base is float:
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
            raise Problem(f"{where} is {json.dumps(value)}, not a number")
        return float(value)
    if base is int and (type(value) is not int):
        raise Problem(f"{where} is {json.dumps(value)}, not a whole number")
    if base in (str, bool, dict, list, tuple) and (not isinstance(value, list if base is tuple else base)
                                                   or (base is not bool and isinstance(value, bool))):
        raise Problem(f"{where} is {kind_name(value)}, not {KIND_WORDS[base]}")
    if base is list and args:
        return [parse(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if base is tuple:
        if len(value) != len(args):
            raise Problem(f"{where} has {len(value)} values, not {len(args)}")
        return tuple(parse(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if base is dict and args:
        return {k: parse(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def plain(value):
    """A field's value as JSON data: dataclasses as objects (their `to_dict`), tuples as lists."""
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


class Part:
    """A typed part of a run record: its JSON keys are its fields; keys it does not know are kept in `extra`."""

    NOT_JSON: tuple[str, ...] = ("extra",)   # fields that are not keys of the JSON
    KEEP_NONE: tuple[str, ...] = ()   # fields written as null when None; other None fields are left out

    @classmethod
    def from_json(cls, data: dict, where: str = ""):
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name not in cls.NOT_JSON]
        prefix = f"{where}." if where else ""
        values = {n: parse(hints[n], data[n], prefix + n) for n in names if n in data}
        out = cls(**values, extra={k: v for k, v in data.items() if k not in names})
        out.check(where)
        return out

    def check(self, where: str) -> None:
        """Rules a type cannot say; raise Problem."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in self.NOT_JSON and (value is not None or f.name in self.KEEP_NONE):
                out[f.name] = plain(value)
        return {**out, **self.extra}


# --------------------------------------------------------------------------- the parts


@dataclass
class Metrics(Part):
    """Scores on the test rows (and the validation accuracy), timings and row counts of a run."""

    accuracy: float = 0.0                              # test accuracy; required
    accuracy_ci: tuple[float, float] | None = None     # bootstrap 95% interval [low, high] of it
    macro_f1: float | None = None
    ece: float | None = None                           # expected calibration error (after --calibrate's T)
    val_accuracy: float | None = None                  # the kept model on its validation rows: picks the best run
    train_time_s: float | None = None
    predict_time_s: float | None = None
    curve_time_s: float | None = None                  # fits made only to draw a curve
    n_fit: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    fit_images: int | None = None
    fit_rows: int | None = None                        # fit_images * (K + 1) with K views
    clean_accuracy: float | None = None                # on the test rows with no near-duplicate in train (an audit)
    clean_n_test: int | None = None
    audit: str | None = None
    audit_threshold: float | None = None
    excluded_rows: int | None = None                   # training rows --exclude left out
    exclude: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict, where: str = ""):
        for key in SCORES:   # in the scores' own words: "metrics.accuracy is null, not a number in 0..1"
            value = data.get(key)
            if key != "accuracy" and value is None:   # absent, or no validation rows
                continue
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
                raise Problem(f"{where}.{key} is {json.dumps(value)}, not a number in 0..1")
        return super().from_json(data, where)

    def numbers(self) -> dict[str, float]:
        """Every metric that is a number (for MLflow)."""
        return {k: float(v) for k, v in self.to_dict().items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class Calibration(Part):
    """--calibrate: the temperature predict applies, and the test rows' calibration error before it."""

    temperature: float = 1.0
    ece_before: float | None = None
    extra: dict = field(default_factory=dict)

    def check(self, where: str) -> None:
        if not self.temperature > 0:
            raise Problem(f"{where}.temperature is {self.temperature}, not a positive number")


@dataclass
class CacheRef(Part):
    """The feature cache a run was trained on: its path then and its attributes (backbone, pooling, ...)."""

    path: str = ""
    attrs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict, where: str = ""):
        for key, kind in (("path", str), ("attrs", dict)):
            if not isinstance(data.get(key), kind):
                raise Problem(f"{where}.{key} is {kind_name(data.get(key))}, not {KIND_WORDS[kind]}")
        return super().from_json(data, where)


@dataclass
class SharedSettings(Part):
    """The settings every run has beside its model's own, read from the record's `config`, with the
    values records from before a setting existed ran with."""

    seed: int = 0
    val_fraction: float = 0.1
    train_size: int | None = None
    views: str = SHARED_DEFAULTS["views"]
    tta: bool = SHARED_DEFAULTS["tta"]
    calibrate: bool = False
    max_memory: int | None = None
    exclude: str | None = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the record


@dataclass
class RunRecord(Part):
    """Everything about one run: identity, settings, chosen values, the cache it read, metrics, files."""

    format: str = RUN_FORMAT
    format_version: int = FORMAT_VERSION
    run_id: str = ""
    cache_id: str = ""
    model: str = ""
    hyperparameters: dict = field(default_factory=dict)   # the model's own settings
    chosen: dict = field(default_factory=dict)            # what training chose or found (C, sweep, epochs run)
    settings: dict | None = None                          # the settings that applied (records before it: None)
    config: dict = field(default_factory=dict)            # the full effective ClassifyConfig
    cache: CacheRef = field(default_factory=CacheRef)
    class_names: list[str] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    calibration: Calibration | None = None
    adversarial: dict | None = None                       # --adversarial: its settings and what each regeneration did
    # the split is over images: fit_rows == fit_images * (K + 1) with K views, val_images never fitted
    fit_images: int | None = None
    fit_rows: int | None = None
    val_images: list[int] | None = None
    history: dict = field(default_factory=dict)           # progress curves (classify.runs.trained.Trained.history)
    model_format: str = ""                                # classify.runs.saved.FORMATS key
    model_file: str = ""                                  # the model's file name, in `folder`
    model_sha256: str = ""
    files: dict[str, str] = field(default_factory=dict)   # key (curves, confusion, ..., run, model) -> absolute path written
    folder: str = ""                                      # the run's folder beside the record ("": files beside it)
    gallery: str | None = None                            # "written", or why there is no gallery
    class_names_note: str | None = None
    versions: dict = field(default_factory=dict)
    created: str = ""
    extra: dict = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False)   # where it was loaded from or saved to

    KEEP_NONE = ("calibration",)
    NOT_JSON = ("extra", "path")

    # ---- reading and writing

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunRecord":
        """Read and check a run record; RunRecordError (one line, `problem` in a few words) otherwise."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunRecordError(path, f"not JSON: {reason(e, 60)}") from None
        except OSError as e:
            raise RunRecordError(path, f"unreadable: {reason(e, 60)}") from None
        record = cls.from_dict(data, path)
        record.path = path
        return record

    @classmethod
    def from_dict(cls, data, path: str | os.PathLike = "<run record>") -> "RunRecord":
        """A record from parsed JSON, checked; RunRecordError naming `path` when it is not one."""
        try:
            return cls.from_json(data)
        except Problem as e:
            raise RunRecordError(path, str(e)) from None

    @classmethod
    def from_json(cls, data, where: str = ""):
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise Problem(f"no format='{RUN_FORMAT}'")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise Problem(f"no {', '.join(missing)}")
        version = data.get("format_version", 1)
        if type(version) is int and version > FORMAT_VERSION:
            raise Problem(f"format_version {version}, from a newer featurecache: upgrade to read it")
        if isinstance(data["files"], dict) and not all(isinstance(v, str) for v in data["files"].values()):
            raise Problem("files is not an object of file names")
        return super().from_json({"format_version": 1, **data}, where)

    def check(self, where: str) -> None:
        if not self.class_names:
            raise Problem("class_names is not a list of names")
        if self.folder and (Path(self.folder).name != self.folder or self.folder in (".", "..")):
            raise Problem(f"folder {self.folder!r} is not a folder name beside the record")
        SharedSettings.from_json(self.config, "config")

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the record as JSON, atomically; returns its path."""
        from featurecache.files import write_text

        self.path = Path(path) if path is not None else self.path
        write_text(self.path, self.json())
        return self.path

    def json(self) -> str:
        from classify.runs.identity import json_default

        return json.dumps(self.to_dict(), indent=1, default=json_default, allow_nan=False) + "\n"

    # ---- what readers ask

    @property
    def shared(self) -> SharedSettings:
        """seed, val_fraction, train_size, views, tta, ... of the run (defaults for older records)."""
        return SharedSettings.from_json(self.config, "config")

    @property
    def name(self) -> str:
        """The record's file name without "-run.json": what the run's other files are named after."""
        return self.path.name.removesuffix(SUFFIX) if self.path else ""

    def located(self, key_or_name: str) -> Path:
        """Where a file of the run is now: one of `files` by key ("confusion"), or a file name
        (`model_file`), looked up in the run's folder beside the record (beside it for flat runs)."""
        if self.path is None:
            raise ValueError("a record that was neither loaded nor saved has no location")
        name = Path(self.files.get(key_or_name, key_or_name)).name
        return self.path.parent / self.folder / name

    @property
    def validation_accuracy(self) -> float | None:
        """Accuracy of the kept model on its validation rows: the metric, or for records written
        before it was stored, the validation accuracy its curves or C sweep kept (None if neither)."""
        if self.metrics.val_accuracy is not None:
            return self.metrics.val_accuracy
        sweep = self.chosen.get("C_sweep")
        for point in sweep if isinstance(sweep, list) else []:
            if isinstance(point, dict) and point.get("C") == self.chosen.get("C"):
                return point.get("val_accuracy")
        x, val = self.history.get("x"), self.history.get("val_acc")
        if isinstance(x, list) and isinstance(val, list) and self.history.get("chosen") in x and val:
            return val[x.index(self.history["chosen"])]
        return None
