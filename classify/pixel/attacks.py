"""Adversarial attacks on a saved run's end-to-end model: FGSM and PGD in pixel space, and the evaluation
that `featurecache robustness` runs (see that module for the outputs).

eps is in pixel values out of 255 (L-infinity). Gradients come from the float32 twin of the model
(classify.pixel.endtoend); every attacked image is projected into the eps-ball and [0, 255], rounded to whole
pixel values (a real image) and scored by the model in the cache's precision. A random-forest run has no
gradient: its images are crafted on an lr or mlp run of the same cache and the forest is scored on them.
"""


from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from featurecache.errors import SettingError, UserError
from featurecache.progress import progress

ATTACKS = ("fgsm", "pgd")
EXAMPLES = 6  # images shown in the adversarial figure


@dataclass
class AttackConfig:
    attacks: tuple[str, ...] = ("fgsm",)
    eps: tuple[float, ...] = (0, 1, 2, 4, 8)     # pixel units out of 255
    pgd_steps: int = 10
    pgd_step_size: float | None = None           # None: 2.5 * eps / steps (Madry et al.)
    limit: int | None = None                     # first N test images
    batch_size: int = 100
    seed: int = 0
    transfer_from: str | None = None             # an lr/mlp run that crafts the images (any run; a forest needs one)


def parse_eps(text: str) -> tuple[float, ...]:
    """"0,1,2,4,8" -> sorted unique floats in 0..255; anything else is a one-line UserError."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SettingError(f"eps={text!r} is not a comma-separated list of numbers; pass e.g. eps='0,1,2,4,8'") from None
    if not values:
        raise SettingError("`eps` is empty; pass e.g. eps='0,1,2,4,8'")
    bad = [v for v in values if not math.isfinite(v) or v < 0 or v > 255]
    if bad:
        raise SettingError(f"eps={text!r}: {bad[0]:g} is outside 0..255 (pixel units out of 255); pass values in 0..255")
    return tuple(sorted(set(values)))


# --------------------------------------------------------------------------- attacks on one batch


def to_image(adv: np.ndarray, clean: np.ndarray, eps: float) -> np.ndarray:
    """Float adversarial pixels -> uint8 images: rounded, then kept within eps of `clean` and in 0..255.
    Rounding first and clipping to the integer ball after keeps a fractional eps from rounding outward."""
    lo = np.maximum(clean - math.floor(eps), 0.0)
    hi = np.minimum(clean + math.floor(eps), 255.0)
    return np.clip(np.rint(adv), lo, hi).astype(np.uint8)


def project(adv: np.ndarray, clean: np.ndarray, eps: float) -> np.ndarray:
    """Into the L-infinity eps-ball around `clean` and into [0, 255]; float32."""
    return np.clip(np.clip(adv, clean - eps, clean + eps), 0.0, 255.0).astype(np.float32)


def fgsm(grad: np.ndarray, clean: np.ndarray, eps: float) -> np.ndarray:
    """One signed-gradient step of size eps from the clean pixels (Goodfellow et al.); uint8."""
    return to_image(project(clean + eps * np.sign(grad), clean, eps), clean, eps)


def pgd(model, clean: np.ndarray, labels: np.ndarray, eps: float, steps: int, step_size: float,
        rng: np.random.Generator) -> np.ndarray:
    """Projected gradient descent from a uniform random start in the eps-ball (Madry et al.); uint8."""
    x = project(clean + rng.uniform(-eps, eps, clean.shape).astype(np.float32), clean, eps)
    for _ in range(steps):
        x = project(x + step_size * np.sign(model.loss_gradient(x, labels)), clean, eps)
    return to_image(x, clean, eps)


# --------------------------------------------------------------------------- the run's test images


@dataclass
class RunImages:
    kind: str
    location: str
    sources: list[str]
    labels: np.ndarray           # (n,) int
    clean_accuracy: float        # the run's classifier on the cached features of these rows


def run_images(run, limit: int | None) -> RunImages:
    """The run's test rows (first `limit`), with the pictures behind them checked to be there."""
    from classify.runs.identity import run_cache
    from featurecache.images import source_path
    from featurecache.cache import read_cache

    opened = run_cache(run.record, run.path)   # the cache the run was trained on, or a UserError
    cache = read_cache(opened)
    opened.close()
    n = len(cache.test.labels) if limit is None else min(limit, len(cache.test.labels))
    kind, location = str(cache.attrs.get("data_kind", "")), str(cache.attrs.get("data_location", ""))
    sources = [str(s) for s in cache.test.sources[:n]]
    if not Path(location).is_dir():
        raise UserError(f"the images behind the run's cache are gone: expected them in {location}; "
                        "restore that folder (or re-extract from where they are now)")
    if kind != "cifar10":
        missing = [s for s in sources if not source_path(location, s).is_file()]
        if missing:
            raise UserError(f"{len(missing)} test image(s) behind the run's cache are gone, e.g. "
                            f"{source_path(location, missing[0])}; restore them or re-extract")
    proba = run.predict_proba(cache.test.features[:n])
    labels = np.asarray(cache.test.labels[:n], dtype=np.int64)
    return RunImages(kind, location, sources, labels, float((proba.argmax(1) == labels).mean()))


