"""Predictions for new images from a saved classify run: plain data, no printing.

    from classify.pixel.predict import collect_images, predict_images
    files, not_images = collect_images([Path("photos/")])
    predictions, skipped = predict_images(load_run("reports/...-run.json"), files)

Every file given, or found under a folder given, is either predicted or skipped with its reason:
`skipped` is a list of {"file": path, "reason": "not an image" | "unreadable: ..." | "too large: ..."}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featurecache.images import unrecognised, walk_images
from featurecache.errors import UserError


def collect_images(paths: tuple[Path, ...]) -> tuple[list[Path], list[dict]]:
    """Image files named directly, plus the images found under named folders; and the other files
    found under those folders, each as {"file": path, "reason": why it is skipped}.

    Folders are searched with extract's own walker: symlinks followed (each real folder
    once), hidden and system files skipped, files admitted by what they are."""
    files: list[Path] = []
    skipped: list[dict] = []
    for p in paths:
        if p.is_dir():
            found, others = walk_images(p)
            if not found and not others:
                raise UserError(f"{p} holds no image files, nor any other file; pass image files or a folder of them")
            files.extend(Path(f) for f in found)
            skipped.extend({"file": f, "reason": unrecognised(f)} for f in others)
        elif p.is_file():
            files.append(p)
        elif p.exists():
            raise UserError(f"{p} is not a regular file (a device, pipe or socket); pass image files or folders")
        else:
            raise UserError(f"{p} does not exist; pass image files or folders")
    return files, skipped


def predict_images(run, files: list[Path], batch_size: int = 32,
                   allow_weights_mismatch: bool = False, runtime: str = "auto") -> tuple[list[dict], list[dict]]:
    """Per image: predicted class, its probability and all class probabilities.

    Returns (predictions, skipped files: {"file": path, "reason": why}). The extractor is rebuilt from the
    run's cache attributes (weights and model files checked against the
    digests the cache recorded); images are decoded at the size the cache's
    extraction read them (32 px for CIFAR-10, the model size for photo folders). `runtime`
    (auto, tensorflow, openvino) runs a float32 cache's backbone; a cache computed in another precision
    runs on its own runtime (`Extractor.from_cache`).
    """
    from featurecache.images import ImageProblem, load_image
    from featurecache.extractor import Extractor

    from featurecache.augment import from_attrs, view_seeds

    extractor = Extractor.from_cache(run.cache_attrs, allow_weights_mismatch, runtime)
    extractor.batch_size = batch_size
    input_size = extractor.sizes.input
    # a run trained with --tta averages each image's probabilities over it and the cache's test views
    augment = from_attrs(run.cache_attrs) if run.record.shared.tta else None

    results, skipped = [], []
    names = run.class_names
    for start in range(0, len(files), batch_size):
        images, kept, rows = [], [], []
        for i, f in enumerate(files[start : start + batch_size], start):
            try:
                images.append(load_image(f, input_size))
                kept.append(f)
                rows.append(i)
            except ImageProblem as e:  # not an image, broken or too large: reported, not fatal
                skipped.append({"file": str(f), "reason": str(e)})
        if not images:
            continue
        proba = run.predict_proba(extractor(np.stack(images)))  # (b, C)
        if augment is not None and augment.test_views:
            views = [run.predict_proba(extractor.views(np.stack(images), view_seeds(extractor.seed, "test", rows, v),
                                                       augment)) for v in range(augment.test_views)]
            proba = np.mean([proba, *views], axis=0)
        for f, p in zip(kept, proba):
            k = int(np.argmax(p))
            results.append({
                "image": str(f),
                "class": names[k],
                "probability": float(p[k]),
                "probabilities": {n: float(v) for n, v in zip(names, p)},
            })
    return results, skipped
