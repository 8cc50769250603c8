"""Augmented views: K randomly transformed copies of each image, seeded per (seed, split, row, view).

`extract --augment flip,crop --views K` stores the features of K views of every training image
beside the plain ones (`/train/view_features`, (N, K, D)), so classifiers train on augmented data
without running the CNN again. The transforms are Keras preprocessing layers (RandomFlip,
RandomTranslation, RandomRotation, RandomBrightness + RandomContrast, RandomZoom) applied, with
`training=True`, inside the extractor's graph between the resize and the backbone's preprocessing.

Their randomness is not a stateful generator: every image gets its own stateless seed pair computed
from (seed, split, row index, view index) by `view_seeds`, and `RowSeed` hands that pair to the
layers. So a view depends only on those four numbers, never on the batch size or on what ran before:
the same command gives bit-identical views, and a run resumed from checkpoints draws the same views
as an uninterrupted one.

This module never imports TensorFlow at import time (classify reads these settings too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurecache.errors import SettingError

AUGMENTATIONS = ("flip", "crop", "rotate", "color", "zoom")
CROP_FRACTION = 0.125   # `crop` shifts by up to 12.5% of the size, reflected back to size
ZOOM_FRACTION = 0.10    # `zoom` in or out by up to 10%
COLOR_FACTOR = 0.2      # brightness (x 255) and contrast jitter of up to 20%
MAX_VIEWS = 64          # views per image; the seed of view v of row r is (.., r * MAX_VIEWS + v)
MAX_ROTATE = 180.0


@dataclass(frozen=True)
class AugmentSettings:
    """What `--augment`, `--views`, `--rotate-degrees` and `--test-views` asked for, checked."""

    ops: tuple[str, ...] = ()        # in the order applied (AUGMENTATIONS order), empty: no augmentation
    views: int = 0                   # views per training image
    rotate_degrees: float = 15.0     # `rotate`: uniform in [-deg, +deg]
    test_views: int = 0              # views per test image, for test-time augmentation only

    @property
    def active(self) -> bool:
        return bool(self.ops)

    def identity(self) -> dict:
        """The cache attributes these settings define (part of a cache's identity)."""
        return {"augment": ",".join(self.ops), "views": self.views,
                "rotate_degrees": float(self.rotate_degrees) if "rotate" in self.ops else 0.0,
                "test_views": self.test_views}

    def views_of(self, split: str) -> int:
        """Views stored for a split: `views` for train, `test_views` for test, none for val."""
        return {"train": self.views, "test": self.test_views}.get(split, 0)


def parse_ops(spec: str | None) -> tuple[str, ...]:
    """'crop, flip' -> ('flip', 'crop') in the order they are applied; an unknown name is refused."""
    if spec is None or not spec.strip():
        return ()
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise SettingError(f"augment={spec!r}: unknown augmentation {unknown[0]!r}; "
                           f"pass a comma list of {', '.join(AUGMENTATIONS)}")
    return tuple(a for a in AUGMENTATIONS if a in names)


def check_settings(augment: str | None, views: int | None, rotate_degrees: float | None,
                   test_views: int | None) -> AugmentSettings:
    """The four options as `AugmentSettings`, or one UserError line naming the mistake and the fix."""
    ops = parse_ops(augment)
    if rotate_degrees is not None:
        if not np.isfinite(rotate_degrees) or not 0 <= rotate_degrees <= MAX_ROTATE:
            raise SettingError(f"rotate_degrees={rotate_degrees:g} is outside 0..{MAX_ROTATE:g}; "
                               "pass a number of degrees from 0 to 180 (default 15)")
        if "rotate" not in ops:
            raise SettingError("`rotate_degrees` needs rotate in `augment`, e.g. augment='flip,rotate'")
    for option, value in (("views", views), ("test_views", test_views)):
        if value is None:
            continue
        if not 1 <= value <= MAX_VIEWS:
            raise SettingError(f"{option}={value} is outside 1..{MAX_VIEWS}; pass the number of augmented views "
                               "per image (e.g. 4), or leave it out")
        if not ops:
            raise SettingError(f"`{option}` needs `augment` to say how views differ; add e.g. augment='flip,crop'")
    if ops and views is None:
        raise SettingError(f"augment={augment!r} needs views=K, the number of augmented views per training image "
                           "(e.g. views=4)")
    return AugmentSettings(ops, int(views or 0), 15.0 if rotate_degrees is None else float(rotate_degrees),
                           int(test_views or 0))


def from_attrs(attrs: dict) -> AugmentSettings:
    """The settings a cache recorded (a cache without them: no augmentation)."""
    ops = tuple(o for o in str(attrs.get("augment", "") or "").split(",") if o)
    return AugmentSettings(ops, int(attrs.get("views", 0) or 0), float(attrs.get("rotate_degrees", 15.0) or 0.0),
                           int(attrs.get("test_views", 0) or 0))


SPLIT_CODES = {"train": 0, "test": 1, "val": 2}


def view_seeds(seed: int, split: str, rows: np.ndarray, view: int) -> np.ndarray:
    """(n, 2) int32 stateless seed pairs, one per row: (seed and split, row * MAX_VIEWS + view).

    Philox streams of distinct pairs are independent, so each (seed, split, row, view) draws its own
    transform whatever batch the row lands in."""
    rows = np.asarray(rows, dtype=np.int64)
    first = np.full(len(rows), (int(seed) * len(SPLIT_CODES) + SPLIT_CODES[split]) % (2**31 - 1), np.int64)
    second = (rows * MAX_VIEWS + int(view)) % (2**31 - 1)
    return np.stack([first, second], axis=1).astype(np.int32)


def layers(k, settings: AugmentSettings) -> list:
    """The Keras preprocessing layers for `settings.ops`, in order, for pixels in 0..255 (float32)."""
    made = []
    for op in settings.ops:
        if op == "flip":
            made.append(k.layers.RandomFlip("horizontal", name="aug_flip"))
        elif op == "crop":
            made.append(k.layers.RandomTranslation(CROP_FRACTION, CROP_FRACTION, fill_mode="reflect",
                                                   name="aug_crop"))
        elif op == "rotate" and settings.rotate_degrees > 0:
            made.append(k.layers.RandomRotation(settings.rotate_degrees / 360.0, fill_mode="reflect",
                                                name="aug_rotate"))
        elif op == "color":
            made.append(k.layers.RandomBrightness(COLOR_FACTOR, value_range=(0.0, 255.0), name="aug_brightness"))
            made.append(k.layers.RandomContrast(COLOR_FACTOR, value_range=(0.0, 255.0), name="aug_contrast"))
        elif op == "zoom":
            made.append(k.layers.RandomZoom((-ZOOM_FRACTION, ZOOM_FRACTION), fill_mode="reflect", name="aug_zoom"))
    return made


def row_seed_class(k):
    """A `keras.random.SeedGenerator` that hands out one image's fixed seed pair.

    Keras's random layers accept a seed generator in `get_random_transformation`; this one returns the
    image's (2,) seed, offset by a count of the draws traced so far, so the layers' separate draws
    (a translation's height and width) are distinct yet fixed for that image."""

    class RowSeed(k.random.SeedGenerator):
        def __init__(self, seed_pair):  # noqa: D401 - deliberately no variable state
            self.pair = seed_pair
            self.draws = 0

        def next(self, ordered=True):
            from featurecache.tfimport import tensorflow

            tf = tensorflow()
            self.draws += 1
            return self.pair + tf.constant([0, 1], tf.int32) * (self.draws * 7919)

    return RowSeed


def augment_images(k, aug_layers: list, images, seeds):
    """(n, s, s, 3) float32 pixels 0..255 and (n, 2) int32 seeds -> the augmented pixels.

    Each layer's random transformation is drawn per image from that image's seed (`tf.map_fn` over
    the seeds: a few numbers each), then applied to the whole batch at once with the layer's own
    `transform_images`, which applies row i's parameters to image i."""
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    RowSeed = row_seed_class(k)
    one = tf.zeros([1, *images.shape[1:]], images.dtype)  # (1, s, s, 3): the draws need the shape only
    n = tf.shape(images)[0]
    x = images
    for layer in aug_layers:
        probe = layer.get_random_transformation(one, training=True, seed=RowSeed(seeds[0]))
        # the per-image draws: tensors with a leading batch axis of 1 (sizes and counts are not drawn)
        drawn = [key for key, value in probe.items()
                 if tf.is_tensor(value) and value.shape.rank and value.shape[0] == 1 and key != "input_shape"]

        def draw(pair, layer=layer, drawn=drawn):
            t = layer.get_random_transformation(one, training=True, seed=RowSeed(pair))
            return {key: t[key] for key in drawn}

        signature = {key: tf.TensorSpec(probe[key].shape, probe[key].dtype) for key in drawn}
        stacked = tf.map_fn(draw, seeds, fn_output_signature=signature)   # each (n, 1, ...)
        transform = {key: (tf.squeeze(stacked[key], axis=1) if key in stacked else value)
                     for key, value in probe.items()}
        for key in ("input_shape", "batch_size"):
            if key in transform:
                transform[key] = tf.shape(images) if key == "input_shape" else n
        x = layer.transform_images(x, transform, training=True)
    return tf.cast(x, tf.float32)
