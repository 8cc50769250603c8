"""Default cache names: a readable part for every setting that changes the features.

    features/<dataset>-<backbone>-<pooling>-<size>px[-<part>...].h5

`cifar10-vgg16-gap-32px.h5` is the cache at every default (ImageNet weights, float32, no views);
each setting away from its default adds one part, in the order of `NAME_PARTS`:

    cifar10-vgg16-gap-32px-random.h5                     --weights none
    cifar10-vgg16-gap-32px-bf16.h5                       computed in bfloat16
    cifar10-vgg16-gap-32px-aug-flip+crop-4views.h5       --augment flip,crop --views 4
    cats-efficientnet_lite0_imagenet_notop-gap-224px-sha1a2b3c4d.h5   a model file and its digest

So two extractions that differ in any of these settings never share a default name, and neither
refuses or replaces the other. `NAME_PARTS` has one entry per identity attribute of a cache
(`featurecache.cache.IDENTITY_ATTRS`) that is not in the stem: a new setting is one entry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

DEFAULT_ROTATE = 15.0
SHORT_PRECISION = {"bfloat16": "bf16", "float16": "fp16"}  # float32, the exact one, adds nothing


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-").lower() or "data"


def _weights(s: dict) -> str | None:
    if s["weights"] == "none":
        return "random"
    return f"weights{s['weights_sha256'][:8]}" if s.get("weights_sha256") else None


# identity attribute -> its part of the name given all settings, or None at its default
NAME_PARTS: dict[str, Callable[[dict], str | None]] = {
    "backbone_sha256": lambda s: s["backbone_sha256"] and f"sha{s['backbone_sha256'][:8]}",
    "feature_layer": lambda s: s["feature_layer"] and f"layer-{slug(s['feature_layer'])}",
    "weights": _weights,
    "weights_sha256": lambda s: None,  # part of "weights"
    "seed": lambda s: s["seed"] != 0 and f"seed{s['seed']}",
    "precision": lambda s: SHORT_PRECISION.get(s["precision"]),
    # "" in float32 (runtimes agree to rounding); otherwise the runtime, whose bfloat16 differs from the other's
    "precision_runtime": lambda s: s.get("precision_runtime") or None,
    "store_dtype": lambda s: s["store_dtype"] != "float32" and f"store-{SHORT_PRECISION.get(s['store_dtype'], s['store_dtype'])}",
    "limit": lambda s: s["limit"] not in (None, -1) and f"limit{s['limit']}",
    "test_fraction": lambda s: s["test_fraction"] not in (-1.0, 0.2) and f"test{s['test_fraction']:g}",
    "augment": lambda s: s["augment"] and f"aug-{s['augment'].replace(',', '+')}",
    "views": lambda s: s["views"] and f"{s['views']}views",
    "rotate_degrees": lambda s: s["rotate_degrees"] not in (0.0, DEFAULT_ROTATE) and f"rot{s['rotate_degrees']:g}",
    "test_views": lambda s: s["test_views"] and f"{s['test_views']}testviews",
}
IN_STEM = ("data_fingerprint", "backbone", "pooling", "image_size")  # the dataset's name stands for its data


def default_name(dataset: str, settings: dict) -> str:
    """The default file name of a cache: `settings` holds the cache's identity attributes (all but the
    data fingerprint), as `extract.pipeline.identity` builds them."""
    parts = [slug(dataset), slug(settings["backbone"]), settings["pooling"], f"{settings['image_size']}px"]
    parts += [part for part in (make(settings) for make in NAME_PARTS.values()) if part]
    return "-".join(parts) + ".h5"


def default_cache_path(dataset: str, settings: dict) -> Path:
    """features/<default_name>, in the features folder (FEATURECACHE_FEATURES_DIR where set)."""
    from featurecache.cache import features_dir

    return features_dir() / default_name(dataset, settings)
