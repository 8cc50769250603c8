"""`python -m classify` / `make classify MODEL=lr|rf|mlp`: a feature cache -> a trained classifier and its reports.

Reads one cache written by `extract` (default: the one features/LATEST names)
and writes, under reports/ (names from the cache and model, or
--plot-name / --report-name):

    <cache>-<model>-<run>-curves.png       loss and accuracy, training vs validation, over epochs / iterations / trees
    <cache>-<model>-<run>-confusion.png    confusion matrix on the test rows
    <cache>-<model>-<run>-gallery.png      most confident mistakes, when the cache records its images' sources
    <cache>-<model>-<run>-report.txt/.json scikit-learn classification report with class names
    <cache>-<model>-<run>-run.json         run record: every setting, the cache and its attributes, metrics, timings
    <cache>-<model>-<run>-model.{h5,keras}  the fitted model, in a format that loads without running code
    <cache>-<model>-latest.json            names the latest run of this model on this cache

<run> is a short digest of the run's settings and the cache's identity: other settings
never overwrite an earlier run's files (classify.outputs).

    python -m classify --model lr --C auto

`lr` and `rf` never import TensorFlow; only `--model mlp` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from classify.config import ClassifyConfig
from classify.models import MODELS
from featurecache.errors import UserError
from featurecache.files import interruptible

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CValue(click.ParamType):
    """--C: a positive number, or `auto`."""

    name = "FLOAT|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            c = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not c > 0 or c == float("inf"):
            self.fail(f"{value!r} must be a positive number (or 'auto')", param, ctx)
        return c


class Widths(click.ParamType):
    """--hidden: comma-separated positive layer widths, e.g. 512,256."""

    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            widths = tuple(int(w) for w in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of layer widths such as 512,256", param, ctx)
        if not widths or min(widths) < 1:
            self.fail(f"{value!r}: every layer width must be a positive integer", param, ctx)
        return widths


D = ClassifyConfig()
positive = click.FloatRange(min=0, min_open=True)
# (option, click type, default, help): shared by classify, compare and learning_curve
TRAINING_OPTIONS = [
    ("--out-dir", click.Path(file_okay=False, path_type=str), D.out_dir, "Folder for plots, reports and models."),
    ("--seed", int, D.seed, "Seed for the validation split, --train-size subset and model initialisation."),
    ("--val-fraction", click.FloatRange(0, 1, min_open=True, max_open=True), D.val_fraction,
     "Share of the training rows held out (stratified) for choosing C, early stopping and curves."),
    ("--train-size", click.IntRange(min=1), None, "Use a stratified, seeded subset of N training rows."),
    ("--C", CValue(), D.C, "LR: inverse regularisation strength, or 'auto' (sweep 1e-4..1e1 on the validation split)."),
    ("--max-iter", click.IntRange(min=1), D.max_iter, "LR: lbfgs iterations at most."),
    ("--n-estimators", click.IntRange(min=1), D.n_estimators, "RF: number of trees."),
    ("--max-depth", click.IntRange(min=1), D.max_depth, "RF: tree depth limit (default: none)."),
    ("--hidden", Widths(), ",".join(map(str, D.hidden)), "MLP: hidden layer widths."),
    ("--dropout", click.FloatRange(0, 1, max_open=True), D.dropout, "MLP: dropout after each hidden layer."),
    ("--epochs", click.IntRange(min=1), D.epochs, "MLP: epochs at most (early stopping may end sooner)."),
    ("--batch-size", click.IntRange(min=1), D.batch_size, "MLP: rows per gradient step."),
    ("--learning-rate", positive, None, "MLP: initial learning rate (default: 0.001 with adam, 0.01 with sgd)."),
    ("--decay-steps", click.IntRange(min=1), D.decay_steps, "MLP: steps per decay period (ExponentialDecay)."),
    ("--decay-rate", click.FloatRange(0, 1, min_open=True), D.decay_rate, "MLP: learning-rate factor per decay period."),
    ("--optimizer", click.Choice(("adam", "sgd")), D.optimizer, "MLP: Adam, or SGD with momentum."),
    ("--momentum", click.FloatRange(0, 1, max_open=True), D.momentum, "MLP: SGD momentum."),
    ("--patience", click.IntRange(min=1), D.patience, "MLP: epochs without a better validation loss before stopping."),
]


def training_options(command):
    """Add TRAINING_OPTIONS to a click command (in the order listed)."""
    for flag, kind, default, text in reversed(TRAINING_OPTIONS):
        dest = flag.lstrip("-").replace("-", "_")
        command = click.option(flag, dest, type=kind, default=default, show_default=default is not None,
                               help=text)(command)
    return command


def make_config(**options) -> ClassifyConfig:
    """ClassifyConfig from CLI options (their defaults are the dataclass's)."""
    fields = ClassifyConfig.__dataclass_fields__
    return ClassifyConfig(**{k: v for k, v in options.items() if k in fields})


def cache_path(features: str | None) -> Path:
    """--features, or what features/LATEST points to."""
    from featurecache.cache import latest

    return Path(features) if features else latest("features")


def echo_config(cfg: ClassifyConfig) -> None:
    click.echo("config: " + json.dumps(cfg.to_dict()), err=True)


def summary_lines(model: str, cache_name: str, metrics: dict, files: dict) -> list[str]:
    width = max(len(k) for k in files) + 1
    lines = [f"  {k + ':':<{width}} {v}" for k, v in files.items()]
    lines.append(
        f"{model} on {cache_name}: test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"train time {metrics['train_time_s']:.2f} s, predict time {metrics['predict_time_s']:.3f} s"
    )
    return lines


def notes(cfg: ClassifyConfig, details: dict) -> list[str]:
    out = []
    if "C_sweep" in details:
        sweep = ", ".join(f"{s['C']:g}: {s['val_accuracy']:.3f}" for s in details["C_sweep"])
        out.append(f"C sweep (validation accuracy): {sweep} -> C = {details['C']:g}")
    if details.get("converged") is False:
        out.append(f"note: lbfgs stopped at --max-iter {cfg.max_iter} before converging; raise --max-iter for a tighter fit")
    if "epochs_run" in details:
        out.append(f"MLP ran {details['epochs_run']} epoch(s); best validation loss at epoch {details['best_epoch']}")
    return out


@click.command(context_settings=CONTEXT)
@click.option("--model", type=click.Choice(sorted(MODELS)), default="lr", show_default=True,
              help="Classifier: lr (logistic regression), rf (random forest), mlp (Keras).")
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5) written by extract. Default: the one features/LATEST names.")
@click.option("--plot-name", default=None, help="File name of the curves PNG (confusion/gallery PNGs take its stem).")
@click.option("--report-name", default=None,
              help="Base name of the report: NAME.txt, NAME.json, NAME-run.json, NAME-model.<ext>.")
