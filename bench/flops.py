"""FLOPs of a Keras model, counted from its own layers.

Convention: one multiply-add is 2 FLOPs; only Conv2D, DepthwiseConv2D and Dense layers are
counted (bias adds, ReLU, pooling and resizing are well under 1% of VGG16 and
are left out, as is usual when quoting GFLOP/s).
"""

from __future__ import annotations


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested Model (the backbone inside our extractor)
            yield from _layers(layer)
        else:
            yield layer


def layer_flops(model) -> list[dict]:
    """[{name, kind, flops}] per Conv2D / Dense layer, for one image."""
    rows = []
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            macs = h * w * c_out * kh * kw * c_in // layer.groups
        elif kind == "DepthwiseConv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs = h * w * c_out * kh * kw
        elif kind == "Dense":
            macs = layer.input.shape[-1] * layer.units
        else:
            continue
        rows.append({"name": layer.name, "kind": kind, "flops": 2 * int(macs)})
    return rows


def model_flops(model) -> int:
    """FLOPs per image of one forward pass."""
    return sum(r["flops"] for r in layer_flops(model))


def vgg16_flops(size: int, pooling: str = "avg") -> int:
    """FLOPs per image of Keras' VGG16 without its top at `size` px (built with no weights)."""
    from featurecache.tfimport import keras

    base = keras().applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3), pooling=pooling)
    return model_flops(base)
