"""Every setting of the extract stage, with its default, in one place.

The CLI fills an `ExtractConfig` from its options; the run logs it once and
stores it in the cache's `config` attribute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ExtractConfig:
    data_dir: str | None = None      # None: CIFAR-10 through Keras' download
    backbone: str = "vgg16"          # a featurecache.backbones name, or PATH to a .keras model file
    pooling: str = "gap"             # gap | flatten
    image_size: int | None = None    # None: 32 px for a table backbone (raised to its minimum), a model file's own
    weights: str = "imagenet"        # imagenet | none | PATH (table backbones only)
    feature_layer: str | None = None # take this inner layer's output instead of the backbone's
    seed: int = 0                    # random weights with --weights none; folder train/test split
    precision: str = "auto"          # auto | float32 | bfloat16 | float16 (compute; caches store float32)
    runtime: str = "auto"            # auto | tensorflow | openvino (featurecache/runtime.py)
    batch_size: int | None = None    # None: a measured default for the runtime, precision and size
    limit: int | None = None         # first N images of each split
    test_fraction: float = 0.2       # single-level image folders only
    out: str | None = None           # None: features/<default name> (extract.naming)
    store_dtype: str = "float32"     # float16 halves huge Flatten caches
    checkpoint_every: int = 1024     # rows per checkpoint part; rounded up to whole batches
    force: bool = False              # rebuild even if a matching cache exists
    no_wait: bool = False            # fail at once instead of waiting while another run writes the cache
    verify: bool = False             # photo folders: hash every file again, not only changed ones
    decode_workers: int | None = None  # photo folders: threads decoding each batch (None: every core)
    # beyond one process (docs/distributed.md)
    shard: str | None = None         # "i/N": extract only slice i of N of every split (extract/shards.py)
    engine: str = "local"            # local: this process | ray: a Ray Data pipeline (extract/ray_engine.py)
    workers: int | None = None       # --engine ray: actors holding the model (default 2)
    address: str | None = None       # --engine ray: a cluster's address (default RAY_ADDRESS, else this machine)
    verbose: bool = False            # --engine ray: show Ray's own logs and progress bars
    augment: str | None = None       # comma list of featurecache.augment.AUGMENTATIONS; None: no views
    views: int | None = None         # augmented views per training image (needs augment)
    rotate_degrees: float | None = None  # `rotate` range in degrees, 0..180; None: 15
    test_views: int | None = None    # augmented views per test image, for test-time augmentation

    def to_dict(self) -> dict:
        return asdict(self)

    def settings(self, folder: bool) -> dict:
        """The settings that apply to this run, for the screen (the cache's `config` keeps them all):
        no Ray options on the local engine, no view options without --augment, no photo-folder
        options for CIFAR-10 (`folder` False), and no option left unset or off."""
        drop = set() if self.engine == "ray" else {"workers", "address", "verbose"}
        drop |= set() if self.augment else {"views", "rotate_degrees", "test_views"}
        drop |= set() if folder else {"test_fraction", "verify", "decode_workers"}
        return {k: v for k, v in self.to_dict().items() if k not in drop and v is not None and v is not False}


def augment_settings(cfg: ExtractConfig):
    """The augmentation options checked (`featurecache.augment.AugmentSettings`); a mistake is one UserError."""
    from featurecache.augment import check_settings

    return check_settings(cfg.augment, cfg.views, cfg.rotate_degrees, cfg.test_views)
