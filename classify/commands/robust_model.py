"""`featurecache robust-model` / `make robust-model`: a robust model against a baseline, both attacked
(classify.workflows.robust_model has the recipe and its outputs)."""

from __future__ import annotations

import json
import time

import click

from classify.options import CONTEXT, Finite, Widths, cache_path, echo_written
from classify.workflows.robust_model import RobustConfig, check, markdown, parse_eps, run_workflow, write_outputs
from featurecache.command import Command
from featurecache.files import interruptible

D = RobustConfig()


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache with augmented views (extract --augment color,rotate,flip --views 4). "
                   "Default: the one features/LATEST names.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default=D.out_dir, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=D.seeds, show_default=True, help="Seeds --seed .. --seed + N - 1.")
@click.option("--seed", type=int, default=D.seed, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=D.limit, show_default=True,
              help="Test images attacked: the first N of the test split.")
@click.option("--eps", "eps_text", default="0,1,2,4,8", show_default=True,
              help="L-infinity budgets of the evaluation, pixel values out of 255, comma-separated.")
@click.option("--pgd-steps", type=click.IntRange(min=1, max=1000), default=D.pgd_steps, show_default=True,
              help="Steps of the evaluation's PGD (step 2.5 * eps / steps, random start).")
@click.option("--initial", type=click.IntRange(min=1), default=D.initial, show_default=True,
              help="Robust model: random training images before active learning.")
@click.option("--batch", type=click.IntRange(min=1), default=D.batch, show_default=True,
              help="Robust model: images per margin active-learning round.")
@click.option("--budget", type=click.IntRange(min=2), default=D.budget, show_default=True,
              help="Training images of each model.")
@click.option("--C", "C", type=Finite(min=0, min_open=True), default=D.C, show_default=True,
              help="The baseline's LR (and the active-learning rounds' LR): inverse regularisation strength.")
@click.option("--robust-model", type=click.Choice(("lr", "mlp")), default=D.robust_model, show_default=True,
              help="The robust model's head.")
@click.option("--hidden", type=Widths(), default="256", show_default=True, help="The robust MLP's hidden layer widths.")
@click.option("--adversarial", type=click.Choice(("fgsm", "pgd")), default=D.adversarial, show_default=True)
@click.option("--adv-eps", type=Finite(0, 255, min_open=True), default=D.adv_eps, show_default=True)
@click.option("--adv-steps", type=click.IntRange(min=1, max=1000), default=D.adv_steps, show_default=True)
@click.option("--adv-ratio", type=Finite(0, 1, min_open=True), default=D.adv_ratio, show_default=True)
@click.option("--adv-every", type=click.IntRange(min=1), default=D.adv_every, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=D.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True)
@interruptible("robust model")
def cli(eps_text, **options) -> None:
    """Train a robust model (active learning, augmented views, PGD adversarial training) and a baseline
    (random images, LR) on a cache, attack both on the same test images with FGSM and PGD, each against
    itself, over several seeds; write a table and a figure of accuracy against eps."""
    from classify.runs.outputs import cache_id, check_out_dir, digest
    from featurecache.cache import read_cache

    rc = RobustConfig(eps=parse_eps(eps_text), **options)
    path = cache_path(rc.features)
    rc.features = str(path)
    out_dir = check_out_dir(rc.out_dir)
    cache = read_cache(path)
    check(rc, cache)
    click.echo("robust model: " + json.dumps(rc.to_dict()), err=True)
    start = time.perf_counter()
    doc = run_workflow(cache, rc)
    doc["settings"]["seconds"] = round(time.perf_counter() - start, 1)
    ident = digest({"cache": cache_id(cache), **{k: v for k, v in rc.to_dict().items() if k not in ("features", "out_dir")}})
    paths = write_outputs(doc, out_dir, f"{path.stem}-{ident}")
    click.echo(markdown(doc["summary"], doc["seeds"], rc.eps))
    echo_written(paths, out_dir)
    click.echo(f"robust model: {rc.seeds} seed(s) in {doc['settings']['seconds']:.0f} s", err=True)


def main() -> None:
    cli(prog_name="featurecache robust-model")


if __name__ == "__main__":
    main()
