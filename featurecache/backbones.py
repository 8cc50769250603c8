"""The backbone table: name -> how to build a frozen, headless Keras application.

Contract of an entry: `constructor` and `module` name a `keras.applications`
model and the module holding its own `preprocess_input`; `min_size` is the
smallest input it accepts (smaller images are resized up to it); `channels` is
its feature width with global average pooling. Adding a backbone is one entry;
`featurecache.extractor.Extractor` builds it. No TensorFlow import here.
"""

from __future__ import annotations

from dataclasses import dataclass


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
# compute precision -> Keras dtype policy (variables stay float32 under the mixed policies)
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
