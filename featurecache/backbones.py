"""The backbone table: name -> how to build a frozen, headless Keras application.

Contract of an entry: `constructor` and `module` name a `keras.applications`
model and the module holding its own `preprocess_input`; `min_size` is the
smallest input it accepts (smaller images are resized up to it); `channels` is
its feature width with global average pooling. Adding a backbone is one entry.

TensorFlow/Keras are imported only inside `build_extractor`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from featurecache.errors import UserError, reason
from featurecache.tfimport import keras as _keras


@dataclass(frozen=True)
class Backbone:
    constructor: str    # attribute of keras.applications
    module: str         # keras.applications.<module>.preprocess_input
    min_size: int       # px; Keras refuses smaller inputs
    channels: int       # feature width with --pooling gap
    weights_file: str   # ImageNet no-top weights file Keras downloads to ~/.keras/models/


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG16", "vgg16", 32, 512, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": Backbone("VGG19", "vgg19", 32, 512, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": Backbone("ResNet50", "resnet50", 32, 2048, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "densenet121": Backbone("DenseNet121", "densenet", 32, 1024, "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "xception": Backbone("Xception", "xception", 71, 2048, "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenetv2": Backbone("MobileNetV2", "mobilenet_v2", 32, 1280, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    "efficientnetb0": Backbone("EfficientNetB0", "efficientnet", 32, 1280, "efficientnetb0_notop.h5"),
    "convnext_tiny": Backbone("ConvNeXtTiny", "convnext", 32, 768, "convnext_tiny_notop.h5"),
}

POOLINGS = ("gap", "flatten")
PRECISIONS = ("float32", "bfloat16", "float16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def model_size(backbone: str, image_size: int) -> int:
    """The input size the backbone runs at: the asked size, raised to its minimum."""
    return max(image_size, BACKBONES[backbone].min_size)


def check_weights(weights: str, backbone: str) -> str:
    """`weights` as given, or a weights file's absolute path; a missing file is the user's mistake."""
    if weights in ("imagenet", "none"):
        return weights
    if not Path(weights).is_file():
        raise UserError(f"--weights {weights} is not a file; pass imagenet, none, or the path to a {backbone} weights file")
    return str(Path(weights).resolve())


def build_extractor(
    backbone: str,
    pooling: str,
    input_size: int,
    image_size: int,
    weights: str,
    seed: int = 0,
    precision: str = "float32",
):
    """A Keras model: (n, input_size, input_size, 3) uint8 -> (n, D) float32 features.

    The graph does all per-image work, batch by batch: cast, resize to the
    backbone's size, the backbone's own `preprocess_input`, the frozen
    convolutional base in `precision`, pooling. `weights` is "imagenet",
    "none" (random, repeatable with `seed`) or a path to a weights file.
    """
    keras = _keras()
    spec = BACKBONES[backbone]
    size = model_size(backbone, image_size)
    weights = check_weights(weights, backbone)
    if weights == "none":
        keras.utils.set_random_seed(seed)

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICY[precision])
    try:
        base = getattr(keras.applications, spec.constructor)(
            include_top=False,
            weights=None if weights == "none" else weights,
            input_shape=(size, size, 3),
            pooling="avg" if pooling == "gap" else None,
        )
    except Exception as e:  # noqa: BLE001 - classified below into the user's two possible mistakes
        why = reason(e, 160)
        if weights == "imagenet":
            raise UserError(
                f"could not get the ImageNet weights for {backbone} ({why}); put {spec.weights_file} "
                f"in ~/.keras/models/, pass --weights PATH to a local copy, or --weights none for random weights"
            ) from None
        raise UserError(
            f"--weights {weights} does not fit {backbone} without its top ({why}); "
            f"pass a {backbone} include_top=False weights file such as {spec.weights_file}"
        ) from None
    finally:
        keras.config.set_dtype_policy(previous)
    base.trainable = False

    preprocess = getattr(keras.applications, spec.module).preprocess_input
    inputs = keras.Input((input_size, input_size, 3), dtype="uint8", name="images")
    x = keras.ops.cast(inputs, "float32")
    if input_size != size:
        # resize inside the graph: only native-size pixels are fed (and cross the bus on a GPU)
        x = keras.layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    x = preprocess(x)
    x = base(x, training=False)
    if pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.ops.cast(x, "float32")  # (n, D) float32 whatever the compute precision
    return keras.Model(inputs, outputs, name=f"{backbone}_{pooling}_{size}")


@functools.lru_cache(maxsize=None)
def feature_dim(backbone: str, pooling: str, image_size: int) -> int:
    """Feature width for a backbone, pooling and image size.

    GAP gives `channels`; Flatten gives channels x the final map's area, which
    depends on each architecture's strides and padding, so it is read off the
    built graph (weights=None, no download).
    """
    spec = BACKBONES[backbone]
    if pooling == "gap":
        return spec.channels
    keras = _keras()
    size = model_size(backbone, image_size)
    base = getattr(keras.applications, spec.constructor)(include_top=False, weights=None, input_shape=(size, size, 3))
    h, w, c = base.output_shape[1:]
    return int(h * w * c)
