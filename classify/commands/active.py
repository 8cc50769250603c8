"""`featurecache active` / `make active-learning`: which training images to label next.

Pool-based active learning on one cache, as the seed project ran it by hand: start from
--initial labelled rows of the training split (a stratified random set), then, round by round,
fit the classifier on the labelled rows, score the test rows, and move the --batch pool rows the
strategy picks into the labelled set, until --budget rows are labelled. Only features move: every
round refits a classifier, so a whole run takes seconds. The pool is the cache's training split;
the test rows are scored after each round and never queried.

Strategies (higher uncertainty is picked first; ties go to the earlier pool row):
    margin           smallest gap between the two most probable classes (the seed's)
    entropy          largest entropy of the predicted distribution
    least-confident  smallest probability of the predicted class
    random           a seeded random draw (the baseline)

For a seed, every strategy starts from the same initial set, and a strategy's picks never depend
on which other strategies run beside it. Writes under --out-dir (default reports/):

    <cache>-<model>-<id>-active.csv    strategy, seed, round, labelled, accuracy, macro_f1, queried_per_class
    <cache>-<model>-<id>-active.png    mean test accuracy +- 1 sd over seeds against labelled images
    <cache>-<model>-<id>-active.json   {"settings": {...}, "runs": [{strategy, seed, indices, sources}]}

`indices` are rows of the cache's /train split, the initial set first and then each round's picks
in the order they were queried; `sources` name the image behind each (CIFAR-10 batch/row or a
photo's path), so exactly those images can be labelled. <id> is a short digest of the settings
and the cache's identity. TensorFlow is imported only for --model mlp.

    featurecache active --features features/cifar10-vgg16-gap-32px.h5 --strategy margin --strategy random
"""

from __future__ import annotations

import json
import time

import click

from classify.options import CONTEXT, cache_path, echo_config, echo_written, make_config, training_options
from classify.training.config import has_views
from classify.training.specs import SPECS
from classify.workflows.active import (DEFAULT_STRATEGIES, STRATEGIES, Plan, active_learning, check_plan, csv_rows, plot,
                                      table)
from featurecache.command import Command
from featurecache.errors import UserError
from featurecache.files import Staged, interruptible


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5). Default: the one features/LATEST names.")
@click.option("--model", type=click.Choice(sorted(SPECS)), default="lr", show_default=True)
@click.option("--strategy", "strategies", type=click.Choice(list(STRATEGIES)), multiple=True,
              help="Query strategy; give several times to compare. Default: margin and random.")
@click.option("--initial", type=click.IntRange(min=1), default=Plan.initial, show_default=True,
              help="Labelled rows to start from: a stratified random set of the training split.")
@click.option("--batch", type=click.IntRange(min=1), default=Plan.batch, show_default=True,
              help="Pool rows queried (labelled) per round.")
@click.option("--budget", type=click.IntRange(min=1), default=Plan.budget, show_default=True,
              help="Labelled rows at the end (the last round takes what is left when --batch does not divide).")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Repeats with different initial sets: seeds --seed .. --seed + N - 1.")
@training_options(skip=("--train-size",))  # the pool is the whole training split
@interruptible("active learning")
def cli(features, model, strategies, initial, batch, budget, seeds, **options) -> None:
    """Active learning on a feature cache: start from --initial labelled training rows, query --batch
    more per round with each --strategy until --budget, scoring the test rows after every round.
    Writes a CSV of every round, a PNG of accuracy against labelled images and a JSON of the rows
    (and their sources) each run labelled."""
    from classify.runs.outputs import check_out_dir, csv_text, digest, run_id
    from featurecache.cache import read_cache

    path = cache_path(features)
    out_dir = check_out_dir(options["out_dir"])
    cache = read_cache(path)
    plan = Plan(initial, batch, budget)
    cfg = make_config(model=model, features=str(path), **options)
    check_plan(plan, cache.train.labels, len(cache.test.labels), path, cfg)
    strategies = list(dict.fromkeys(strategies or DEFAULT_STRATEGIES))
    seed_list = list(range(cfg.seed, cfg.seed + seeds))
    echo_config(cfg, has_views(cache.attrs))
    click.echo(f"active learning: {model} on {path}, {', '.join(strategies)}, seeds {seed_list}, "
               f"labelled {plan.sizes()}", err=True)
    start = time.perf_counter()
    runs = active_learning(cache, cfg, strategies, seed_list, plan)
    elapsed = time.perf_counter() - start
    settings = {"cache": str(path.resolve()), "model": model, "hyperparameters": cfg.hyperparameters(),
                "val_fraction": cfg.val_fraction, "strategies": strategies, "seeds": seed_list,
                "initial": initial, "batch": batch, "budget": budget, "labelled": plan.sizes(),
                "class_names": cache.class_names, "data_kind": cache.attrs.get("data_kind"),
                "data_location": cache.attrs.get("data_location")}
    ident = digest({"run": run_id(cache, cfg), **{k: settings[k] for k in ("strategies", "seeds", "labelled")}})
    settings["id"] = ident
    base = out_dir / f"{path.stem}-{model}-{ident}-active"
    files = {s: base.with_name(base.name + "." + s) for s in ("csv", "png", "json")}
    sources = cache.train.sources
    record = {"settings": settings,
              "runs": [{"strategy": r["strategy"], "seed": r["seed"], "indices": r["indices"],
                        "sources": [str(sources[i]) for i in r["indices"]]} for r in runs]}
    rows = csv_rows(runs, cache.class_names)
    try:
        with Staged() as staged:
            staged.aside(files["csv"]).write_text(csv_text(rows))
            staged.aside(files["json"]).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
            plot(runs, staged.aside(files["png"]), f"active learning: {model} on {path.stem}")
    except OSError as e:
        raise UserError(f"could not write the active-learning files in {out_dir} ({e}); earlier files are unchanged") from None
    for line in table(runs):
        click.echo(line)
    echo_written(files, out_dir)
    click.echo(f"{len(runs)} run(s) of {len(plan.sizes())} rounds in {elapsed:.1f} s", err=True)


def main() -> None:
    cli(prog_name="featurecache active")


if __name__ == "__main__":
    main()
