"""`featurecache learning-curve --model M` / `make learning-curve MODEL=M`: accuracy vs training-set size.

Reads one cache (default: the one features/LATEST names) once; for each
training-set size (log-spaced from --min-size to every training row) and each
of --seeds seeds, trains M on a stratified subset of that many rows (its
validation split carved from them) and scores the test rows. Writes under
--out-dir (default reports/):

    <cache>-<model>-<id>-learning-curve.csv   train_size, seed, accuracy, macro_f1, train_time_s, n_fit, n_val
    <cache>-<model>-<id>-learning-curve.png   mean test accuracy (and min..max over seeds) against size, log x

<id> is a short digest of the settings, the sizes, the seeds and the cache's identity, so a
curve with other settings never overwrites an earlier one.

    featurecache learning-curve --model lr --seeds 3 --points 6
"""

from __future__ import annotations

import click
import numpy as np

from classify.options import CONTEXT, cache_path, echo_config, echo_written, make_config, training_options
from classify.reporting import plots
from classify.training.config import has_views
from classify.training.specs import SPECS
from classify.workflows.learning_curve import check_min_size, learning_curve, sizes_for
from featurecache.command import Command
from featurecache.errors import UserError
from featurecache.files import interruptible


@click.command(cls=Command, context_settings=CONTEXT)
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
    echo_written({"csv": csv_path, "png": png_path}, out_dir)


def main() -> None:
    cli(prog_name="featurecache learning-curve")


if __name__ == "__main__":
    main()
