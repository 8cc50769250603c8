"""The extractor: uint8 pixels -> feature vectors, for one backbone setting.

An `Extractor` is built either from extract's settings (`Extractor(...)`) or
from the attributes a cache recorded (`Extractor.from_cache(attrs)`), so
`extract`, `predict`, `bench` and everything that rebuilds features from a
cache get exactly the graph that made the cache:

    uint8 (n, input_size, input_size, 3) -> float32 -> resize to model_size
    -> the backbone's own preprocessing -> frozen backbone in `precision`
    -> [inner layer] -> pooling -> (n, D) float32

It owns the three checks that keep features comparable: the sizes (the
backbone's minimum, a model file's fixed input), the weights (a weights file
or model file must have the SHA-256 the cache recorded), and the model file
itself (loaded with `safe_mode=True`, so a file that needs custom code is
refused).

The backbone is a name from `featurecache.backbones.BACKBONES` or the path of
a `.keras` file. A model file's contract: it takes RGB pixels as floats in
0..255, shape (N, H, W, 3), does its own preprocessing, and returns (N, D)
or a feature map (N, h, w, C) that `pooling` reduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurecache.backbones import BACKBONES, POLICIES, POOLINGS
from featurecache.errors import SettingError, UserError, reason
from featurecache.files import sha256
from featurecache.runtime import OV_PRECISIONS, identity_runtime

FILE_DEFAULT_SIZE = 224  # a model file without a fixed input size runs at this size unless told otherwise


def is_model_file(backbone: str) -> bool:
    """True when `backbone` names a Keras model file rather than a table entry."""
    return backbone not in BACKBONES and (backbone.endswith(".keras") or Path(backbone).exists())


def check_backbone(backbone: str) -> str:
    """A table name as is, a model file as its absolute path; anything else is the user's mistake."""
    if backbone in BACKBONES:
        return backbone
    path = Path(backbone).expanduser()
    if not path.exists():
        raise SettingError(f"backbone={backbone!r} is neither a known backbone ({', '.join(sorted(BACKBONES))}) "
                           "nor an existing .keras model file; pass one of those names or the path of a .keras file")
    if not path.is_file() or path.suffix != ".keras":
        raise SettingError(f"backbone={backbone!r} is not a Keras model file (.keras); save the model with "
                           "model.save('name.keras') or pass a known backbone name")
    return str(path.resolve())


def check_weights(weights: str, backbone: str) -> str:
    """`weights` as given, or a weights file's absolute path; a missing file is the user's mistake."""
    if is_model_file(backbone):
        if weights not in ("imagenet", "file"):
            raise SettingError(f"weights={weights!r} does not apply to a model file: {backbone} brings its own "
                               "weights; leave `weights` out")
        return "file"
    if weights in ("imagenet", "none"):
        return weights
    if not Path(weights).is_file():
        raise SettingError(f"weights={weights!r} is not a file; pass imagenet, none, or the path to a {backbone} "
                           "weights file")
    return str(Path(weights).resolve())


@dataclass(frozen=True)
class Sizes:
    model: int   # px the backbone runs at
    input: int   # px of the uint8 pixels fed in (resized to `model` inside the graph)


