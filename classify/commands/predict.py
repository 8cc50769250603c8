"""`featurecache predict` / `make predict`: new images -> predicted class and probability;
`featurecache export` / `make export`: a saved run -> one model for deployment (docs/deployment.md).

Reads a saved classify run (its run record JSON and the model file beside it)
and image files or folders; writes nothing. Features are extracted with the
settings stored in the run's feature cache (backbone, pooling, image size,
weights, seed, precision), so a prediction sees exactly what training saw.

    featurecache predict --run reports/cats-vs-dogs-subset-vgg16-gap-32px-lr-run.json photos/ --json
    featurecache predict --run best --reports reports --features features/cats.h5 photos/
    featurecache export --run best --out exports/cats
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from classify.pixel.predict import collect_images, predict_images
from featurecache.command import Command
from featurecache.errors import UserError
from featurecache.runtime import RUNTIMES

BEST = "best"  # --run best: the best run of a cache by validation accuracy


CONTEXT = {"help_option_names": ["-h", "--help"]}


def run_options(command):
    """--run RUN.json|best, and --reports and --features for `best`."""
    for option in reversed((
        click.option("--run", "run_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Run record JSON written by classify (reports/...-run.json), or `best`: the run of "
                          "--features with the best validation accuracy in --reports."),
        click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("reports"), show_default=True, help="With --run best: the reports folder to look in."),
        click.option("--features", type=click.Path(dir_okay=False, path_type=str), default=None,
                     help="With --run best: the cache whose best run to use. Default: the one features/LATEST names."),
    )):
        command = option(command)
    return command


@click.command(cls=Command, context_settings=CONTEXT, flags={"folder": "--export"})
@run_options
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="What runs the backbone: auto is OpenVINO on a CPU-only machine where it is installed, "
                   "TensorFlow otherwise (a bfloat16 cache runs on the runtime that made it).")
@click.option("--allow-weights-mismatch", is_flag=True,
              help="Predict even if the weights or model file differ from those the run's cache was made with.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the run as one model for deployment into this folder (see docs/deployment.md).")
@click.option("--force", is_flag=True,
              help="With --export: replace an earlier export in that folder (a folder holding other files is refused).")
def cli(run_path: Path, reports_dir: Path, features: str | None, images: tuple[Path, ...], as_json: bool,
        batch_size: int, runtime: str, allow_weights_mismatch: bool, export_dir: Path | None, force: bool) -> None:
    """Predict the class of each image with a saved classify run.

    IMAGES are image files or folders (searched recursively). Only run files
    written by classify are loaded; see the README on which files are safe.
    """
    from classify.runs.saved import load_run

    if export_dir is None and not images:
        raise UserError("no IMAGES given; pass image files or folders, or --export DIR to export the run")
    run_path = resolve_run(run_path, reports_dir, features)
    run = load_run(run_path)
    if export_dir is not None:
        from classify.pixel.export import export_run

        for name, path in export_run(run, export_dir, force, allow_weights_mismatch).items():
            click.echo(f"  {name}: {path}")
        if not images:
            return
    files, not_images = collect_images(images)
    results, skipped = predict_images(run, files, batch_size, allow_weights_mismatch, runtime)
    skipped = not_images + skipped
    if as_json:
        click.echo(json.dumps({"run": str(run_path), "predictions": results, "skipped": skipped}, indent=1,
                              allow_nan=False))
    else:
        show(results, skipped)
    if not results:
        reasons = sorted({s["reason"].split(":")[0] for s in skipped})
        raise UserError(f"none of the {len(skipped)} file(s) given could be predicted ({', '.join(reasons)}); "
                        "pass image files or folders of them")


def show(results: list[dict], skipped: list[dict]) -> None:
    """One line per prediction on stdout; each skipped file and its reason on stderr."""
    width = max((len(r["image"]) for r in results), default=5)
    for r in results:
        click.echo(f"{r['image']:<{width}}  {r['class']:<12} {r['probability']:.3f}")
    if skipped:
        click.echo(f"skipped {len(skipped)} file(s):", err=True)
        for s in skipped:
            click.echo(f"  {s['file']}: {s['reason']}", err=True)


@click.command("export", cls=Command, context_settings=CONTEXT)
@run_options
@click.option("--out", "folder", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The export folder: new, empty, or an earlier export of this run (with --force).")
@click.option("--force", is_flag=True, help="Replace an earlier export in --out (a folder holding other files is refused).")
@click.option("--allow-weights-mismatch", is_flag=True,
              help="Export even if the weights or model file differ from those the run's cache was made with.")
def export_cli(run_path: Path, reports_dir: Path, features: str | None, folder: Path, force: bool,
               allow_weights_mismatch: bool) -> None:
    """Write a saved classify run as one Keras model for deployment: backbone, pooling and classifier
    in one file (model.keras, a TensorFlow saved_model/ and labels.json; see docs/deployment.md).
    The same as `predict --run RUN --export DIR`."""
    from classify.pixel.export import export_run
    from classify.runs.saved import load_run

    run = load_run(resolve_run(run_path, reports_dir, features))
    for name, path in export_run(run, folder, force, allow_weights_mismatch).items():
        click.echo(f"  {name}: {path}")


def resolve_run(run_path: Path, reports_dir: Path, features: str | None) -> Path:
    """--run as given, or for `best` the best run of the cache (said on stderr)."""
    return best_run(reports_dir, features) if str(run_path) == BEST else run_path


def best_run(reports_dir: Path, features: str | None) -> Path:
    """--run best: the run record of the cache's best validation accuracy, said on stderr."""
    from classify.options import cache_path
    from classify.reporting.report import best_run_of

    cache = cache_path(features)
    if not Path(cache).is_file():
        raise UserError(f"no feature cache at {cache}: pass --features CACHE.h5 with --run best")
    path = best_run_of(reports_dir, cache)
    click.echo(f"run: {path} (best validation accuracy of the runs of {cache} in {reports_dir})", err=True)
    return path


def main() -> None:
    cli(prog_name="featurecache predict")


if __name__ == "__main__":
    main()