def read_batch(images: RunImages, start: int, stop: int, size: int) -> np.ndarray:
    """(b, size, size, 3) uint8: the pictures of rows start..stop, decoded as extract decoded them."""
    from featurecache.images import source_image

    return np.stack([source_image(images.kind, images.location, s, size) for s in images.sources[start:stop]])


# --------------------------------------------------------------------------- the evaluation


def find_transfer_run(run) -> Path:
    """An lr (else mlp) run of the same cache in the forest run's folder, newest first."""
    from classify.runs.record import SUFFIX, RunRecord, RunRecordError

    folder = run.path.parent
    found = []
    for p in folder.glob("*" + SUFFIX):
        try:
            record = RunRecord.load(p)
        except RunRecordError:
            continue
        if record.cache_id == run.record.cache_id and record.model_format in ("linear", "keras"):
            found.append((record.model_format != "linear", -p.stat().st_mtime, p))
    if not found:
        raise UserError(f"{run.path.name} is a random-forest run, which has no gradient; a transfer attack needs an lr "
                        f"run of the same cache: train one (`python -m classify --model lr --features "
                        f"{run.record.cache.path}`) or pass transfer_from=LR_RUN.json")
    return sorted(found)[0][2]


def evaluate(target, attacker, images: RunImages, cfg: AttackConfig) -> dict:
    """Accuracy of `target` (EndToEnd) on the test images under each attack and eps, crafted on
    `attacker` (the target itself, or an lr/mlp run of the same cache for a forest). Batch by batch:
    memory does not grow with the number of images. Returns {"results", "examples", "seconds"}."""
    rng = np.random.default_rng(cfg.seed)
    size = target.input_size
    n = len(images.labels)
    correct = {(a, e): 0 for a in cfg.attacks for e in cfg.eps}
    seconds = {a: 0.0 for a in cfg.attacks}
    clean_correct = 0
    top = max(cfg.eps)
    examples: dict = {}
    bar = progress("attacks", n, "img")
    for start in range(0, n, cfg.batch_size):
        stop = min(n, start + cfg.batch_size)
        x8 = read_batch(images, start, stop, size)             # (b, s, s, 3) uint8
        y = images.labels[start:stop]
        x = x8.astype(np.float32)
        clean_pred = target.proba(x8).argmax(1)
        clean_correct += int((clean_pred == y).sum())
        if start == 0:
            examples = {"clean": x8[:EXAMPLES], "clean_pred": clean_pred[:EXAMPLES], "labels": y[:EXAMPLES]}
        for attack in cfg.attacks:
            t0 = time.perf_counter()
            grad = attacker.loss_gradient(x, y) if attack == "fgsm" else None  # one gradient serves every eps
            for eps in cfg.eps:
                if eps == 0:   # the clean images themselves, for every attack
                    correct[(attack, eps)] += int((clean_pred == y).sum())
                    continue
                if attack == "fgsm":
                    adv = fgsm(grad, x, eps)
                else:
                    step = cfg.pgd_step_size if cfg.pgd_step_size is not None else 2.5 * eps / cfg.pgd_steps
                    adv = pgd(attacker, x, y, eps, cfg.pgd_steps, step, rng)
                pred = target.proba(adv).argmax(1)
                correct[(attack, eps)] += int((pred == y).sum())
                if start == 0 and eps == top:
                    examples[attack] = adv[:EXAMPLES]
                    examples[f"{attack}_pred"] = pred[:EXAMPLES]
            seconds[attack] += time.perf_counter() - t0
        bar.update(stop - start)
    bar.close()
    results = [{"attack": a, "eps": e, "accuracy": correct[(a, e)] / n, "n_images": n}
               for a in cfg.attacks for e in cfg.eps]
    return {"results": results, "clean_accuracy": clean_correct / n, "examples": examples,
            "seconds": {a: round(s, 2) for a, s in seconds.items()}}