class Extractor:
    """Pixels to features for one backbone setting; call it on (n, input_size, input_size, 3) uint8."""

    def __init__(self, backbone: str = "vgg16", pooling: str = "gap", image_size: int | None = None,
                 weights: str = "imagenet", seed: int = 0, precision: str = "float32",
                 feature_layer: str | None = None, native_size: int | None = None,
                 expect_sha256: dict[str, str] | None = None, allow_weights_mismatch: bool = False,
                 runtime: str = "tensorflow"):
        """`native_size`: the size the image source delivers (CIFAR-10: 32); None feeds pixels already at the
        model's size. `expect_sha256`: {"weights": hex, "backbone": hex} recorded by a cache; a file whose
        digest differs is refused unless `allow_weights_mismatch`. `runtime`: tensorflow or openvino
        (`featurecache.runtime.resolve_runtime` turns auto into one of them)."""
        if pooling not in POOLINGS:
            raise SettingError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        if precision not in POLICIES:
            raise SettingError(f"precision={precision!r} is not one of {', '.join(POLICIES)}")
        if runtime not in ("tensorflow", "openvino"):
            raise SettingError(f"runtime={runtime!r} is not one of tensorflow, openvino")
        if runtime == "openvino" and precision not in OV_PRECISIONS:
            raise SettingError(f"precision={precision!r} runs on TensorFlow only; pass runtime='tensorflow' "
                               f"or precision={' or '.join(map(repr, OV_PRECISIONS))}")
        self.runtime = runtime
        self.batch_size: int | None = None  # OpenVINO compiles for a batch size: set it before the first call
        self.threads: int | None = None     # OpenVINO's threads (None: every core)
        self._runners: dict = {}
        self.backbone = check_backbone(backbone)
        self.from_file = self.backbone not in BACKBONES
        self.pooling, self.seed, self.precision = pooling, int(seed), precision
        self.feature_layer = feature_layer or None
        self.weights = check_weights(weights, self.backbone)
        self.weights_sha256 = sha256(self.weights) if self.weights not in ("imagenet", "none", "file") else ""
        self.backbone_sha256 = sha256(self.backbone) if self.from_file else ""
        for kind, have in (("weights", self.weights_sha256), ("backbone", self.backbone_sha256)):
            want = (expect_sha256 or {}).get(kind)
            if want and have and want != have and not allow_weights_mismatch:
                what = self.weights if kind == "weights" else self.backbone
                raise UserError(
                    f"{what} has SHA-256 {have[:16]}..., but the cache was made with {want[:16]}...: its features "
                    "would differ from the cache's; restore the original file, re-extract with this one, "
                    "or pass --allow-weights-mismatch if you know they are equivalent")
        self._asked_size = image_size
        self._native_size = native_size
        self._model = None
        self._call = None
        self._sizes: Sizes | None = None
        self.model_name = BACKBONES[self.backbone].constructor if not self.from_file else ""

    # ------------------------------------------------------------------ construction from a cache

    @classmethod
    def from_cache(cls, attrs: dict, allow_weights_mismatch: bool = False, runtime: str = "tensorflow",
                   keras: bool = False) -> "Extractor":
        """The extractor that made a cache, from its attributes, with the weights and model file checked.

        `runtime` (auto, tensorflow, openvino) applies as asked to a float32 cache; a cache computed in
        another precision runs on the runtime that made it, whose rounding its features hold (asking for
        another is one UserError). `keras`: TensorFlow whatever made the cache, for gradients and export."""
        runtime = "tensorflow" if keras else cache_runtime(attrs, runtime)
        backbone = attrs.get("backbone_file") or attrs["backbone"]
        weights = attrs.get("weights", "imagenet")
        if weights not in ("imagenet", "none", "file") and not Path(weights).is_file():
            raise UserError(f"the cache was made with the weights file {weights}, which is gone; "
                            "restore that file to use this cache's settings")
        if attrs.get("backbone_file") and not Path(backbone).is_file():
            raise UserError(f"the cache was made with the model file {backbone}, which is gone; "
                            "restore that file to use this cache's settings")
        native = 32 if attrs.get("data_kind") == "cifar10" else None
        return cls(backbone, attrs["pooling"], int(attrs["image_size"]), weights, int(attrs.get("seed", 0)),
                   attrs.get("precision", "float32"), attrs.get("feature_layer") or None, native_size=native,
                   expect_sha256={"weights": attrs.get("weights_sha256", ""),
                                  "backbone": attrs.get("backbone_sha256", "")},
                   allow_weights_mismatch=allow_weights_mismatch, runtime=runtime)

    def feed(self, native_size: int | None) -> None:
        """Say the size the image source delivers (before the model is built); None: the model's size."""
        assert self._model is None, "feed() comes before the model is built"
        self._native_size, self._sizes = native_size, None

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        """Short name for cache files: the table name, or a model file's stem."""
        return self.backbone if not self.from_file else Path(self.backbone).stem

    @property
    def sizes(self) -> Sizes:
        """Model and input sizes; a model file's fixed input size is read from the file (it loads the model)."""
        if self._sizes is None:
            if self.from_file:
                fixed = self._file_input_size()
                size = self._asked_size or fixed or FILE_DEFAULT_SIZE
                if fixed and size != fixed:
                    raise SettingError(f"{self.backbone} takes {fixed} px images only; leave `image_size` out or "
                                       f"pass image_size={fixed}", setting="image_size")
            else:
                size = max(self._asked_size or 32, BACKBONES[self.backbone].min_size)
            self._sizes = Sizes(size, self._native_size or size)
        return self._sizes

    @property
    def image_size(self) -> int:
        """The size asked for, as recorded in the cache (a table backbone may run larger: see `sizes`)."""
        if self.from_file:
            return self.sizes.model
        return self._asked_size or 32

    def identity(self) -> dict:
        """The attributes that define this extractor's features, for a cache's identity."""
        return {
            "backbone": self.name,
            "pooling": self.pooling,
            "image_size": self.image_size,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "backbone_sha256": self.backbone_sha256,
            "feature_layer": self.feature_layer or "",
            "seed": self.seed,
            "precision": self.precision,
            "precision_runtime": identity_runtime(self.runtime, self.precision),
        }

    def record(self) -> dict:
        """Identity plus what helps a reader: the model file's path and name, the model size."""
        return {**self.identity(), "backbone_file": self.backbone if self.from_file else "",
                "model_name": self.model_name, "model_size": self.sizes.model, "runtime": self.runtime}

    # ------------------------------------------------------------------ the model

    @property
    def model(self):
        """The Keras model: (n, input, input, 3) uint8 -> (n, D) float32. Built on first use."""
        if self._model is None:
            self._model = self._build()
        return self._model

    @property
    def feature_dim(self) -> int:
        return int(np.prod(self.model.output_shape[1:]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, input_size, input_size, 3) uint8 -> (n, D) float32, one traced graph for every batch size
        (OpenVINO: one compiled model, for `batch_size` or the first call's batch)."""
        if self.runtime == "openvino":
            return self._runner("main", self.model, len(images))(images)
        if self._call is None:
            from featurecache.tfimport import tensorflow

            tf, model, size = tensorflow(), self.model, self.sizes.input

            @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)], reduce_retracing=True)
            def run(batch):
                return model(batch, training=False)

            self._call = run
        return self._call(images).numpy()

    def views(self, images: np.ndarray, seeds: np.ndarray, settings) -> np.ndarray:
        """Features of one augmented view of each image: (n, input, input, 3) uint8 and (n, 2) int32
        seeds (`featurecache.augment.view_seeds`) -> (n, D) float32.

        The `settings.ops` Keras layers run with `training=True` in the same traced graph as the resize
        and the backbone's preprocessing, after the resize (so a flip mirrors what the backbone sees)
        and before the preprocessing (colour jitter works on 0..255 pixels)."""
        from featurecache import augment

        key = settings.identity()["augment"], settings.rotate_degrees
        if getattr(self, "_view_calls", None) is None:
            self._view_calls = {}
        if key not in self._view_calls:
            from featurecache.tfimport import keras, tensorflow

            tf, k, size = tensorflow(), keras(), self.sizes.input
            self.model  # builds the stages
            pixels, features = self._stages
            aug_layers = augment.layers(k, settings)

            @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8),
                                          tf.TensorSpec([None, 2], tf.int32)], reduce_retracing=True)
            def run(batch, pairs):
                x = augment.augment_images(k, aug_layers, pixels(batch), pairs)
                return x if self.runtime == "openvino" else features(x)  # OpenVINO runs the rest below

            self._view_calls[key] = run
        out = self._view_calls[key](images, seeds).numpy()
        if self.runtime == "openvino":
            out = self._runner("features", self._features_model(), len(images))(out)
        return out

    def _features_model(self):
        """The graph after the augmentation as a Keras model: float32 pixels at the model's size -> (n, D)."""
        from featurecache.tfimport import keras

        k, m = keras(), self.sizes.model
        self.model  # builds the stages
        pixels = k.Input((m, m, 3), dtype="float32", name="pixels")
        return k.Model(pixels, self._stages[1](pixels), name=f"{self.name}_features_{m}")

    def _runner(self, stage: str, model, rows: int):
        """The OpenVINO runner of one stage ("main": the whole graph, "features": after the augmentation),
        converted once per process and compiled on first use."""
        if stage not in self._runners:
            from featurecache.runtime import OpenVinoRunner, convert

            key = (tuple(sorted(self.record().items())), self.sizes.input, stage)
            self._runners[stage] = OpenVinoRunner(convert(model, key), self.precision, self.batch_size or rows,
                                                   self.threads)
        return self._runners[stage]

    def _file_input_size(self) -> int | None:
        shape = self._load_file().input_shape
        h, w = shape[1], shape[2]
        if h and w and h != w:
            raise UserError(f"{self.backbone} takes {h}x{w} images; featurecache feeds square images only")
        return h or None

    def _load_file(self):
        if getattr(self, "_loaded", None) is None:
            from featurecache.tfimport import keras

            k = keras()
            try:
                model = k.saving.load_model(self.backbone, safe_mode=True, compile=False)
            except Exception as e:  # noqa: BLE001 - every way a file can fail to load is one user-facing line
                why = reason(e, 120)
                custom = any(w in str(e) for w in ("custom", "Could not locate", "deserializ", "safe_mode", "lambda"))
                raise UserError(
                    f"{self.backbone} cannot be loaded as a Keras model"
                    + (" without custom code" if custom else "") + f" ({why}); pass a .keras file of standard "
                    "Keras layers saved with model.save()") from None
            if not isinstance(model, k.Model):
                raise UserError(f"{self.backbone} holds a {type(model).__name__}, not a Keras model")
            shape = model.input_shape if not isinstance(model.input_shape, list) else None
            if shape is None or len(shape) != 4 or shape[-1] != 3:
                raise UserError(f"{self.backbone} takes input of shape {model.input_shape}, not (N, H, W, 3) "
                                "RGB images; pass a model whose input is a batch of images")
            self._loaded = model
            self.model_name = model.name
        return self._loaded

    def _base(self, k, size: int):
        """The backbone up to its feature output, in `self.precision`, frozen."""
        # OpenVINO gets the float32 graph and computes it in the precision its compile hint names
        policy = POLICIES[self.precision] if self.runtime == "tensorflow" else "float32"
        if self.from_file:
            base = self._load_file()
            if policy != "float32":
                base = _with_policy(k, base, policy)
            preprocess = None
        else:
            spec = BACKBONES[self.backbone]
            if self.weights == "none":
                k.utils.set_random_seed(self.seed)
            previous = k.config.dtype_policy()
            k.config.set_dtype_policy(policy)
            try:
                base = getattr(k.applications, spec.constructor)(
                    include_top=False, weights=None if self.weights == "none" else self.weights,
                    input_shape=(size, size, 3),
                    pooling="avg" if self.pooling == "gap" and not self.feature_layer else None)
            except Exception as e:  # noqa: BLE001 - classified below into the user's two possible mistakes
                why = reason(e, 160)
                if self.weights == "imagenet":
                    raise SettingError(
                        f"could not get the ImageNet weights for {self.backbone} ({why}); put {spec.weights_file} "
                        "in ~/.keras/models/, pass weights=PATH to a local copy, or weights='none' for random weights",
                        setting="weights"
                    ) from None
                raise SettingError(
                    f"weights={self.weights!r} does not fit {self.backbone} without its top ({why}); "
                    f"pass a {self.backbone} weights file without its top, such as {spec.weights_file}",
                    setting="weights") from None
            finally:
                k.config.set_dtype_policy(previous)
            preprocess = getattr(k.applications, spec.module).preprocess_input
        if self.feature_layer:
            try:
                layer = base.get_layer(self.feature_layer)
            except ValueError:
                names = [layer.name for layer in base.layers]
                raise SettingError(f"feature_layer={self.feature_layer!r} is not a layer of {self.name}; its last "
                                   f"layers are {', '.join(names[-6:])}") from None
            base = k.Model(base.inputs, layer.output, name=f"{base.name}_{self.feature_layer}")
        base.trainable = False
        return base, preprocess

    def _build(self):
        from featurecache.tfimport import keras

        k = keras()
        sizes = self.sizes
        base, preprocess = self._base(k, sizes.model)
        rank = len(base.output_shape)
        if rank not in (2, 4):
            raise SettingError(f"{self.name} returns features of shape {base.output_shape}; a backbone must return "
                               "(N, D) or a feature map (N, h, w, C): pick another `feature_layer`",
                               setting="feature_layer")
        resize = (k.layers.Resizing(sizes.model, sizes.model, interpolation="bilinear", name="resize")
                  if sizes.input != sizes.model else None)
        pool = None
        if rank == 4:
            pool = (k.layers.GlobalAveragePooling2D(name="gap") if self.pooling == "gap"
                    else k.layers.Flatten(name="flatten"))

        def pixels(images):
            """uint8 (n, input, input, 3) -> float32 (n, model, model, 3) in 0..255."""
            x = k.ops.cast(images, "float32")
            # resize inside the graph: only native-size pixels are fed (and cross the bus on a GPU)
            return resize(x) if resize is not None else x

        def features(x):
            """float32 pixels at the model's size -> (n, D) float32 whatever the compute precision."""
            if preprocess is not None:
                x = preprocess(x)
            x = base(x, training=False)
            if pool is not None:
                x = pool(x)
            return k.ops.cast(x, "float32")

        self._stages = (pixels, features)  # augmented views run between the two (`views`)
        inputs = k.Input((sizes.input, sizes.input, 3), dtype="uint8", name="images")
        return k.Model(inputs, features(pixels(inputs)), name=f"{self.name}_{self.pooling}_{sizes.model}")


def cache_runtime(attrs: dict, runtime: str) -> str:
    """The runtime that reproduces a cache's features: as asked in float32, the cache's own otherwise."""
    from featurecache.runtime import resolve_runtime

    precision = attrs.get("precision", "float32")
    if precision == "float32":
        return resolve_runtime(runtime)
    made = attrs.get("runtime") or "tensorflow"  # caches from before the runtime was recorded: TensorFlow
    if runtime not in ("auto", made):
        raise UserError(f"the cache was computed in {precision} on {made}, whose rounding its features hold; "
                        f"pass --runtime {made} (or auto), or re-extract the cache with --precision float32")
    return resolve_runtime(made)


def _with_policy(k, model, policy: str):
    """A copy of a loaded functional model whose layers compute in `policy` (variables stay float32)."""
    def clone(layer):
        config = layer.get_config()
        config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = k.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as e:  # noqa: BLE001 - a model that cannot be cloned runs as it was saved
        raise SettingError(f"cannot run {model.name} in {policy} ({reason(e, 80)}); pass precision='float32'",
                           setting="precision") from None
    return copy
