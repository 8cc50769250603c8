"""`ModelSpec`: everything classify knows about one kind of model, in one value.

A spec holds the model's own settings (a dataclass with defaults whose `__post_init__` validates
them), its two fits (rows in memory; rows streamed from the cache file), each returning a
`Trained` whose `save` writes the spec's format, the loader that reads that file back, and
whether a run of it exports to Keras (its Keras head, or why not).
`classify.training.specs.SPECS` is the table of them; nothing else is keyed by a model's name.

The checks below raise `featurecache.errors.UserError` naming the setting as Python spells it
(`C=-1.0`); the command layer's option types refuse the same values at parse time, naming the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from featurecache.errors import UserError

# (X_fit (n, D), y_fit (n,), X_val, y_val, n_classes, cfg: ClassifyConfig, curves) -> Trained;
# a fit sees training and validation rows only, never the test rows
Fit = Callable[..., object]
# (stream: classify.training.data.Stream, n_classes, cfg, curves) -> Trained: the same model when the
# training matrix is larger than --max-memory; it reads the cache a chunk at a time
FitStream = Callable[..., object]
# (path, n_classes) -> predict_proba: raw features (n, D) -> (n, C); refuses files classify did not write
Load = Callable[[Path, int], Callable[[np.ndarray], np.ndarray]]
# (model_path, n_classes, features, keras) -> logits: the saved model as Keras layers on a (None, D) float32
# features tensor, giving (None, C) float32 logits (a differentiable head for export and attacks)
KerasHead = Callable[[Path, int, int, object], object]


@dataclass(frozen=True)
class ModelSpec:
    name: str                      # the --model value and the run files' <model> part
    title: str                     # in words, for --help
    params: type                   # dataclass of the model's own settings, with defaults; validates itself
    fit: Fit
    fit_stream: FitStream
    format: str                    # the run record's model_format, written in the model file
    suffix: str                    # the model file's suffix (<name>-model.h5 or .keras)
    load: Load
    keras_head: KerasHead | None = None   # None: the model has no Keras form (no gradient, no export)
    export_refusal: str | None = None     # why a run is not exported ("{run}": its record's file name, "{rows}":
                                          # its training rows); None: it exports
    calibrates: bool = True        # --calibrate applies (a temperature fitted on the validation split)
    batch_param: str | None = None  # the setting whose batches streaming holds in memory beside a chunk

    def param_names(self) -> tuple[str, ...]:
        """The model's own settings, in their dataclass's order (what enters the run's identity)."""
        return tuple(f.name for f in fields(self.params))

    def refusal(self, run_name: str, chosen: dict) -> str | None:
        """Why a run of this model is not exported, in one line (`chosen`: what its training chose, as
        its run record keeps it); None when it is exported."""
        if self.export_refusal is None:
            return None
        return self.export_refusal.format(run=run_name, rows=chosen.get("train_rows", "?"))


# --------------------------------------------------------------------------- checks for params' __post_init__


def refuse(name: str, value, want: str) -> UserError:
    return UserError(f"{name}={value!r} is not {want}; pass {name} as {want}")


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_int(name: str, value, low: int = 1, none: bool = False, auto: bool = False) -> None:
    """A whole number >= low (or None, or "auto", where allowed)."""
    if (none and value is None) or (auto and value == "auto"):
        return
    if not is_int(value) or value < low:
        raise refuse(name, value, f"a whole number >= {low}" + (" or None" if none else "") + (" or 'auto'" if auto else ""))


def check_real(name: str, value, low: float, high: float = math.inf, *, low_open: bool = False,
               high_open: bool = False, none: bool = False, auto: bool = False) -> None:
    """A finite number in the interval [low, high] (ends open where asked), or None / "auto" where allowed."""
    if (none and value is None) or (auto and value == "auto"):
        return
    inside = is_real(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not inside:
        span = (f"> {low:g}" if low_open else f">= {low:g}") if high == math.inf else \
            f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise refuse(name, value, f"a finite number {span}" + (" or None" if none else "") + (" or 'auto'" if auto else ""))


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise refuse(name, value, "one of " + ", ".join(repr(c) for c in choices))
