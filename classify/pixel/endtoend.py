"""The end-to-end model of a saved run: uint8 pixels -> class probabilities, as one Keras model.

A run's classifier sees cached features; robustness attacks and deployment need the whole
path from pixels. This module joins the two halves a run already has:

    uint8 (n, s, s, 3) -> the cache's extractor graph (resize, preprocess_input, frozen backbone
    in the cache's precision, pooling; `Extractor.from_cache`) -> (n, D) float32
    -> the run's head in float32 -> (n, C) probabilities

The heads: LR becomes one Dense layer whose kernel and bias have the standardisation folded in
(z = ((x - mean) / scale) @ coef.T + b = x @ (coef / scale).T + (b - coef @ (mean / scale))),
then a softmax; scikit-learn's binary case (one coefficient row) becomes the two logits (0, z),
whose softmax is the sigmoid it uses. The MLP is its saved Keras model, with its last layer's
softmax split off so that its logits can be taken. A random forest has no Keras form: its
`EndToEnd` scores through the extractor and the saved node arrays, and has no gradient.

`twin()` is the float version for attacks: float32 pixels in 0..255 -> logits, all in float32,
sharing the weights of the scoring model (a float32 copy of the backbone where the cache ran in
bfloat16 or float16), so gradients exist and are not rounded away.

TensorFlow is imported only when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from classify.runs.saved import SavedRun
from classify.training.specs import spec_for_format
from featurecache.errors import UserError

def head_logits(run: SavedRun, k, dim: int):
    """The run's head as a Keras model: (n, D) float32 features -> (n, C) float32 logits, built by its
    model's spec (`ModelSpec.keras_head`); a model without one has no gradient and no Keras form."""
    spec = spec_for_format(run.record.model_format)
    if spec is None or spec.keras_head is None:
        raise UserError(f"{run.path} is a {run.record.model} run, which has no gradient and no Keras form; "
                        "use an lr or mlp run of the same cache")
    features = k.Input((dim,), dtype="float32", name="features")
    logits = spec.keras_head(run.model_path, len(run.class_names), features, k)
    return k.Model(features, logits, name=f"{run.record.model}_head")


@dataclass
class EndToEnd:
    """One run from pixels: `proba(uint8 images)`, `model` (Keras, None for a forest), `twin()` for gradients."""

    run: SavedRun
    extractor: object                 # featurecache.extractor.Extractor of the run's cache
    model: object | None              # uint8 (n, s, s, 3) -> (n, C) float32 probabilities, cache precision
    head: object | None               # (n, D) -> (n, C) logits, float32
    _calls: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.extractor.sizes.input

    @property
    def differentiable(self) -> bool:
        return self.model is not None

    def proba(self, images: np.ndarray) -> np.ndarray:
        """(n, s, s, 3) uint8 -> (n, C) probabilities, scored as the run scores: the cache's precision."""
        images = np.asarray(images, dtype=np.uint8)
        if self.model is None:
            return np.asarray(self.run.predict_proba(self.extractor(images)))
        if "proba" not in self._calls:
            from featurecache.tfimport import tensorflow

            tf, model, s = tensorflow(), self.model, self.input_size

            @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8)], reduce_retracing=True)
            def run(batch):
                return model(batch, training=False)

            self._calls["proba"] = run
        return self._calls["proba"](images).numpy()

    def twin(self):
        """float32 pixels (n, s, s, 3) in 0..255 -> (n, C) logits, every layer in float32, weights shared."""
        if "twin" in self._calls:
            return self._calls["twin"]
        if self.model is None:
            raise UserError(f"{self.run.path} is a {self.run.record.model} run, which has no gradient to attack "
                            "with; use an lr or mlp run of the same cache")
        from featurecache.tfimport import keras

        features = float_backbone(self.extractor, self.run.cache_attrs)
        twin = keras().Model(features.input, self.head(features.output), name="float_twin")
        self._calls["twin"] = twin
        return twin

    def loss_gradient(self, pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """d(cross-entropy)/d(pixels) through the float32 twin; (n, s, s, 3) float32."""
        if "grad" not in self._calls:
            from featurecache.tfimport import tensorflow

            tf, twin, s = tensorflow(), self.twin(), self.input_size

            @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32), tf.TensorSpec([None], tf.int64)],
                         reduce_retracing=True)
            def grad(x, y):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, twin(x, training=False)))
                return tape.gradient(loss, x)

            self._calls["grad"] = grad
        return self._calls["grad"](np.asarray(pixels, dtype=np.float32), np.asarray(labels, dtype=np.int64)).numpy()


def float_backbone(extractor, cache_attrs: dict):
    """The extractor's graph as a float32 Keras model: float32 pixels (n, s, s, 3) in 0..255 -> (n, D) features,
    every layer in float32 (a float32 copy of the backbone where the cache ran in bfloat16 or float16), weights
    shared, so gradients with respect to the pixels exist and are not rounded away."""
    from featurecache.extractor import Extractor
    from featurecache.tfimport import keras

    k = keras()
    ext = extractor
    if ext.precision != "float32":
        f32 = Extractor.from_cache({**cache_attrs, "precision": "float32"}, allow_weights_mismatch=True)
        f32.model.set_weights(ext.model.get_weights())  # variables are float32 under mixed policies: same values
        ext = f32
    size = extractor.sizes.input
    pixels = k.Input((size, size, 3), dtype="float32", name="pixels")
    # the extractor's graph with a float input in place of its uint8 one (the uint8 cast would cut the gradient)
    return k.models.clone_model(ext.model, input_tensors=pixels, clone_function=lambda layer: layer)


def build(run: SavedRun, allow_weights_mismatch: bool = False) -> EndToEnd:
    """The run's end-to-end model on its cache's extractor (weights and model files checked against the cache)."""
    from featurecache.extractor import Extractor

    extractor = Extractor.from_cache(run.cache_attrs, allow_weights_mismatch, keras=True)  # gradients: TensorFlow
    spec = spec_for_format(run.record.model_format)
    if spec is None or spec.keras_head is None:   # no Keras form: scored through the saved arrays
        return EndToEnd(run, extractor, None, None)
    from featurecache.tfimport import keras

    k = keras()
    s = extractor.sizes.input
    head = head_logits(run, k, extractor.feature_dim)
    images = k.Input((s, s, 3), dtype="uint8", name="images")
    probs = k.layers.Activation("softmax", dtype="float32", name="probabilities")(head(extractor.model(images)))
    model = k.Model(images, probs, name=f"{run.record.run_id or 'run'}_end_to_end")
    return EndToEnd(run, extractor, model, head)
