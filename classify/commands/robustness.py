"""`featurecache robustness --run RUN.json` / `make robustness RUN=...`: accuracy under FGSM and PGD.

Reads a saved run (its record, model file and cache) and the pictures behind its test rows
(CIFAR-10 batches or photo files, through the cache's data_kind, data_location and sources);
builds the run's end-to-end model (classify.pixel.endtoend) and attacks it in pixel space, batch by
batch. Writes under --out-dir (default: the run's own folder, reports/<run>/, or for a run written
flat the folder of its record), <id> naming the attack settings (other settings, other files; the
same settings again replace theirs):

    <run>-robustness-<id>.json   {"settings": {...}, "results": [{"attack", "eps", "accuracy", "n_images"}, ...]}
    <run>-robustness-<id>.png    accuracy against eps, one line per attack
    <run>-adversarial-<id>.png   a few test images, clean and attacked at the largest eps, with predicted classes

eps is in pixel units out of 255 (L-infinity). Gradients come from the float32 twin of the model;
every attacked image is projected into the eps-ball and [0, 255], rounded to integers (a real
image) and scored by the model in the cache's precision. A random-forest run has no gradient: its
images are crafted on an LR or MLP run of the same cache (--transfer-from, or one found beside
the run) and the forest is scored on them (a transfer attack, said so in the JSON). Any run can be
attacked that way with --transfer-from.

    featurecache robustness --run reports/cifar10-vgg16-gap-32px-lr-1a2b3c4d-run.json --attack fgsm --attack pgd
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import click

from classify.pixel.attacks import ATTACKS, AttackConfig, parse_eps, robustness, settings_id, write_outputs
from featurecache.command import Command
from featurecache.errors import UserError
from featurecache.files import interruptible


# --------------------------------------------------------------------------- command


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Run record JSON written by classify (reports/...-run.json).")
@click.option("--attack", "attacks", multiple=True, type=click.Choice(ATTACKS), default=("fgsm",), show_default=True,
              help="Attack to run; give it several times for several.")
@click.option("--eps", "eps_text", default="0,1,2,4,8", show_default=True,
              help="L-infinity budgets in pixel values out of 255, comma-separated.")
@click.option("--pgd-steps", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@click.option("--pgd-step-size", type=click.FloatRange(min=0, min_open=True, max=255),
              help="PGD step in pixel values (default: 2.5 * eps / steps).")
@click.option("--limit", type=click.IntRange(min=1), help="Attack only the first N test images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of PGD's random start.")
@click.option("--transfer-from", type=click.Path(dir_okay=False, path_type=Path),
              help="An lr or mlp run of the same cache to craft the images on (a transfer attack); for a "
                   "random-forest run the default is one found beside it, for other runs the run itself.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Default: the run's own folder (reports/<run>/), or its record's folder for a run written flat.")
@click.option("--allow-weights-mismatch", is_flag=True,
              help="Run even if the weights or model file differ from those the run's cache was made with.")
@interruptible("robustness")
def cli(run_path, attacks, eps_text, pgd_steps, pgd_step_size, limit, batch_size, seed, transfer_from, out_dir,
        allow_weights_mismatch) -> None:
    """Accuracy of a saved run under FGSM and PGD attacks on its test images."""
    from classify.runs.saved import load_run
    from featurecache.files import check_writable

    if pgd_step_size is not None and not math.isfinite(pgd_step_size):
        raise UserError(f"--pgd-step-size {pgd_step_size} is not a finite number")
    cfg = AttackConfig(tuple(dict.fromkeys(attacks)), parse_eps(eps_text), pgd_steps, pgd_step_size, limit,
                       batch_size, seed, str(transfer_from) if transfer_from else None)
    run = load_run(run_path)
    folder = check_writable(out_dir or run.model_path.parent, "out_dir")
    click.echo(f"robustness: {json.dumps(asdict(cfg))}", err=True)
    doc = robustness(run, cfg, allow_weights_mismatch, log=lambda s: click.echo(s, err=True))
    stem = run_path.name.removesuffix(".json").removesuffix("-run")
    paths = write_outputs(doc, folder, stem, run.class_names, settings_id(cfg))
    s = doc["settings"]
    click.echo(f"{s['model']} run, {s['n_images']} test images; clean accuracy {s['clean_accuracy_on_cached_features']:.4f} "
               f"(cached features), {s['clean_accuracy_end_to_end']:.4f} (end to end)")
    if s["transfer_attack"]:
        click.echo(f"  images crafted on {s['transfer_attack']['crafted_on']} (a transfer attack)")
    for r in doc["results"]:
        click.echo(f"  {r['attack']:<5} eps {r['eps']:>5g}: accuracy {r['accuracy']:.4f}")
    click.echo(f"  seconds: {s['seconds']}")
    for p in paths.values():
        click.echo(f"  {p}")
    from classify.reporting.report import write_index

    click.echo(f"  index: {write_index(folder if out_dir else run_path.parent)}")


def main() -> None:
    cli(prog_name="featurecache robustness")


if __name__ == "__main__":
    main()