def robustness(run, cfg: AttackConfig, allow_weights_mismatch: bool = False, log=lambda s: None) -> dict:
    """The whole evaluation of one saved run: returns the JSON document plus "examples" for the figure."""
    from classify.pixel import endtoend
    from classify.runs.saved import load_run

    images = run_images(run, cfg.limit)
    target = endtoend.build(run, allow_weights_mismatch)
    transfer = None
    if target.differentiable and not cfg.transfer_from:
        attacker = target
    else:   # a forest has no gradient; any run may be attacked with images crafted on another (--transfer-from)
        transfer = Path(cfg.transfer_from) if cfg.transfer_from else find_transfer_run(run)
        source = load_run(transfer)
        if source.record.cache_id != run.record.cache_id:
            raise SettingError(f"transfer_from={str(transfer)!r} was trained on another cache than {run.path.name}; "
                            "pass an lr run of the same cache")
        attacker = endtoend.build(source, allow_weights_mismatch)
        if not attacker.differentiable:
            raise SettingError(f"transfer_from={str(transfer)!r} is a random-forest run, which has no gradient; "
                            "pass an lr or mlp run of the same cache")
    out = evaluate(target, attacker, images, cfg)
    settings = {
        "run": str(run.path), "model": run.record.model, "attacks": list(cfg.attacks),
        "eps": list(cfg.eps), "eps_units": "pixel values out of 255, L-infinity",
        "pgd_steps": cfg.pgd_steps,
        "pgd_step_size": cfg.pgd_step_size if cfg.pgd_step_size is not None else "2.5 * eps / pgd_steps",
        "pgd_random_start": True, "seed": cfg.seed, "limit": cfg.limit, "n_images": len(images.labels),
        "precision": run.cache_attrs.get("precision", "float32"), "gradient_precision": "float32",
        "backbone": run.cache_attrs.get("backbone"), "weights": run.cache_attrs.get("weights"),
        "clean_accuracy_on_cached_features": images.clean_accuracy,
        "clean_accuracy_end_to_end": out["clean_accuracy"],
        "transfer_attack": ({"crafted_on": str(transfer), "note": "images are crafted on this run of the same cache "
                             "(--transfer-from, or the forest has no gradient) and the attacked run is scored on them"}
                            if transfer else None),
        "seconds": out["seconds"],
    }
    return {"settings": settings, "results": out["results"], "examples": out["examples"]}


# --------------------------------------------------------------------------- figures


def plot_accuracy(doc: dict, path: Path, title: str) -> None:
    from classify.reporting import plots

    plots.save(plots.robustness_figure(doc, title), path)


def plot_examples(examples: dict, attacks: list[str], eps: float, names: list[str], path: Path, title: str) -> None:
    from classify.reporting import plots

    plots.save(plots.adversarial_figure(examples, attacks, eps, names, title), path)


def settings_id(cfg: AttackConfig) -> str:
    """8 hex digits naming the attack settings (all but the batch size, which changes no result): a run
    attacked with other settings gets files of its own; the same settings again replace their files."""
    from classify.runs.outputs import digest

    return digest({k: v for k, v in asdict(cfg).items() if k != "batch_size"})


def write_outputs(doc: dict, out_dir: Path, stem: str, names: list[str], tag: str) -> dict[str, Path]:
    """The JSON and both figures (<stem>-robustness-<tag>.json and .png, <stem>-adversarial-<tag>.png),
    written aside and renamed together."""
    from featurecache.files import Staged

    paths = {f"{kind}.{ext}": out_dir / f"{stem}-{kind}-{tag}.{ext}"
             for kind, ext in (("robustness", "json"), ("robustness", "png"), ("adversarial", "png"))}
    examples = doc.pop("examples")
    try:
        with Staged() as staged:
            staged.aside(paths["robustness.json"]).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
            plot_accuracy(doc, staged.aside(paths["robustness.png"]), f"{stem}: accuracy under attack")
            plot_examples(examples, doc["settings"]["attacks"], max(doc["settings"]["eps"]), names,
                          staged.aside(paths["adversarial.png"]), f"{stem}: clean and attacked (green: correct)")
    except OSError as e:
        raise UserError(f"could not write the robustness results in {out_dir} ({e}); earlier files are unchanged") from None
    return paths
