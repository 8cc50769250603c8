"""Adversarial training of a classifier head through the frozen backbone (`classify --adversarial fgsm|pgd`).

The head (the LR as one softmax layer on standardised features, or the MLP) is trained on the cached
features of the fit images and their views, as plain training does; every --adv-every epochs the
fit images' pictures (read back from the cache's sources, training split only) are attacked in pixel
space against the end-to-end model as it stands (frozen float32 backbone + the current head;
`classify.pixel.gradients.PixelAttack`), and the attacked pictures' features come out of the same
traced call. Those features are kept (one (n_fit, D) float32 array) until the next regeneration; in
each batch a share --adv-ratio of the rows is replaced by the kept adversarial twin of its image
(a view's twin is its image's). The backbone runs only at regenerations: (steps + 1) passes per fit
image for PGD, 2 for FGSM.

The LR head: Normalization (the fit rows' mean and variance) -> Dense(C) with softmax, L2 penalty
1 / (2 C n) on the kernel (scikit-learn's objective per row), trained by the MLP's optimizer
(--learning-rate, --decay-*) for --epochs in batches of --batch-size; saved in the linear format,
so predict, export and robustness read it as any LR run. The MLP: `classify.training.mlp.build_mlp`,
saved as a Keras archive. Both run every epoch (no early stopping: adversarial examples make the
validation loss jump at each regeneration) and keep the last weights.

With --adv-ratio 0 no batch changes and nothing is attacked: the run is plain training, the same model,
file names and numbers (`active` is False and the train path never comes here).

Validation and test rows are never attacked nor read as pictures here. TensorFlow is imported only
when a model is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from featurecache.errors import UserError
from featurecache.progress import progress

METHODS = ("fgsm", "pgd")
HEADS = ("lr", "mlp")
REGEN_BATCH = 100   # images attacked per traced call


@dataclass(frozen=True)
class AdversarialSettings:
    method: str            # fgsm | pgd
    eps: float             # L-infinity budget in pixel values out of 255
    steps: int             # PGD steps (FGSM: one)
    ratio: float           # share of each batch replaced by adversarial twins
    every: int             # epochs between regenerations against the current head

    @property
    def step_size(self) -> float:
        return self.eps if self.method == "fgsm" else 2.5 * self.eps / self.steps

    def record(self) -> dict:
        """What the run record keeps under "adversarial" (and the run's digest covers)."""
        return {"method": self.method, "eps": self.eps, "eps_units": "pixel values out of 255, L-infinity",
                "steps": self.steps if self.method == "pgd" else 1, "step_size": self.step_size,
                "random_start": self.method == "pgd", "ratio": self.ratio, "every": self.every}

    def name_part(self) -> str:
        """The readable part of the run's file names: adv-pgd5-eps2-r0.5-every5."""
        steps = str(self.steps) if self.method == "pgd" else ""
        return f"adv-{self.method}{steps}-eps{self.eps:g}-r{self.ratio:g}-every{self.every}"


def settings_of(cfg) -> AdversarialSettings | None:
    """The adversarial settings a ClassifyConfig asks for, or None when training is plain (no --adversarial,
    or --adv-ratio 0)."""
    if not cfg.adversarial or cfg.adv_ratio == 0:
        return None
    return AdversarialSettings(cfg.adversarial, float(cfg.adv_eps), int(cfg.adv_steps), float(cfg.adv_ratio),
                               int(cfg.adv_every))


def check(cfg, attrs: dict) -> None:
    """Refuse, before anything is fitted, adversarial settings this run cannot use (one line each)."""
    if not cfg.adversarial:
        return
    if cfg.adversarial not in METHODS:
        raise UserError(f"adversarial={cfg.adversarial!r} is not one of {', '.join(METHODS)}")
    if not (0 < cfg.adv_eps <= 255):
        raise UserError(f"adv_eps={cfg.adv_eps:g} is outside (0, 255] (pixel values out of 255); pass e.g. 2")
    if not (0 <= cfg.adv_ratio <= 1) or cfg.adv_steps < 1 or cfg.adv_every < 1:
        raise UserError("adv_ratio must be in 0..1, adv_steps and adv_every at least 1")
    if cfg.adv_ratio == 0:
        return
    if cfg.model not in HEADS:
        raise UserError(f"adversarial training needs a head with a gradient (lr or mlp), not model={cfg.model!r}")
    if cfg.model == "lr" and cfg.C == "auto":
        raise UserError("adversarial training of the LR head takes one C, not C='auto'; pass a number, e.g. 0.01")
    if not attrs.get("data_kind") or not attrs.get("data_location"):
        raise UserError("the cache does not record where its images came from, and adversarial training attacks "
                        "the pictures; re-extract it with the current extract")


# --------------------------------------------------------------------------- the head


def build_head(keras, dim: int, n_classes: int, mean: np.ndarray, var: np.ndarray, n_fit: int, cfg):
    """The trainable head, ending in Dense + softmax: the MLP of `build_mlp`, or the LR as one such layer."""
    from classify.training.mlp import build_mlp

    if cfg.model == "mlp":
        return build_mlp(keras, dim, n_classes, mean, var, cfg)
    l2 = 1.0 / (2.0 * float(cfg.C) * n_fit)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Normalization(mean=mean, variance=var),
                             keras.layers.Dense(n_classes, activation="softmax",
                                                kernel_regularizer=keras.regularizers.L2(l2))], name="lr_head")


