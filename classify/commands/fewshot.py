"""`featurecache fewshot` / `make fewshot`: test accuracy from 1, 5, 10, 20 training images per class.

Reads one cache (default: the one features/LATEST names). For each --shots value and each of
--seeds seeds it draws that many training images of every class from the cache's train split
(stratified, seeded, originals only: never a test row), fits each --model on them and scores the
whole test split. Writes under --out-dir (default reports/):

    <cache>-fewshot-<id>.csv    one row per (model, shots): seeds, mean, std, 95% interval of the mean
    <cache>-fewshot-<id>.json   the same, every draw's accuracy, and the training rows each draw took
    <cache>-fewshot-<id>.png    test accuracy against shots per class, one line per model, bands: the interval

<id> is a short digest of the settings and the cache's identity. The interval is the t interval
of the mean over seeds (draw-to-draw spread dominates at few shots); with one seed, the bootstrap
interval of that draw's test accuracy. A few-shot set has no rows to spare for validation: LR fits
its --C, kNN takes k = min(10, shots), and the MLP runs its --epochs, stopping on its training loss.

    featurecache fewshot --shots 1,5,10,20 --seeds 5 --model lr --model knn
"""

from __future__ import annotations

import click

from classify.options import CONTEXT, CValue, Finite, cache_path
from classify.training.config import ClassifyConfig
from classify.training.knn import KNNParams
from classify.training.lr import LRParams
from classify.workflows.fewshot import FEWSHOT_MODELS, fewshot
from featurecache.command import Command
from featurecache.errors import UserError
from featurecache.files import interruptible


class Shots(click.ParamType):
    """--shots: comma-separated positive numbers of training images per class, e.g. 1,5,10,20."""

    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            shots = sorted({int(v) for v in str(value).split(",")})
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of whole numbers such as 1,5,10,20", param, ctx)
        if not shots or shots[0] < 1:
            self.fail(f"{value!r}: every number of shots must be at least 1", param, ctx)
        return shots


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5). Default: the one features/LATEST names.")
@click.option("--shots", type=Shots(), default="1,5,10,20", show_default=True, help="Training images per class.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Draws per number of shots.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed; draws use --seed .. --seed + N - 1.")
@click.option("--model", "models", multiple=True, type=click.Choice(FEWSHOT_MODELS),
              help="Models to fit (repeatable). Default: lr and knn.")
@click.option("--C", "C", type=CValue(), default=LRParams.C, show_default=True, help="LR: inverse regularisation strength.")
@click.option("--temperature", type=Finite(min=0, min_open=True), default=KNNParams.temperature,
              show_default=True, help="kNN: votes weighted by exp(similarity / T).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default="reports", show_default=True)
@interruptible("fewshot")
def cli(features, shots, seeds, seed, models, C, temperature, out_dir) -> None:
    """Few-shot test accuracy: --shots images per class drawn from the train split, --seeds draws each,
    every --model scored on the whole test split; writes a CSV, a JSON and a PNG under --out-dir."""
    from classify.runs.outputs import cache_id, check_out_dir, csv_text, digest, write_json
    from classify.reporting.plots import fewshot as plot
    from featurecache.cache import read_cache
    from featurecache.files import Staged

    if C == "auto":
        raise UserError("--C auto needs validation rows, which a few-shot set does not have; pass a number such as 0.01")
    models = tuple(dict.fromkeys(models)) or ("lr", "knn")
    path = cache_path(features)
    out = check_out_dir(out_dir)
    cache = read_cache(path)
    cfg = ClassifyConfig(features=str(path), seed=seed, C=C, temperature=temperature)
    settings = {"models": models, "shots": shots, "seeds": seeds, "seed": seed, "C": C, "temperature": temperature}
    click.echo(f"fewshot: {', '.join(models)} on {path}, shots {shots}, {seeds} seed(s) each; " + str(settings), err=True)
    result = fewshot(cache, models, shots, seeds, cfg)
    base = out / f"{path.stem}-fewshot-{digest({'cache': cache_id(cache), **settings})}"
    files = {ext: base.with_suffix(f".{ext}") for ext in ("csv", "json", "png")}
    with Staged() as staged:
        staged.aside(files["csv"]).write_text(csv_text(result["rows"]))
        write_json(staged.aside(files["json"]), {"cache": str(path.absolute()), "cache_id": cache_id(cache),
                                                 "settings": settings, **result})
        plot(result["rows"], staged.aside(files["png"]), f"few-shot on {path.stem} ({seeds} seed(s); band: 95% interval)")
    for r in result["rows"]:
        click.echo(f"  {r['model']:>4} {r['shots']:>3} shot(s): test accuracy {r['mean']:.4f} ± {r['std']:.4f} "
                   f"(95% interval {r['low']:.3f}-{r['high']:.3f})")
    for ext, p in files.items():
        click.echo(f"  {ext}: {p}")


def main() -> None:
    cli(prog_name="featurecache fewshot")


if __name__ == "__main__":
    main()
