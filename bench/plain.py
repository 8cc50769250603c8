"""The peer a user writes: a Keras model and `model.predict` in float32, then `np.save`.

    python -m bench.plain --data-dir DIR --backbone resnet50 --size 224 --limit 500 --out f.npy --json r.json

CIFAR-10 arrays (train, then test, the first --limit of each), uint8 -> float32 -> bilinear resize ->
the backbone's preprocess_input -> backbone (random weights, seed 0, as `extract --weights none`)
-> global average pooling, all inside one Keras model, `model.predict(images, batch_size=32)`.
A .keras file brings its own preprocessing. Used by `python -m bench.runtime` as the float32 peer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def plain_model(backbone: str, size: int):
    import keras

    from featurecache.backbones import BACKBONES

    keras.config.set_dtype_policy("float32")
    images = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Resizing(size, size, interpolation="bilinear")(keras.ops.cast(images, "float32"))
    if backbone in BACKBONES:
        spec = BACKBONES[backbone]
        keras.utils.set_random_seed(0)
        base = getattr(keras.applications, spec.constructor)(include_top=False, weights=None,
                                                             input_shape=(size, size, 3))
        x = getattr(keras.applications, spec.module).preprocess_input(x)
    else:
        base = keras.saving.load_model(backbone, safe_mode=True, compile=False)
    x = base(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--data-dir", "--backbone", "--out", "--json"):
        p.add_argument(name, required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    from bench.runner import peak_rss_mb
    from extract.cifar import load_cifar10

    data = load_cifar10(args.data_dir, args.limit)
    images = np.concatenate([d.read(0, len(d)).images for d in data.splits.values()])  # (N, 32, 32, 3) uint8
    model = plain_model(args.backbone, args.size)
    t = time.perf_counter()
    features = model.predict(images, batch_size=32, verbose=0)
    np.save(args.out, features.astype(np.float32))
    Path(args.json).write_text(json.dumps({"images": len(images), "predict_s": time.perf_counter() - t,
                                           "self_peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
