"""The model table: each classifier's `ModelSpec` (classify.training.modelspec), under its --model name.

This is the one place a model's name is a key. Its settings, both fits, its saved format and loader,
and whether it exports all come from its entry; the commands offer `click.Choice(sorted(SPECS))`.
Adding a model is one entry here and its module (settings dataclass, fit, streamed fit, save, load).

No TensorFlow here: the MLP's module imports Keras only when it fits or loads.
"""

from __future__ import annotations

from classify.training import forest, knn, lr, mlp
from classify.training.modelspec import ModelSpec
from featurecache.errors import UserError

# name -> ModelSpec; the contract of each field is in ModelSpec
SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (lr.SPEC, forest.SPEC, mlp.SPEC, knn.SPEC)}

DEFAULT_MODELS = ("lr", "mlp", "rf")   # what compare trains unless --model says otherwise
# each model's own settings, by name (derived from the table, for readers of run records)
MODEL_PARAMS = {name: spec.param_names() for name, spec in SPECS.items()}
# the run record's model_format -> (model file suffix, loader(path, n_classes) -> predict_proba)
FORMATS = {spec.format: (spec.suffix, spec.load) for spec in SPECS.values()}


def spec_of(model: str) -> ModelSpec:
    """The spec of `model`, refusing a name the table does not hold."""
    if model not in SPECS:
        raise UserError(f"model={model!r} is not one of {', '.join(sorted(SPECS))}; pass one of them")
    return SPECS[model]


def spec_for_format(model_format: str) -> ModelSpec | None:
    """The spec whose fitted models are saved as `model_format` (a run record's model_format), or None."""
    return next((spec for spec in SPECS.values() if spec.format == model_format), None)


# a setting's name -> the spec that owns it: each name belongs to one model (ClassifyConfig routes
# `C=0.5` to LR's settings by it)
OWNERS = {setting: spec for spec in SPECS.values() for setting in spec.param_names()}
assert len(OWNERS) == sum(len(s.param_names()) for s in SPECS.values()), "two models share a setting's name"


def owner_of(setting: str) -> ModelSpec | None:
    """The spec whose own settings include `setting`, or None."""
    return OWNERS.get(setting)


def default_params() -> dict:
    """Every model's settings at their defaults: {model: its params dataclass instance}."""
    return {name: spec.params() for name, spec in SPECS.items()}
