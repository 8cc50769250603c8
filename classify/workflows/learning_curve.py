"""`python -m classify.workflows.learning_curve --model M` / `make learning-curve MODEL=M`: accuracy vs training-set size.

Reads one cache (default: the one features/LATEST names) once; for each
training-set size (log-spaced from --min-size to every training row) and each
of --seeds seeds, trains M on a stratified subset of that many rows (its
validation split carved from them) and scores the test rows. Writes under
--out-dir (default reports/):

    <cache>-<model>-<id>-learning-curve.csv   train_size, seed, accuracy, macro_f1, train_time_s, n_fit, n_val
    <cache>-<model>-<id>-learning-curve.png   mean test accuracy (and min..max over seeds) against size, log x

<id> is a short digest of the settings, the sizes, the seeds and the cache's identity, so a
curve with other settings never overwrites an earlier one.

    python -m classify.workflows.learning_curve --model lr --seeds 3 --points 6
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from classify.reporting import plots
from classify.training.config import has_views
from classify.training.data import smallest_train_size
from classify.training.specs import SPECS
from classify.options import CONTEXT, cache_path, echo_config, make_config, training_options
from featurecache.errors import UserError
from featurecache.files import interruptible


def sizes_for(n_train: int, min_size: int, points: int, n_classes: int = 0) -> list[int]:
    """Log-spaced training-set sizes from min_size to n_train, both included, without repeats; sizes
    that would leave fewer rows out than there are classes (no stratified subset exists) are dropped."""
    low = min(min_size, n_train)
    sizes = {int(round(s)) for s in np.geomspace(low, n_train, points)} | {n_train}
    return sorted(s for s in sizes if s == n_train or n_train - s >= n_classes)


def check_min_size(labels: np.ndarray, min_size: int, val_fraction: float) -> None:
    """Refuse a --min-size that gives no curve (the cache has no more rows than it) or a first
    point that cannot be split into training and validation rows of every class."""
    n = len(labels)
    if min_size >= n:
        raise UserError(f"--min-size {min_size} leaves no curve: the cache has {n:,} training rows; "
                        f"pass a --min-size below {n:,}")
    need = smallest_train_size(labels, val_fraction)
    if need >= n:
        raise UserError(f"no subset of the {n:,} training rows can hold out --val-fraction {val_fraction:g} with "
                        f"every one of {len(np.unique(labels))} classes on both sides; use a larger cache or "
                        "a larger --val-fraction")
    if min_size < need:
        raise UserError(f"--min-size {min_size} is too small for {len(np.unique(labels))} classes with --val-fraction "
                        f"{val_fraction:g} held out; pass --min-size {need} or more")


def learning_curve(cache, cfg, sizes: list[int], seeds: int) -> list[dict]:
    """One dict per (size, seed): train_size, seed, accuracy, macro_f1, train_time_s, n_fit, n_val."""
    from classify.training.train import train_and_evaluate

    points = []
    for size in sizes:
        for k in range(seeds):
            run = dataclasses.replace(cfg, train_size=size, seed=cfg.seed + k)
            m = train_and_evaluate(cache, run, curves=False).metrics
            points.append({"train_size": size, "seed": run.seed, "accuracy": round(m["accuracy"], 4),
                           "macro_f1": round(m["macro_f1"], 4), "train_time_s": m["train_time_s"],
                           "n_fit": m["n_fit"], "n_val": m["n_val"]})
    return points


@click.command(context_settings=CONTEXT)
@click.option("--model", type=click.Choice(sorted(SPECS)), default="lr", show_default=True)
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5). Default: the one features/LATEST names.")
@click.option("--min-size", type=click.IntRange(min=2), default=100, show_default=True, help="Smallest training-set size.")
@click.option("--points", type=click.IntRange(min=2), default=6, show_default=True, help="Number of sizes, log-spaced.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds (subsets) per size.")
@training_options(skip=("--train-size",))  # each point sets its own
@interruptible("learning_curve")
def cli(model: str, features: str | None, min_size: int, points: int, seeds: int, **options) -> None:
    """Test accuracy against training-set size, a few seeds per size; writes a PNG and a CSV.
    Each size is a stratified subset of the cache's training rows, from --min-size to all of them."""
    from classify.runs.outputs import Staged, check_out_dir, csv_text, digest, run_id
    from classify.reporting.report import write_index
    from featurecache.cache import read_cache

    path = cache_path(features)
    out_dir = check_out_dir(options["out_dir"])
    cache = read_cache(path)
    cfg = make_config(model=model, features=str(path), **options)
    check_min_size(cache.train.labels, min_size, cfg.val_fraction)
    echo_config(cfg, has_views(cache.attrs))
    sizes = sizes_for(len(cache.train.labels), min_size, points, len(np.unique(cache.train.labels)))
    click.echo(f"learning curve: {model} on {path}, sizes {sizes}, {seeds} seed(s) each", err=True)
    rows = learning_curve(cache, cfg, sizes, seeds)
    ident = digest({"run": run_id(cache, cfg), "sizes": sizes, "seeds": seeds})
    base = out_dir / f"{path.stem}-{model}-{ident}-learning-curve"
    csv_path, png_path = base.with_suffix(".csv"), base.with_suffix(".png")
    try:
        with Staged() as staged:
            staged.aside(csv_path).write_text(csv_text(rows))
            plots.learning_curve(rows, staged.aside(png_path), f"{model} on {path.stem}")
    except OSError as e:
        raise UserError(f"could not write the learning curve in {out_dir} ({e}); earlier files are unchanged") from None
    for size in sizes:
        acc = [r["accuracy"] for r in rows if r["train_size"] == size]
        click.echo(f"  {size:>7,} rows: test accuracy {np.mean(acc):.4f} (min {min(acc):.4f}, max {max(acc):.4f})")
    click.echo(f"  csv: {csv_path}\n  png: {png_path}\n  index: {write_index(out_dir)}")


def main() -> None:
    cli(prog_name="python -m classify.workflows.learning_curve")


if __name__ == "__main__":
    main()
