"""Options, parameter types and config helpers shared by the classify commands.

`classify.cli` and the modules of `classify.commands` build their command lines from these; none of
them imports from another command module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from classify.runs.tracking import ENV, INSTALL, TRACKERS
from classify.training.config import ClassifyConfig

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Finite(click.FloatRange):
    """A FloatRange that refuses `inf` and `nan` (click's range check lets nan through: every
    comparison with nan is false)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class CValue(click.ParamType):
    """--C: a positive finite number, or `auto`."""

    name = "FLOAT|auto"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        try:
            c = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not (math.isfinite(c) and c > 0):
            self.fail(f"{value!r} must be a positive finite number (or 'auto')", param, ctx)
        return c


class KValue(click.ParamType):
    """--k: a positive whole number of neighbours, or `auto`."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            k = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a whole number nor 'auto'", param, ctx)
        if k < 1:
            self.fail(f"{value!r} must be a positive number of neighbours (or 'auto')", param, ctx)
        return k


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


class Bytes(click.ParamType):
    """--max-memory: a number of bytes, or a size such as 500MB, 2GB, 1.5GiB (decimal and binary units)."""

    name = "SIZE"
    UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number):]
        try:
            size = float(number) * self.UNITS[unit]
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a size; pass bytes or a size such as 500MB or 2GB", param, ctx)
        if not (math.isfinite(size) and size >= 1):
            self.fail(f"{value!r} must be a positive finite size such as 500MB or 2GB", param, ctx)
        return int(size)


D = ClassifyConfig()
# (option, click type, default, help): shared by classify, compare and learning_curve
TRAINING_OPTIONS = [
    ("--out-dir", click.Path(file_okay=False, path_type=str), D.out_dir, "Folder for plots, reports and models."),
    ("--seed", int, D.seed, "Seed for the validation split, --train-size subset and model initialisation."),
    ("--val-fraction", Finite(0, 1, min_open=True, max_open=True), D.val_fraction,
     "Share of the training rows held out (stratified) for choosing C, early stopping and curves."),
    ("--train-size", click.IntRange(min=1), None, "Use a stratified, seeded subset of N training rows."),
    ("--C", CValue(), D.C, "LR: inverse regularisation strength, or 'auto' (choose from 1e-4..1e1 on the validation split)."),
    ("--max-iter", click.IntRange(min=1), D.max_iter, "LR: solver iterations at most (for each C tried); "
     "passes over the data when it streams (SGD, stopped early after --patience passes without progress)."),
    ("--n-estimators", click.IntRange(min=1), D.n_estimators, "RF: number of trees."),
    ("--max-depth", click.IntRange(min=1), D.max_depth, "RF: tree depth limit (default: none)."),
    ("--max-samples", Finite(0, 1, min_open=True), D.max_samples, "RF: share of the training rows each tree's "
     "bootstrap sample draws (default: 0.1, at least 2,500 rows, all of them when fewer)."),
    ("--hidden", Widths(), ",".join(map(str, D.hidden)), "MLP: hidden layer widths."),
    ("--dropout", Finite(0, 1, max_open=True), D.dropout, "MLP: dropout after each hidden layer."),
    ("--epochs", click.IntRange(min=1), D.epochs, "MLP: epochs at most (early stopping may end sooner)."),
    ("--batch-size", click.IntRange(min=1), D.batch_size, "MLP: rows per gradient step."),
    ("--learning-rate", Finite(min=0, min_open=True), None,
     "MLP: initial learning rate (default: 0.001 with adam, 0.01 with sgd)."),
    ("--decay-steps", click.IntRange(min=1), D.decay_steps, "MLP: steps per decay period (exponential decay)."),
    ("--decay-rate", Finite(0, 1, min_open=True), D.decay_rate, "MLP: learning-rate factor per decay period."),
    ("--optimizer", click.Choice(("adam", "sgd")), D.optimizer, "MLP: Adam, or SGD with momentum."),
    ("--momentum", Finite(0, 1, max_open=True), D.momentum, "MLP: SGD momentum."),
    ("--patience", click.IntRange(min=1), D.patience, "MLP: epochs without a better validation loss before stopping."),
    ("--tensorboard", click.Path(file_okay=False, path_type=str), None,
     "MLP: also write TensorBoard logs (Keras's callback), one folder per fit under DIR."),
    ("--k", KValue(), D.k, "kNN: neighbours that vote, or 'auto' (choose from 10, 20, 50, 100, 200, capped at "
     "the smallest class's training rows, on the validation split)."),
    ("--temperature", Finite(min=0, min_open=True), D.temperature,
     "kNN: votes are weighted by exp(cosine similarity / T)."),
    ("--views", click.Choice(("all", "none")), D.views,
     "Augmented caches: fit each training image's views beside its original (all), or the originals only (none)."),
    ("--max-memory", Bytes(), None, "Feature data the classifier may hold, as bytes or 500MB, 2GB (default: half "
     "the available RAM). A larger training matrix is streamed from the cache: LR by SGD, the MLP through tf.data; "
     "RF trains on a stratified subsample that fits."),
    ("--calibrate", bool, D.calibrate, "LR, MLP, kNN: fit a temperature on the validation split and report (and "
     "let predict give) calibrated probabilities; the run record keeps the calibration error before and after."),
    ("--tta", bool, D.tta, "Average the test probabilities over each test image and its views (needs a cache "
     "extracted with --test-views)."),
]


ADVERSARIAL_OPTIONS = [   # classify only: adversarial training of the lr or mlp head (classify.pixel.adversarial)
    ("--adversarial", click.Choice(("fgsm", "pgd")), None, "Train the lr or mlp head on adversarial examples too, "
     "made in pixel space against the end-to-end model (frozen backbone + the current head)."),
    ("--adv-eps", Finite(0, 255, min_open=True), D.adv_eps, "Adversarial: L-infinity budget in pixel values out of 255."),
    ("--adv-steps", click.IntRange(min=1, max=1000), D.adv_steps, "Adversarial: PGD steps (step 2.5 * eps / steps)."),
    ("--adv-ratio", Finite(0, 1), D.adv_ratio, "Adversarial: share of each batch replaced by its adversarial twin "
     "(0: plain training)."),
    ("--adv-every", click.IntRange(min=1), D.adv_every, "Adversarial: epochs between regenerations of the "
     "adversarial examples against the current head."),
]


def adversarial_options(cmd):
    """Add ADVERSARIAL_OPTIONS to a click command."""
    for flag, kind, default, text in reversed(ADVERSARIAL_OPTIONS):
        cmd = click.option(flag, flag.lstrip("-").replace("-", "_"), type=kind, default=default,
                           show_default=default is not None, help=text)(cmd)
    return cmd


def training_options(command=None, *, skip: tuple[str, ...] = ()):
    """Add TRAINING_OPTIONS (less the flags in `skip`) to a click command, in the order listed.

    Use as `@training_options` or `@training_options(skip=("--train-size",))`."""
    def add(cmd):
        for flag, kind, default, text in reversed(TRAINING_OPTIONS):
            if flag in skip:
                continue
            dest = flag.lstrip("-").replace("-", "_")
            if kind is bool:  # a flag
                cmd = click.option(flag, dest, is_flag=True, default=default, help=text)(cmd)
                continue
            cmd = click.option(flag, dest, type=kind, default=default, show_default=default is not None,
                               help=text)(cmd)
        return cmd

    return add if command is None else add(command)


def make_config(**options) -> ClassifyConfig:
    """ClassifyConfig from CLI options (their defaults are the dataclasses'): the shared settings, and
    each model's own (--C, --epochs, --k, ...) mapped onto its spec's settings of the same name."""
    names = ClassifyConfig.setting_names()
    return ClassifyConfig(**{k: v for k, v in options.items() if k in names})


def cache_path(features: str | None) -> Path:
    """--features, or what features/LATEST points to; says first which cache it is and why."""
    from featurecache.cache import default_cache

    if features:
        click.echo(f"cache: {features} (--features)", err=True)
        return Path(features)
    path, why = default_cache()
    click.echo(f"cache: {why} (the default; --features to choose another)", err=True)
    return path


def echo_config(cfg: ClassifyConfig, views: bool = False) -> None:
    """One line of the settings that apply to this run (`ClassifyConfig.settings`); the run record keeps all."""
    click.echo("settings: " + json.dumps(cfg.settings(views), allow_nan=False), err=True)



def summary_lines(model: str, cache_name: str, metrics: dict, files: dict) -> list[str]:
    """Where each file went, then one line of test accuracy, macro F1 and timings."""
    width = max(len(k) for k in files) + 1
    lines = [f"  {k + ':':<{width}} {v}" for k, v in files.items()]
    lines.append(
        f"{model} on {cache_name}: test accuracy {metrics['accuracy']:.4f} "
        f"(95% interval {metrics['accuracy_ci'][0]:.3f}-{metrics['accuracy_ci'][1]:.3f}), ECE {metrics['ece']:.3f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"train time {metrics['train_time_s']:.2f} s, predict time {metrics['predict_time_s']:.3f} s"
    )
    return lines


def notes(cfg: ClassifyConfig, details: dict) -> list[str]:
    """What training chose or found, in words: the C sweep, an unconverged fit, epochs run."""
    out = []
    if "C_sweep" in details:
        sweep = ", ".join(f"{s['C']:g}: {s['val_accuracy']:.3f}" for s in details["C_sweep"])
        out.append(f"C sweep (validation accuracy): {sweep} -> C = {details['C']:g}")
    if "k_sweep" in details:
        sweep = ", ".join(f"{s['k']}: {s['val_accuracy']:.3f}" for s in details["k_sweep"])
        out.append(f"k sweep (validation accuracy): {sweep} -> k = {details['k']}")
    if details.get("converged") is False:
        out.append(f"note: the LR solver stopped at --max-iter {cfg.max_iter} before converging; raise --max-iter for a tighter fit")
    if "subsample" in details:
        s = details["subsample"]
        out.append(f"note: RF trained on a stratified subsample of {s['rows']:,} of {s['of']:,} training rows, "
                   f"to fit --max-memory {s['budget']:,} bytes")
    if "over_budget" in details:
        o = details["over_budget"]
        batch = f" and --batch-size {o['batch_size']} batches" if o["batch_size"] else ""
        out.append(f"warning: streaming held up to {o['held_bytes']:,} bytes of features, more than --max-memory "
                   f"{o['budget_bytes']:,}: the smallest chunk ({o['chunk_rows']} rows){batch} do not fit in it; "
                   "pass a larger --max-memory" + (" or a smaller --batch-size" if batch else ""))
    if details.get("val_split"):
        out.append(f"validation split: whole {details['val_split']} (the cache's /train/groups), so no copy of a "
                   "fitted image is validated on")
    if details.get("cache_replaced"):
        out.append(f"note: {cfg.features} was replaced while this run read it; every row came from the cache "
                   "opened at the start, which the run record names (cache_id), not the file now at that path")
    if details.get("solver") == "sgd":
        out.append(f"LR streamed from the cache by SGD (log loss), {details['epochs_run']} pass(es) over the data, "
                   "as the training matrix is larger than --max-memory")
    if "adversarial" in details:
        a = details["adversarial"]
        out.append(f"adversarial training: {a['method']} eps {a['eps']:g}, {a['steps']} step(s), ratio {a['ratio']:g}, "
                   f"{len(a['regenerations'])} regeneration(s) of {a['images']} images in {a['regeneration_seconds']:.1f} s")
    if "epochs_run" in details and details.get("solver") != "sgd" and "adversarial" not in details:
        out.append(f"MLP ran {details['epochs_run']} epoch(s); best validation loss at epoch {details['best_epoch']}")
    return out


def track_option(command):
    """`--track mlflow` (default: FEATURECACHE_TRACK), for the commands that train runs."""
    return click.option("--track", type=click.Choice(TRACKERS), envvar=ENV, default=None,
                        help=f"Also log each run (parameters, metrics, PNGs, model) to MLflow at MLFLOW_TRACKING_URI. "
                             f"Default: ${ENV}. Needs the tracking extra: {INSTALL}.")(command)


def echo_written(files: dict, out_dir) -> None:
    """Each file a command wrote, as `  kind: path`, then the folder's report page, rebuilt."""
    from classify.reporting.report import write_index

    for kind, path in files.items():
        click.echo(f"  {kind}: {path}")
    click.echo(f"  index: {write_index(out_dir)}")
