"""`python -m classify.compare` / `make compare`: lr, rf and mlp side by side on one or more caches.

Reads each cache given with --features (default: the one features/LATEST
names) once, trains every --model on it (default: lr, mlp, rf), and writes
under --out-dir (default reports/):

    comparison.csv   one row per (cache, model): accuracy, macro F1, train and predict time, settings
    comparison.md    the same as a Markdown table
    comparison.png   bar chart of test accuracy, grouped by cache
    plus each run's own files, as `python -m classify` writes them

Re-running adds rows for new (cache, model) pairs and replaces the rows of
pairs it trains again (`--model lr` re-runs just that one); it never
re-extracts features.

    python -m classify.compare --features features/a.h5 --features features/b.h5
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import click

from classify import plots
from classify.options import CONTEXT, cache_path, echo_config, make_config, notes, summary_lines, training_options
from classify.models import MODELS
from featurecache.errors import UserError

COLUMNS = ["cache", "model", "accuracy", "macro_f1", "train_time_s", "predict_time_s", "n_fit", "n_test",
           "backbone", "pooling", "image_size", "weights", "cache_path", "hyperparameters", "run_record", "updated"]
TABLE = "comparison"


def read_rows(path: Path) -> list[dict]:
    """Rows of an existing comparison CSV ([] when there is none)."""
    if not path.exists():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path} is not a readable comparison table ({e}); delete it or pass another --out-dir") from None
    if rows and not {"cache", "model", "accuracy"} <= set(rows[0]):
        raise UserError(f"{path} is not a comparison table written by classify.compare; delete it or pass another --out-dir")
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """New rows replace old ones with the same (cache, model); the rest are kept. Sorted by cache, model."""
    merged = {(r["cache"], r["model"]): r for r in old}
    merged.update({(r["cache"], r["model"]): r for r in new})
    return [merged[k] for k in sorted(merged)]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict]) -> str:
    lines = ["| cache | model | test accuracy | macro F1 | train time (s) |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['cache']} | {r['model']} | {float(r['accuracy']):.4f} | {float(r['macro_f1']):.4f} "
                     f"| {float(r['train_time_s']):.2f} |")
    return "\n".join(lines) + "\n"


def row_for(cache, cfg, metrics: dict, run_json: str) -> dict:
    a = cache.attrs
    return {
        "cache": cache.path.stem, "model": cfg.model,
        "accuracy": f"{metrics['accuracy']:.4f}", "macro_f1": f"{metrics['macro_f1']:.4f}",
        "train_time_s": f"{metrics['train_time_s']:.2f}", "predict_time_s": f"{metrics['predict_time_s']:.3f}",
        "n_fit": metrics["n_fit"], "n_test": metrics["n_test"],
        "backbone": a.get("backbone"), "pooling": a.get("pooling"), "image_size": a.get("image_size"),
        "weights": a.get("weights"), "cache_path": str(cache.path),
        "hyperparameters": json.dumps(cfg.hyperparameters()), "run_record": run_json,
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


@click.command(context_settings=CONTEXT)
@click.option("--features", multiple=True, type=click.Path(path_type=str),
              help="Feature cache(s) to compare; repeat to put caches side by side. Default: features/LATEST.")
@click.option("--model", "models", multiple=True, type=click.Choice(sorted(MODELS)),
              help="Models to train (repeatable). Default: all of them.")
@training_options
def cli(features: tuple[str, ...], models: tuple[str, ...], **options) -> None:
    """Train several classifiers on the same cached features (each cache loaded once) and write a
    comparison table (CSV, Markdown) and bar chart; earlier rows for other caches and models are kept."""
    from classify.outputs import Staged, check_out_dir, run_paths, write_run
    from classify.train import train_and_evaluate
    from featurecache.cache import read_cache

    paths = [cache_path(f) for f in features] if features else [cache_path(None)]
    models = models or tuple(sorted(MODELS))
    out_dir = check_out_dir(options["out_dir"])
    table = {ext: out_dir / f"{TABLE}.{ext}" for ext in ("csv", "md", "png")}
    old = read_rows(table["csv"])  # a broken table fails now, before any training
    caches = [read_cache(p) for p in paths]  # all checked before any training; each read once
    echo_config(make_config(model=models[0], features=",".join(map(str, paths)), **options))
    new = []
    for cache in caches:
        for model in models:
            cfg = make_config(model=model, features=str(cache.path), **options)
            click.echo(f"compare: {model} on {cache.path} ...", err=True)
            result = train_and_evaluate(cache, cfg)
            for line in notes(cfg, result.trained.details):
                click.echo(line)
            record, _ = write_run(cache, cfg, result, run_paths(out_dir, cache.path, cfg))
            for line in summary_lines(model, cache.path.stem, result.metrics, {"run": record["files"]["run"]}):
                click.echo(line)
            new.append(row_for(cache, cfg, result.metrics, record["files"]["run"]))
    rows = merge_rows(old, new)
    try:
        with Staged() as staged:
            staged.aside(table["csv"]).write_text(to_csv(rows))
            staged.aside(table["md"]).write_text(to_markdown(rows))
            plots.comparison(rows, staged.aside(table["png"]))
    except OSError as e:
        raise UserError(f"could not write the comparison in {out_dir} ({e}); earlier tables are unchanged") from None
    click.echo(to_markdown(rows), nl=False)
    for ext, p in table.items():
        click.echo(f"  {ext}: {p}")


def main() -> None:
    cli(prog_name="python -m classify.compare")


if __name__ == "__main__":
    main()