def linear_weights(model, n_classes: int) -> dict:
    """The LR head as the arrays `saved.save_linear` writes (coef on standardised features, as scikit-learn's)."""
    norm, dense = model.layers[0], model.layers[-1]
    kernel, bias = dense.get_weights()
    return {"coef": kernel.T.astype(np.float64), "intercept": bias.astype(np.float64),
            "classes": np.arange(n_classes), "mean": np.asarray(norm.mean, np.float64).reshape(-1),
            "scale": np.sqrt(np.asarray(norm.variance, np.float64).reshape(-1))}   # zeros were set to 1


def trained_of(model, cfg, n_classes: int, history: dict, details: dict):
    """The Trained of a head: LR in the linear format, the MLP as its Keras model."""
    from classify.runs import saved
    from classify.runs.trained import Trained
    from classify.training.lr import linear_trained

    if cfg.model == "lr":
        return linear_trained(linear_weights(model, n_classes), n_classes, history, details)
    return Trained(predict_proba=lambda X: np.asarray(model.predict(np.asarray(X, np.float32), batch_size=4096,
                                                                    verbose=0)),
                   save=lambda path: saved.save_keras(path, model), format="keras", history=history, details=details)


# --------------------------------------------------------------------------- pictures and regeneration


def read_pixels(attrs: dict, sources, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8: the pictures behind training rows, decoded as extract decoded them."""
    from featurecache.images import source_image

    try:
        return np.stack([source_image(str(attrs["data_kind"]), str(attrs["data_location"]), str(s), size)
                         for s in sources])
    except (OSError, ValueError) as e:
        raise UserError(f"the training pictures behind the cache are not readable at {attrs['data_location']} "
                        f"({str(e)[:100]}); restore them, or train without adversarial examples") from None


def regenerate(attack, pixels: np.ndarray, labels: np.ndarray, adv: AdversarialSettings,
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Adversarial twins of `pixels` against the attack's current head: their features (n, D) float32, and
    {"max_linf", "min_pixel", "max_pixel", "fooled"} of the attacked pictures."""
    feats, worst, lo, hi, fooled = [], 0, 255, 0, 0
    for start in range(0, len(labels), REGEN_BATCH):
        x, y = pixels[start:start + REGEN_BATCH], labels[start:start + REGEN_BATCH]
        if adv.method == "fgsm":
            out = attack.fgsm(x, y, [adv.eps])
            images, f, pred = out["images"][0], out["features"][0], out["pred"][0]
        else:
            out = attack.pgd(x, y, adv.eps, adv.steps, adv.step_size, rng)
            images, f, pred = out["images"], out["features"], out["pred"]
        worst = max(worst, int(np.abs(images.astype(np.int16) - x.astype(np.int16)).max()))
        lo, hi = min(lo, int(images.min())), max(hi, int(images.max()))
        fooled += int((pred != y).sum())
        feats.append(f)
    return np.concatenate(feats).astype(np.float32), {"max_linf": worst, "min_pixel": lo, "max_pixel": hi,
                                                       "fooled": fooled / len(labels)}


# --------------------------------------------------------------------------- training


def mixed_batch(X_fit, rows, image_of_row, adv_features, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """The batch's feature rows with round(ratio * b) of them (drawn) replaced by their image's adversarial twin."""
    xb = X_fit[rows].copy()
    k = int(round(ratio * len(rows)))
    if adv_features is not None and k:
        swap = rng.choice(len(rows), size=k, replace=False)
        xb[swap] = adv_features[image_of_row[rows[swap]]]
    return xb


def train_steps(tf, model, opt, logits_of, dim: int):
    """One traced training step on a (b, D) batch, and one traced scoring of (n, D) rows (clean val loss)."""
    spec = [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int64)]

    @tf.function(input_signature=spec)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = logits_of(x, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            loss = ce + tf.add_n([tf.constant(0.0)] + model.losses)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return ce, tf.reduce_mean(tf.cast(tf.argmax(logits, 1) == y, tf.float32))

    @tf.function(input_signature=spec)
    def score(x, y):
        logits = logits_of(x, training=False)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return ce, tf.reduce_mean(tf.cast(tf.argmax(logits, 1) == y, tf.float32))

    return step, score


def fit_adversarial(cache, cfg, rows, X_fit: np.ndarray, y_fit: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                    adv: AdversarialSettings):
    """Train cfg.model's head on X_fit (the fit images' originals, then their views, image-major, as
    `classify.training.data.fit_rows` lays them out), with adversarial twins of the fit images mixed in;
    the Trained that the train path saves and scores."""
    head = train_head(cache, cfg, rows.fit, (X_fit, y_fit), (X_val, y_val), adv)
    return trained_of(head.model, cfg, len(cache.class_names), head.history, head.details)


@dataclass
class Head:
    """A head trained adversarially: its Keras model, the attack it was trained against (backbone + this head,
    already traced: evaluating it attacks the model itself without tracing again), its curves and details."""

    model: object
    attack: object          # classify.pixel.gradients.PixelAttack
    history: dict
    details: dict


def train_head(cache, cfg, fit_images: np.ndarray, fit: tuple, val: tuple, adv: AdversarialSettings,
               backbone=None) -> Head:
    """The trained head (`Head`): `fit_images` are training-split rows, `fit` their
    (X_fit, y_fit) with views, `val` clean validation rows (may be empty); `backbone` a float32 backbone
    of the cache (`classify.pixel.endtoend.float_backbone`), built here when None."""
    from classify.pixel.endtoend import float_backbone
    from classify.pixel.gradients import PixelAttack, keras_head_logits
    from classify.training.mlp import optimizer
    from featurecache.extractor import Extractor
    from featurecache.tfimport import keras as load_keras, tensorflow

    keras, tf = load_keras(), tensorflow()
    keras.utils.set_random_seed(cfg.seed)
    (X_fit, y_fit), n_img, dim = fit, len(fit_images), fit[0].shape[1]
    views = (len(y_fit) - n_img) // n_img   # K views per image after the originals
    image_of_row = np.concatenate([np.arange(n_img), np.repeat(np.arange(n_img), views)])   # (rows,)
    var = X_fit.var(axis=0)
    var[var == 0] = 1.0
    model = build_head(keras, dim, len(cache.class_names), X_fit.mean(axis=0), var, len(y_fit), cfg)
    logits_of = keras_head_logits(model)
    if backbone is None:
        backbone = float_backbone(Extractor.from_cache(cache.attrs, keras=True), cache.attrs)
    attack = PixelAttack(backbone, logits_of)
    pixels = read_pixels(cache.attrs, cache.train.sources[fit_images], attack.size)   # training split only
    img_labels = cache.train.labels[fit_images].astype(np.int64)
    step, score = train_steps(tf, model, optimizer(keras, cfg), logits_of, dim)
    out = run_epochs(cfg, adv, (X_fit, y_fit.astype(np.int64), image_of_row), (val[0], val[1].astype(np.int64)),
                     (attack, pixels, img_labels), step, score)
    details = {"adversarial": {**adv.record(), **out["details"]}, "epochs_run": cfg.epochs}
    details["adversarial"]["regenerated_rows"] = [int(r) for r in fit_images]   # training-split rows, never others
    return Head(model, attack, out["history"], details)


def run_epochs(cfg, adv: AdversarialSettings, fit: tuple, val: tuple, regen: tuple, step, score) -> dict:
    """The epochs: regenerate every adv.every epochs, then one pass of mixed batches; the history of the
    curves (clean validation rows) and what the regenerations did."""
    X_fit, y_fit, image_of_row = fit
    attack, pixels, img_labels = regen
    rng = np.random.default_rng(cfg.seed)
    history = {"x_label": "epoch", "x": [], "train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}
    stats, regen_seconds, adv_features = [], 0.0, None
    with progress("adversarial training", cfg.epochs, "epochs") as bar:
        for epoch in range(cfg.epochs):
            if epoch % adv.every == 0:
                t0 = time.perf_counter()
                adv_features, s = regenerate(attack, pixels, img_labels, adv, rng)
                regen_seconds += time.perf_counter() - t0
                stats.append({"epoch": epoch + 1, **s})
            order = rng.permutation(len(y_fit))
            losses = [step(mixed_batch(X_fit, b, image_of_row, adv_features, adv.ratio, rng), y_fit[b])
                      for b in np.array_split(order, max(1, -(-len(order) // cfg.batch_size)))]
            vl, va = score(*val) if len(val[1]) else (None, None)   # no validation rows: no validation curve
            history["x"].append(epoch + 1)
            for key, value in (("train_loss", np.mean([l[0] for l in losses])), ("train_acc", np.mean([l[1] for l in losses])),
                               ("val_loss", vl), ("val_acc", va)):
                history[key].append(None if value is None else float(value))
            bar.update(1)
    history["chosen"] = cfg.epochs
    history["mark_label"] = f"epoch {cfg.epochs}: the last, whose weights are kept (no early stopping)"
    details = {"regenerations": stats, "regeneration_seconds": round(regen_seconds, 2), "images": len(img_labels),
               "traces": attack.traces,
               "backbone_passes_per_image": len(stats) * ((adv.steps + 1) if adv.method == "pgd" else 2)}
    return {"history": history, "details": details}
