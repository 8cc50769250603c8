"""`python -m classify.workflows.fewshot` / `make fewshot`: test accuracy from 1, 5, 10, 20 training images per class.

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

    python -m classify.workflows.fewshot --shots 1,5,10,20 --seeds 5 --model lr --model knn
"""

from __future__ import annotations

import dataclasses
import time

import click
import numpy as np

from classify.training.config import ClassifyConfig
from classify.training.evaluation import bootstrap_interval
from classify.training.knn import K_GRID, KNNParams
from classify.training.lr import LRParams
from classify.options import CONTEXT, CValue, Finite, cache_path
from featurecache.errors import UserError
from featurecache.files import interruptible

FEWSHOT_MODELS = ("lr", "knn", "mlp")


def draw_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` row indices of every class present in `labels` (the train split's), seeded; sorted.
    The same (labels, shots, seed) always gives the same rows."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < shots:
        raise UserError(f"--shots {shots}: class {int(classes[counts.argmin()])} has only {int(counts.min())} "
                        f"training rows; pass --shots {int(counts.min())} or fewer")
    rng = np.random.default_rng([seed, shots])
    picked = [rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def fit_draw(model: str, X: np.ndarray, y: np.ndarray, n_classes: int, cfg: ClassifyConfig):
    """Fit one few-shot set: no validation rows exist, so the fit rows stand in for them."""
    from classify.training.specs import SPECS

    shots = int(np.bincount(y).max())
    run = dataclasses.replace(cfg, model=model, k=min(K_GRID[0], shots) if model == "knn" else cfg.k)
    return SPECS[model].fit(X, y, X, y, n_classes, run, False)


def summarise(acc: list[float], single_ci: tuple[float, float]) -> dict:
    """mean, std (ddof 1) and the 95% interval of the mean over seeds (bootstrap of one draw if one seed)."""
    from scipy import stats

    a = np.asarray(acc)
    if len(a) == 1:
        return {"mean": float(a[0]), "std": 0.0, "low": single_ci[0], "high": single_ci[1], "interval": "bootstrap"}
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "low": float(max(0.0, a.mean() - half)),
            "high": float(min(1.0, a.mean() + half)), "interval": "t over seeds"}


def fewshot(cache, models: tuple[str, ...], shots: list[int], seeds: int, cfg: ClassifyConfig) -> dict:
    """Every (model, shots, seed) draw fitted and scored on the whole test split; plain data."""
    X, y = cache.train.features, cache.train.labels
    X_test, y_test = cache.test.features, cache.test.labels     # scored only
    n_classes = len(cache.class_names)
    draws = {s: {cfg.seed + i: draw_shots(y, s, cfg.seed + i) for i in range(seeds)} for s in shots}
    rows, runs = [], []
    for model in models:
        for s in shots:
            acc, ci = [], (float("nan"), float("nan"))
            for seed, idx in draws[s].items():
                start = time.perf_counter()
                trained = fit_draw(model, X[idx], y[idx], n_classes, dataclasses.replace(cfg, seed=seed))
                correct = trained.predict_proba(X_test).argmax(axis=1) == y_test
                acc.append(float(correct.mean()))
                ci = bootstrap_interval(correct)
                runs.append({"model": model, "shots": s, "seed": seed, "accuracy": acc[-1], "accuracy_ci": list(ci),
                             "seconds": round(time.perf_counter() - start, 3)})
            rows.append({"model": model, "shots": s, "seeds": seeds, **summarise(acc, ci)})
    return {"rows": rows, "runs": runs, "draws": {str(s): {str(k): v.tolist() for k, v in d.items()}
                                                  for s, d in draws.items()}}


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


@click.command(context_settings=CONTEXT)
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
    cli(prog_name="python -m classify.workflows.fewshot")


if __name__ == "__main__":
    main()
