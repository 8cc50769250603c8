"""FGSM and PGD in pixel space, each batch in one traced TensorFlow call: the attack, the rounding to a
real image and the forward pass that gives the attacked image's features and logits.

`PixelAttack(backbone, head)` joins a float32 backbone (float32 pixels (n, s, s, 3) in 0..255 -> (n, D)
features; `classify.pixel.endtoend.float_backbone`) and a head (a callable (n, D) -> (n, C) logits in
TensorFlow, whose variables may change between calls, as they do during adversarial training). Both
functions are traced once per image size: eps, step size and the number of PGD steps are tensors,
so no new eps, step count or batch size traces again.

Per batch, the work is what the attack needs and no more:
    FGSM  one forward+backward at the clean pixels (whose logits are the clean prediction), then one
          forward of all eps's attacked copies at once (their features and logits);
    PGD   `steps` forward+backward passes inside one `tf.while_loop`, then one forward of the rounded
          image, whose features serve adversarial training and whose logits score the attack.
Nothing goes back to numpy between steps.

Every attacked image is kept inside the L-infinity eps-ball around the clean one and inside [0, 255],
then rounded to whole pixel values inside the integer ball (a fractional eps never rounds outward),
as `classify.pixel.attacks.to_image` does.
"""

from __future__ import annotations

import numpy as np


def integer_image(tf, adv, clean, eps):
    """Float adversarial pixels -> whole pixel values within floor(eps) of `clean` and in 0..255 (float32)."""
    r = tf.floor(eps)
    return tf.clip_by_value(tf.round(adv), tf.maximum(clean - r, 0.0), tf.minimum(clean + r, 255.0))


class PixelAttack:
    """Attacks on backbone + head, traced once: `fgsm(images, labels, eps_list)`, `pgd(images, labels, eps,
    steps, step_size, seed)`. Images are uint8 (n, s, s, 3); results are numpy arrays."""

    def __init__(self, backbone, head):
        from featurecache.tfimport import tensorflow

        self.tf = tensorflow()
        self.backbone = backbone      # float32 pixels -> (n, D) float32
        self.head = head              # (n, D) -> (n, C) logits
        s = int(backbone.input.shape[1])
        self.size = s
        self.fgsm_call = self.tf.function(self.fgsm_graph, input_signature=[
            self.tf.TensorSpec([None, s, s, 3], self.tf.float32), self.tf.TensorSpec([None], self.tf.int64),
            self.tf.TensorSpec([None], self.tf.float32)])
        self.pgd_call = self.tf.function(self.pgd_graph, input_signature=[
            self.tf.TensorSpec([None, s, s, 3], self.tf.float32), self.tf.TensorSpec([None], self.tf.int64),
            self.tf.TensorSpec([None], self.tf.float32), self.tf.TensorSpec([], self.tf.int32),
            self.tf.TensorSpec([None], self.tf.float32), self.tf.TensorSpec([None, s, s, 3], self.tf.float32)])
        self.traces = 0   # how many times a graph was traced (tests check it stays at one per function)

    # ------------------------------------------------------------------ the graphs

    def loss_and_grad(self, x, y):
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = self.head(self.backbone(x, training=False))
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return tape.gradient(loss, x), logits

    def fgsm_graph(self, x, y, eps):
        """x (n, s, s, 3) float32, eps (E,) -> attacked (E*n, s, s, 3), features (E*n, D), logits (E*n, C),
        clean logits (n, C); eps-major: rows e*n .. e*n + n - 1 are eps[e]."""
        tf = self.tf
        self.traces += 1
        grad, clean_logits = self.loss_and_grad(x, y)
        e = tf.reshape(eps, [-1, 1, 1, 1, 1])                               # (E, 1, 1, 1, 1)
        clean = tf.broadcast_to(x[None], tf.concat([tf.shape(eps), tf.shape(x)], 0))   # (E, n, s, s, 3)
        adv = integer_image(tf, clean + e * tf.sign(grad)[None], clean, e)
        adv = tf.reshape(adv, tf.concat([[-1], tf.shape(x)[1:]], 0))
        features = self.backbone(adv, training=False)
        return adv, features, self.head(features), clean_logits

    def pgd_graph(self, x, y, eps, steps, step_size, noise):
        """x (n, s, s, 3), eps and step_size per image (n,), noise (n, s, s, 3) in [-1, 1] (the random start,
        scaled by eps) -> attacked (n, s, s, 3), features (n, D), logits (n, C)."""
        tf = self.tf
        self.traces += 1
        e = tf.reshape(eps, [-1, 1, 1, 1])
        a = tf.reshape(step_size, [-1, 1, 1, 1])
        lo, hi = tf.maximum(x - e, 0.0), tf.minimum(x + e, 255.0)
        adv = tf.clip_by_value(x + noise * e, lo, hi)
        for _ in tf.range(steps):
            grad, _ = self.loss_and_grad(adv, y)
            adv = tf.clip_by_value(adv + a * tf.sign(grad), lo, hi)
        adv = integer_image(tf, adv, x, e)
        features = self.backbone(adv, training=False)
        return adv, features, self.head(features)

    # ------------------------------------------------------------------ numpy in, numpy out

    def fgsm(self, images: np.ndarray, labels: np.ndarray, eps) -> dict:
        """FGSM at every eps of `eps` in one call: {"images" (E, n, s, s, 3) uint8, "features" (E, n, D),
        "pred" (E, n), "clean_pred" (n,)}."""
        eps = np.asarray(eps, dtype=np.float32).reshape(-1)
        n = len(labels)
        adv, feats, logits, clean = self.fgsm_call(np.asarray(images, np.float32), np.asarray(labels, np.int64), eps)
        return {"images": adv.numpy().astype(np.uint8).reshape(len(eps), n, *images.shape[1:]),
                "features": feats.numpy().reshape(len(eps), n, -1),
                "pred": logits.numpy().argmax(1).reshape(len(eps), n), "clean_pred": clean.numpy().argmax(1)}

    def pgd(self, images: np.ndarray, labels: np.ndarray, eps, steps: int, step_size=None,
            rng: np.random.Generator | None = None) -> dict:
        """PGD from a uniform random start in the eps-ball (Madry et al.); eps and step_size are one value or one
        per image (step_size None: 2.5 * eps / steps). {"images" (n, s, s, 3) uint8, "features", "pred"}."""
        n = len(labels)
        eps = np.broadcast_to(np.asarray(eps, np.float32), (n,)).copy()
        step = 2.5 * eps / steps if step_size is None else np.broadcast_to(np.asarray(step_size, np.float32), (n,))
        rng = rng or np.random.default_rng(0)
        noise = rng.uniform(-1.0, 1.0, images.shape).astype(np.float32)
        adv, feats, logits = self.pgd_call(np.asarray(images, np.float32), np.asarray(labels, np.int64), eps,
                                           np.int32(steps), np.asarray(step, np.float32), noise)
        return {"images": adv.numpy().astype(np.uint8), "features": feats.numpy(), "pred": logits.numpy().argmax(1)}


def keras_head_logits(model):
    """A Keras classifier whose last layer is Dense with a softmax (the MLP, the LR head) as a callable
    (n, D) -> (n, C) logits: every layer but the last, then the last one's kernel and bias without the softmax."""
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    *body, last = model.layers

    def logits(features, training=False):
        x = features
        for layer in body:
            x = layer(x, training=training)
        return tf.matmul(x, last.kernel) + last.bias

    return logits
