"""`featurecache compare` / `make compare`: lr, rf and mlp side by side on one or more caches.

Reads each cache given with --features (default: the one features/LATEST names) once, trains every
--model on it (default: lr, mlp, rf) and writes comparison.csv, .md and .png under --out-dir, plus
each run's own files (classify.workflows.compare has the table's format and rules).

    featurecache compare --features features/a.h5 --features features/b.h5
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import click

from classify.options import (CONTEXT, cache_path, echo_config, make_config, notes, summary_lines, track_option,
                              training_options)
from classify.training.config import has_views
from classify.training.specs import DEFAULT_MODELS, SPECS
from classify.workflows.ahead import IN_MAIN_THREAD, NotAhead, train_ahead
from classify.workflows.compare import LOCK, TABLE, merge_rows, read_rows, row_for, stage_table, to_markdown
from featurecache.command import Command
from featurecache.files import interruptible


def run_and_record(cache, cfg, out_dir: Path, table: dict[str, Path], track: str | None,
                   trained: Future | None = None) -> None:
    """Train one run (or take it and its figures from `trained`, where `train_ahead` trains it, unless
    that resolves to `NotAhead`), then write its files and its table row together, and the index page."""
    from classify.runs.outputs import Staged, run_paths, stage_run, write_error
    from classify.reporting.report import write_index
    from classify.runs.tracking import log_run
    from classify.training.train import train_and_evaluate
    from featurecache.files import locked

    click.echo(f"compare: {cfg.model} on {cache.path} (seed {cfg.seed}) ...", err=True)
    echo_config(cfg, has_views(cache.attrs))
    taken = trained.result() if trained is not None else NotAhead()
    if isinstance(taken, NotAhead):
        if taken.why:
            click.echo(f"compare: {cfg.model} was not trained ahead: {taken.why}; training it here", err=True)
        taken = train_and_evaluate(cache, cfg), None
    result, figures = taken
    for line in notes(cfg, result.trained.details):
        click.echo(line)
    try:
        with Staged() as staged:  # this run's files and its row land together, or neither does
            record, _ = stage_run(staged, cache, cfg, result, run_paths(out_dir, cache, cfg), figures)
            # read, merge, replace under the lock: no row of a compare running beside this one is lost
            with locked(out_dir / LOCK, str(table["csv"])):
                stage_table(staged, table, merge_rows(read_rows(table["csv"]),
                                                      [row_for(cache, cfg, result.metrics, record)]))
                staged.commit()
    except (OSError, RuntimeError) as e:
        error = write_error(e, out_dir)
        if error is None:
            raise
        raise error from None
    for line in summary_lines(cfg.model, cache.path.stem, result.metrics, {"run": record.files["run"]}):
        click.echo(line)
    write_index(out_dir)  # after each run: a compare stopped part-way still shows the runs it finished
    if track:
        click.echo(f"  mlflow: run {log_run(record)}")


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--features", multiple=True, type=click.Path(path_type=str),
              help="Feature cache(s) to compare; repeat to put caches side by side. Default: features/LATEST.")
@click.option("--model", "models", multiple=True, type=click.Choice(sorted(SPECS)),
              help="Models to train (repeatable). Default: lr, mlp, rf (knn only when named).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train each model with N seeds (--seed, --seed + 1, ...); the table gives mean ± std over them.")
@training_options
@track_option
@interruptible("compare")
def cli(features: tuple[str, ...], models: tuple[str, ...], seeds: int, track: str | None, **options) -> None:
    """Train several classifiers on the same cached features (each cache loaded once) and write a
    comparison table (CSV, Markdown) and bar chart; rows of other caches, models and settings are kept."""
    from classify.runs.outputs import check_out_dir
    from classify.runs.tracking import require
    from classify.training.train import load_for_training

    paths = [cache_path(f) for f in features] if features else [cache_path(None)]
    paths = list({str(p.absolute()): p for p in paths}.values())  # a cache given twice is compared once
    models = tuple(dict.fromkeys(models)) or DEFAULT_MODELS  # so is a model
    out_dir = check_out_dir(options["out_dir"])
    table = {ext: out_dir / f"{TABLE}.{ext}" for ext in ("csv", "md", "png")}
    read_rows(table["csv"])  # a broken table fails now, before any training
    require(track)
    # all checked before any training; each read once (labels only where it is streamed: --max-memory)
    caches = [load_for_training(p, make_config(**options)) for p in paths]
    runs = [(cache, make_config(**{**options, "model": model, "features": str(cache.path), "seed": seed}))
            for cache in caches for model in models
            for seed in range(options["seed"], options["seed"] + seeds)]   # --seeds N: N runs, seeds S..S+N-1
    ahead = train_ahead(runs)
    if ahead:
        click.echo(f"compare: {', '.join(runs[i][1].model for i in ahead)} train ahead in {ahead.where}", err=True)
    if ahead and any(cfg.model in IN_MAIN_THREAD for _, cfg in runs):
        from featurecache.tfimport import tensorflow

        tensorflow()   # imported while the runs ahead train, not after them
    for i, (cache, cfg) in enumerate(runs):
        run_and_record(cache, cfg, out_dir, table, track, ahead.get(i))
    click.echo(to_markdown(read_rows(table["csv"])), nl=False)
    for ext, p in table.items():
        click.echo(f"  {ext}: {p}")
    click.echo(f"  index: {out_dir / 'index.html'}")


def main() -> None:
    cli(prog_name="featurecache compare")


if __name__ == "__main__":
    main()
