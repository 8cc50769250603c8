"""`python -m bench.attacks --run RUN.json --limit N`: seconds of FGSM (every eps) and PGD on a run's first N test
images, the per-step path of `classify.pixel.attacks` against the one-call path of `classify.pixel.gradients`.

Both attack the same end-to-end model (the run's cache backbone in float32 + its head) on the same pictures
and print one line each: seconds (after one warm-up batch, so tracing is not counted), images per second,
and the accuracy under attack (equal up to PGD's random start). Results go to docs/robustness.md by hand.
"""

from __future__ import annotations

import dataclasses
import json
import time

import click
import numpy as np


def old_path(run, images, eps, steps: int) -> dict:
    """classify.pixel.attacks.evaluate: one traced gradient per call, numpy between PGD steps, a scoring pass per eps."""
    from classify.pixel import endtoend
    from classify.pixel.attacks import AttackConfig, evaluate

    target = endtoend.build(run)
    out = {}
    for attack in ("fgsm", "pgd"):
        cfg = AttackConfig(attacks=(attack,), eps=eps, pgd_steps=steps, limit=len(images.labels), batch_size=100)
        warm = AttackConfig(attacks=(attack,), eps=eps[:2], pgd_steps=1, batch_size=100)
        evaluate(target, target, dataclasses.replace(images, sources=images.sources[:10], labels=images.labels[:10]), warm)
        t0 = time.perf_counter()
        doc = evaluate(target, target, images, cfg)
        out[attack] = {"seconds": round(time.perf_counter() - t0, 2),
                       "accuracy": {r["eps"]: r["accuracy"] for r in doc["results"]}}
    return out


def new_path(run, images, eps, steps: int) -> dict:
    """classify.pixel.gradients.PixelAttack, as classify.workflows.robust_model.evaluate_model runs it."""
    from classify.pixel import endtoend
    from classify.pixel.attacks import read_batch
    from classify.pixel.gradients import PixelAttack
    from classify.workflows.robust_model import evaluate_model
    from featurecache.extractor import Extractor
    from featurecache.tfimport import keras

    extractor = Extractor.from_cache(run.cache_attrs, keras=True)
    head = endtoend.head_logits(run, keras(), extractor.feature_dim)
    attack = PixelAttack(endtoend.float_backbone(extractor, run.cache_attrs), lambda f, training=False: head(f))
    pixels = read_batch(images, 0, len(images.labels), attack.size)
    evaluate_model(attack, pixels[:10], images.labels[:10], eps[:2], 1, 0)   # warm-up: traces both functions
    t0 = time.perf_counter()
    fgsm = [attack.fgsm(pixels[i:i + 100], images.labels[i:i + 100], [e for e in eps if e > 0])
            for i in range(0, len(pixels), 100)]
    t_fgsm = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = evaluate_model(attack, pixels, images.labels, eps, steps, 0)
    t_all = time.perf_counter() - t0
    acc = {e: float(np.mean(np.concatenate([f["pred"][i] for f in fgsm]) == images.labels))
           for i, e in enumerate(e for e in eps if e > 0)}
    return {"fgsm": {"seconds": round(t_fgsm, 2), "accuracy": acc},
            "fgsm+pgd": {"seconds": round(t_all, 2), "accuracy": {f"{r['attack']} eps {r['eps']:g}": r["accuracy"] for r in rows}},
            "traces": attack.traces}


@click.command()
@click.option("--run", "run_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--limit", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--pgd-steps", type=click.IntRange(min=1), default=10, show_default=True)
def cli(run_path, limit, pgd_steps) -> None:
    """Time FGSM and PGD on a run's first --limit test images, before (attacks.py) and after (gradients.py)."""
    from classify.pixel.attacks import run_images
    from classify.runs.saved import load_run

    run = load_run(run_path)
    images = run_images(run, limit)
    eps = (0.0, 1.0, 2.0, 4.0, 8.0)
    new = new_path(run, images, eps, pgd_steps)
    old = old_path(run, images, eps, pgd_steps)
    click.echo(json.dumps({"n_images": limit, "old": old, "new": new}, default=str, indent=1))
    n = limit
    click.echo(f"FGSM, 4 eps, {n} images: attacks.py {old['fgsm']['seconds']:.1f} s, gradients.py {new['fgsm']['seconds']:.1f} s")
    click.echo(f"FGSM + PGD-{pgd_steps}, 4 eps, {n} images: attacks.py {old['fgsm']['seconds'] + old['pgd']['seconds']:.1f} s, "
               f"gradients.py {new['fgsm+pgd']['seconds']:.1f} s")


if __name__ == "__main__":
    cli()
