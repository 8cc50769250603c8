"""`python -m classify` / `make classify MODEL=lr|rf|mlp`: a feature cache -> a trained classifier and its reports.

Reads one cache written by `extract` (default: the one features/LATEST names)
and writes, under reports/ (names from the cache and model, or
--plot-name / --report-name):

    <cache>-<model>-<run>-curves.png       loss and accuracy, training vs validation, over epochs / iterations / trees
    <cache>-<model>-<run>-confusion.png    confusion matrix on the test rows
    <cache>-<model>-<run>-gallery.png      most confident mistakes, when the cache records its images' sources
    <cache>-<model>-<run>-reliability.png  reliability diagram of the test rows (15 confidence bins, ECE)
    <cache>-<model>-<run>-report.txt/.json scikit-learn classification report with class names
    <cache>-<model>-<run>-run.json         run record: every setting, the cache and its attributes, metrics, timings
    <cache>-<model>-<run>-model.{h5,keras}  the fitted model, in a format that loads without running code
    <cache>-<model>-latest.json            names the latest run of this model on this cache

<run> is a short digest of the run's settings and the cache's identity: other settings
never overwrite an earlier run's files (classify.runs.outputs).

    python -m classify --model lr --C auto

`lr` and `rf` never import TensorFlow; only `--model mlp` does.
"""

from __future__ import annotations

import click

from classify.training.config import has_views
from classify.training.specs import SPECS
from classify.options import (CONTEXT, adversarial_options, cache_path, echo_config, make_config, notes, summary_lines,
                              track_option, training_options)
from featurecache.command import Command
from featurecache.files import interruptible


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--model", type=click.Choice(sorted(SPECS)), default="lr", show_default=True,
              help="Classifier: lr (logistic regression), rf (random forest), mlp (Keras), knn (weighted k nearest neighbours).")
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5) written by extract. Default: the one features/LATEST names.")
@click.option("--plot-name", default=None, help="File name of the curves PNG (confusion/gallery PNGs take its stem).")
@click.option("--report-name", default=None,
              help="Base name of the report: NAME.txt, NAME.json, NAME-run.json, NAME-model.<ext>.")
@click.option("--exclude", default=None, metavar="AUDIT.json:KIND",
              help="Leave out the training rows an audit (featurecache audit) flags: KIND is duplicates, "
                   "label-issues, or both comma-separated, e.g. reports/x-audit.json:duplicates.")
@training_options
@adversarial_options
@track_option
@interruptible("classify")
def cli(**options) -> None:
    """Train one classifier on a feature cache; write curves, reports, a confusion matrix, a gallery,
    a run record and the model under --out-dir. Test rows are used only for the final report.

    Saved models load without running code (LR and RF: HDF5 arrays; MLP: a Keras archive loaded in
    safe mode); runs and models this tool did not write are refused when loaded."""
    from classify.workflows.audit_record import check_exclude
    from classify.runs.outputs import check_name, check_out_dir, run_paths, write_run
    from classify.reporting.report import write_index
    from classify.runs.tracking import log_run, require
    from classify.training.train import load_for_training, train_and_evaluate

    cfg = make_config(**options)
    if cfg.exclude:
        check_exclude(cfg.exclude)
    check_name("plot_name", cfg.plot_name)
    check_name("report_name", cfg.report_name)
    path = cache_path(cfg.features)
    cfg.features = str(path)
    out_dir = check_out_dir(cfg.out_dir)
    require(options["track"])
    cache = load_for_training(path, cfg)
    echo_config(cfg, has_views(cache.attrs))
    click.echo(f"classify: {cfg.model} on {path} (train {len(cache.train.labels):,}, test {len(cache.test.labels):,}, "
               f"{cache.attrs.get('feature_dim', '?')} features, {len(cache.class_names)} classes)", err=True)
    if cache.train.features is None:
        click.echo("classify: the training matrix is larger than --max-memory; streaming it from the cache", err=True)
    result = train_and_evaluate(cache, cfg)
    for line in notes(cfg, result.trained.details):
        click.echo(line)
    if "excluded_rows" in result.metrics:
        click.echo(f"left out {result.metrics['excluded_rows']:,} training row(s) that {cfg.exclude} flags")
    if "clean_accuracy" in result.metrics:
        click.echo(f"clean test accuracy {result.metrics['clean_accuracy']:.4f} on the {result.metrics['clean_n_test']:,} "
                   f"test rows with no near-duplicate in train (audit {result.metrics['audit']})")
    paths = run_paths(out_dir, cache, cfg)
    record, gallery_note = write_run(cache, cfg, result, paths)
    if gallery_note:
        click.echo(f"no gallery: {gallery_note}")
    click.echo(f"{cfg.model}: fit on {result.metrics['n_fit']:,} rows, validated on {result.metrics['n_val']:,}, "
               f"tested on {result.metrics['n_test']:,}; wrote:")
    index = write_index(out_dir)
    for line in summary_lines(cfg.model, path.stem, result.metrics, {**record.files, "index": str(index)}):
        click.echo(line)
    if options["track"]:
        click.echo(f"  mlflow: run {log_run(record)}")


def main() -> None:
    cli(prog_name="python -m classify")


__all__ = ["cli", "main"]
