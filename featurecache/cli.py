"""`featurecache` (or `python -m featurecache`): every stage as one command with subcommands.

    featurecache extract --data-dir DIR        images -> features/<name>.h5 (extract.cli)
    featurecache merge --out CACHE SHARDS...   shard files of `extract --shard i/N` -> one cache
    featurecache classify --model lr           a cache -> a trained run under reports/ (classify.cli)
    featurecache compare | learning-curve | active | fewshot | audit | robustness | robust-model | report
    featurecache predict --run RUN IMAGES...   a saved run -> classes of new images
    featurecache export --run RUN --out DIR    a saved run -> one model for deployment

Each subcommand is imported only when it runs (or its --help is asked for), so
`featurecache --help` starts fast and never imports TensorFlow.
"""

from __future__ import annotations

import importlib

import click

from featurecache import __version__
from featurecache.command import Group

# subcommand -> "module:attribute" of its click command, in the order --help lists them
SUBCOMMANDS = {
    "extract": "extract.cli:cli",
    "merge": "extract.cli:merge_cli",
    "classify": "classify.cli:cli",
    "compare": "classify.commands.compare:cli",
    "learning-curve": "classify.commands.learning_curve:cli",
    "active": "classify.commands.active:cli",
    "fewshot": "classify.commands.fewshot:cli",
    "audit": "classify.commands.audit:cli",
    "robustness": "classify.commands.robustness:cli",
    "robust-model": "classify.commands.robust_model:cli",
    "report": "classify.commands.report:cli",
    "predict": "classify.commands.predict:cli",
    "export": "classify.commands.predict:export_cli",
}

# one line each for `featurecache --help`, so listing them imports none of them
SUMMARIES = {
    "extract": "Run a frozen ImageNet CNN over images once; cache the features in HDF5.",
    "merge": "Merge the shard files of `extract --shard i/N` into one cache.",
    "classify": "Train one classifier on a feature cache; write its run and reports.",
    "compare": "Train several classifiers on the same caches; write a comparison table.",
    "learning-curve": "Test accuracy against training-set size.",
    "active": "Active learning: which training images to label next, per strategy.",
    "fewshot": "Few-shot test accuracy: K training images per class.",
    "audit": "Audit a cache: near-duplicates, train/test leaks, label errors, outliers.",
    "robustness": "Accuracy of a saved run under FGSM and PGD attacks.",
    "robust-model": "Train a robust model and a baseline; attack both; table and figure.",
    "report": "Rebuild the reports folder's index.html over every run.",
    "predict": "Predict the class of new images with a saved run.",
    "export": "Write a saved run as one model for deployment.",
}


class LazyGroup(Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attribute = SUBCOMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUMMARIES[name]) for name in SUBCOMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="featurecache")
def cli() -> None:
    """featurecache: extract frozen ImageNet-CNN features once into HDF5, then train, compare,
    audit and deploy classifiers on the cache in seconds. `featurecache COMMAND --help` for each."""


def main() -> None:
    cli(prog_name="featurecache")


__all__ = ["cli", "main", "SUBCOMMANDS"]