@training_options
@interruptible("classify")
def cli(**options) -> None:
    """Train one classifier on a feature cache; write curves, reports, a confusion matrix, a gallery,
    a run record and the model under --out-dir. Test rows are used only for the final report.

    Saved models load without running code (LR and RF: HDF5 arrays, walked in numpy for RF;
    MLP: .keras with safe_mode); `classify.saved.load_run` refuses files this tool did not write."""
    from classify.outputs import check_name, check_out_dir, run_paths, write_run
    from classify.train import train_and_evaluate
    from featurecache.cache import read_cache

    cfg = make_config(**options)
    check_name("--plot-name", cfg.plot_name)
    check_name("--report-name", cfg.report_name)
    path = cache_path(cfg.features)
    cfg.features = str(path)
    out_dir = check_out_dir(cfg.out_dir)
    cache = read_cache(path)
    echo_config(cfg)
    click.echo(f"classify: {cfg.model} on {path} (train {len(cache.train.labels):,}, test {len(cache.test.labels):,}, "
               f"{cache.train.features.shape[1]} features, {len(cache.class_names)} classes)", err=True)
    result = train_and_evaluate(cache, cfg)
    for line in notes(cfg, result.trained.details):
        click.echo(line)
    paths = run_paths(out_dir, cache, cfg)
    record, gallery_note = write_run(cache, cfg, result, paths)
    if gallery_note:
        click.echo(f"no gallery: {gallery_note}")
    click.echo(f"{cfg.model}: fit on {result.metrics['n_fit']:,} rows, validated on {result.metrics['n_val']:,}, "
               f"tested on {result.metrics['n_test']:,}; wrote:")
    for line in summary_lines(cfg.model, path.stem, result.metrics, {k: record["files"][k] for k in record["files"]}):
        click.echo(line)


def main() -> None:
    cli(prog_name="python -m classify")


__all__ = ["cli", "main", "UserError", "training_options", "make_config"]
