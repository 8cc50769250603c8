"""The Keras MLP: its settings, its fits (in memory; through tf.data when streamed), its model file.

The only part of classify that imports TensorFlow, and only when a fit or a load runs.
Standardisation is the model's first layer (a Normalization layer holding the
training rows' mean and variance), so the saved .keras file predicts from raw
cached features on its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classify.runs import saved
from classify.runs.trained import Trained
from classify.training.modelspec import ModelSpec, check_choice, check_int, check_real
from classify.training.models import check_training_rows, stream_scaler
from featurecache.errors import SettingError, UserError
from featurecache.files import check_writable
from featurecache.progress import progress

if TYPE_CHECKING:
    from classify.training.config import ClassifyConfig

LEARNING_RATES = {"adam": 0.001, "sgd": 0.01}    # the initial learning rate when none is given, per optimizer


@dataclass
class MLPParams:
    # standardised features -> Dense/ReLU/Dropout layers -> softmax
    hidden: tuple[int, ...] = field(default=(512, 256))
    dropout: float = 0.3
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float | None = None   # None: LEARNING_RATES[optimizer]
    decay_steps: int = 1000              # ExponentialDecay: lr * decay_rate ** (step / decay_steps)
    decay_rate: float = 0.9
    optimizer: str = "adam"              # adam | sgd (with momentum). Adam: the same validation accuracy
                                         # as SGD 0.01 on the 6,000-image subset in half the epochs
                                         # (11 vs 22, mean of 3 seeds)
    momentum: float = 0.9                # sgd only
    patience: int = 5                    # early stopping on validation loss, best weights restored
                                         # (and the streamed LR's passes without progress)

    def __post_init__(self) -> None:
        if isinstance(self.hidden, (list, tuple)) and all(isinstance(w, (int, np.integer)) and not isinstance(w, bool)
                                                          for w in self.hidden):
            self.hidden = tuple(int(w) for w in self.hidden)
        if not (isinstance(self.hidden, tuple) and self.hidden and min(self.hidden) >= 1):
            raise UserError(f"hidden={self.hidden!r} is not a tuple of layer widths; pass hidden as positive "
                            "whole numbers such as (512, 256)")
        check_real("dropout", self.dropout, 0, 1, high_open=True)
        for name in ("epochs", "batch_size", "decay_steps", "patience"):
            check_int(name, getattr(self, name))
        check_choice("optimizer", self.optimizer, tuple(LEARNING_RATES))
        if self.learning_rate is None:
            self.learning_rate = LEARNING_RATES[self.optimizer]
        check_real("learning_rate", self.learning_rate, 0, low_open=True)
        check_real("decay_rate", self.decay_rate, 0, 1, low_open=True)
        check_real("momentum", self.momentum, 0, 1, high_open=True)


def build_mlp(keras, dim: int, n_classes: int, mean: np.ndarray, var: np.ndarray, cfg: ClassifyConfig):
    layers = [keras.Input((dim,)), keras.layers.Normalization(mean=mean, variance=var)]
    for width in cfg.hidden:
        layers += [keras.layers.Dense(width, activation="relu"), keras.layers.Dropout(cfg.dropout)]
    layers.append(keras.layers.Dense(n_classes, activation="softmax"))
    return keras.Sequential(layers, name="featurecache_mlp")


def optimizer(keras, cfg: ClassifyConfig):
    schedule = keras.optimizers.schedules.ExponentialDecay(cfg.learning_rate, cfg.decay_steps, cfg.decay_rate)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=cfg.momentum)


def datasets(tf, X_fit, y_fit, X_val, y_val, cfg: ClassifyConfig):
    """Training batches reshuffled every epoch (seeded) and the validation rows, as tf.data pipelines
    built once: `fit` on numpy arrays rebuilds its input pipeline every epoch."""
    train = (tf.data.Dataset.from_tensor_slices((X_fit, y_fit))
             .shuffle(len(y_fit), seed=cfg.seed, reshuffle_each_iteration=True)
             .batch(cfg.batch_size)
             .prefetch(2))
    val = tf.data.Dataset.from_tensor_slices((X_val, y_val)).batch(4096)
    return train, val


def tensorboard_dir(cfg: ClassifyConfig, n_fit: int) -> Path:
    """A fresh folder under --tensorboard for one fit (Keras writes train/ and validation/ in it):
    mlp-<UTC time>-n<rows>-seed<seed>, so `tensorboard --logdir DIR` shows each fit as its own run,
    the points of a learning curve included."""
    try:
        import tensorboard  # noqa: F401 - Keras's callback writes through tf.summary, which needs it
    except ImportError:
        raise SettingError("`tensorboard` needs the tensorboard package, which is not installed: "
                        "pip install -e '.[tracking]' (or `make install`)") from None
    root = check_writable(cfg.tensorboard, "tensorboard")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return root / f"mlp-{stamp}-n{n_fit}-seed{cfg.seed}"


def finite(history: dict, weights: list[np.ndarray]) -> bool:
    """Every loss recorded and every weight kept is a finite number."""
    losses = [v for key in ("loss", "val_loss") for v in history.get(key, [])]
    return (bool(losses) and bool(np.isfinite(losses).all())
            and all(np.isfinite(w).all() for w in weights))


def fit(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """Dense/ReLU/Dropout layers on standardised features, SGD (or Adam) with exponential decay,
    early stopping on validation loss keeping the best weights (`fit_mlp`). Curves are always kept:
    they cost nothing beyond the fit."""
    check_training_rows(y_fit)
    return fit_mlp(X_fit, y_fit, X_val, y_val, n_classes, cfg)


def fit_stream(stream, n_classes: int, cfg: ClassifyConfig, curves: bool = True) -> Trained:
    """The MLP trained through a tf.data pipeline over the cache file (`fit_mlp_stream`), on
    standardisation statistics from one streaming pass."""
    check_training_rows(stream.fit_labels)
    scaler = stream_scaler(stream)
    return fit_mlp_stream(stream, scaler.mean_, scaler.var_, n_classes, cfg)


def fit_mlp(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig) -> Trained:
    """Train with early stopping on validation loss, keeping the best epoch's weights; a run whose
    loss or weights become non-finite stops (TerminateOnNaN) and is refused with a UserError.

    A whole epoch runs as one call into the traced train step (`steps_per_execution`), and the
    input pipelines are built once, not one Python round trip per batch and a pipeline per epoch.
    """
    from featurecache.tfimport import keras as load_keras, tensorflow

    keras, tf = load_keras(), tensorflow()
    keras.utils.set_random_seed(cfg.seed)
    mean = X_fit.mean(axis=0)
    var = X_fit.var(axis=0)
    train, val = datasets(tf, X_fit, y_fit, X_val, y_val, cfg)
    return train_model(keras, train, val, mean, var, len(y_fit), n_classes, cfg)


def stream_datasets(tf, stream, cfg: ClassifyConfig):
    """The training batches and validation rows as tf.data pipelines over the cache file: each pass
    over `train` reads the file a chunk at a time, in a new seeded order, shuffles each chunk and
    cuts batches of --batch-size rows across chunks (`Stream.fit_batches`); memory holds a chunk
    and a few batches (`classify.training.data.stream_layout`), not the matrix."""
    n_fit, dim = len(stream.fit_labels), stream.dim
    passes = iter(range(1 << 62))

    def train_batches():
        yield from stream.fit_batches(cfg.batch_size, seed=cfg.seed + next(passes))

    def val_chunks():
        yield from stream.val_chunks()

    spec = (tf.TensorSpec((None, dim), tf.float32), tf.TensorSpec((None,), tf.int64))
    n_batches = -(-n_fit // cfg.batch_size)   # as in memory: only a pass's last batch is smaller
    train = (tf.data.Dataset.from_generator(train_batches, output_signature=spec)
             .repeat().prefetch(2))   # each pass calls train_batches anew; fit counts n_batches a pass
    val = tf.data.Dataset.from_generator(val_chunks, output_signature=spec)
    return train, val, n_fit, n_batches


def fit_mlp_stream(stream, mean: np.ndarray, var: np.ndarray, n_classes: int, cfg: ClassifyConfig) -> Trained:
    """`fit_mlp` on a cache larger than --max-memory: standardisation statistics from one streaming
    pass (`mean`, `var`), batches from a tf.data pipeline over the file (`stream_datasets`)."""
    from featurecache.tfimport import keras as load_keras, tensorflow

    keras, tf = load_keras(), tensorflow()
    keras.utils.set_random_seed(cfg.seed)
    train, val, n_fit, steps = stream_datasets(tf, stream, cfg)
    trained = train_model(keras, train, val, mean.astype(np.float32), var.astype(np.float32), n_fit, n_classes, cfg,
                          steps=steps)
    trained.details.update(streamed=True, budget_bytes=stream.budget, chunk_rows=stream.chunk,
                           batch_size=cfg.batch_size, held_bytes=stream.held)
    return trained


def train_model(keras, train, val, mean: np.ndarray, var: np.ndarray, n_fit: int, n_classes: int,
                cfg: ClassifyConfig, steps: int | None = None) -> Trained:
    """Build, compile and fit the MLP on tf.data pipelines; the Trained that `fit_mlp` returns."""
    var = np.array(var, copy=True)
    var[var == 0] = 1.0  # constant features (dead ReLUs of random weights) stay 0, not 0/eps
    model = build_mlp(keras, len(mean), n_classes, mean, var, cfg)
    steps_per_epoch = steps   # None: the in-memory pipeline ends each pass itself
    steps = steps or -(-n_fit // cfg.batch_size)
    model.compile(optimizer=optimizer(keras, cfg), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    callbacks = [keras.callbacks.TerminateOnNaN(), stop]
    if cfg.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir(cfg, n_fit))))
    with progress("mlp training", cfg.epochs, "epochs") as bar:  # early stopping may end it before the last
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: bar.update(1)))
        fit = model.fit(train, validation_data=val, epochs=cfg.epochs, callbacks=callbacks, shuffle=False,
                        verbose=0, steps_per_epoch=steps_per_epoch)
    h = fit.history
    if not finite(h, model.get_weights()):
        raise SettingError(f"the MLP's training diverged (its loss or weights became infinite or NaN) at learning_rate="
                           f"{cfg.learning_rate:g}; pass a smaller `learning_rate` (nothing was saved)")
    epochs = len(h["loss"])
    history = {
        "x_label": "epoch", "x": list(range(1, epochs + 1)),
        "train_loss": h["loss"], "val_loss": h["val_loss"],
        "train_acc": h["accuracy"], "val_acc": h["val_accuracy"],
    }
    best = int(np.argmin(h["val_loss"])) + 1   # the epoch EarlyStopping restores the weights of
    history["chosen"] = best
    return Trained(
        predict_proba=lambda X: np.asarray(model.predict(np.asarray(X, dtype=np.float32), batch_size=4096, verbose=0)),
        save=lambda path: saved.save_keras(path, model),
        format="keras",
        history={k: vals if k in ("x_label", "x", "chosen") else [float(v) for v in vals] for k, vals in history.items()},
        details={"epochs_run": epochs, "best_epoch": best, "stopped_early": epochs < cfg.epochs},
    )


# --------------------------------------------------------------------------- model file and Keras head


def load(path: Path, n_classes: int):
    """An MLP model file -> predict_proba (raw features (n, D) -> (n, C)), loaded in safe mode."""
    model = saved.load_keras_model(path)
    return lambda x: np.asarray(model.predict(np.asarray(x, dtype=np.float32), batch_size=1024, verbose=0))


def keras_head(path: Path, n_classes: int, features, keras):
    """The saved MLP as Keras layers on `features` ((None, D) float32): its layers up to the last,
    whose softmax becomes a Dense layer of (None, C) float32 logits with the same weights."""
    mlp = saved.load_keras_model(path)
    *body, last = mlp.layers
    x = features
    for layer in body:
        x = layer(x)
    out = keras.layers.Dense(last.units, dtype="float32", name="mlp_logits")
    logits = out(x)
    out.set_weights(last.get_weights())
    return logits


SPEC = ModelSpec(
    name="mlp", title="Keras multilayer perceptron", params=MLPParams, fit=fit, fit_stream=fit_stream,
    format="keras", suffix=".keras", load=load, keras_head=keras_head, batch_param="batch_size",
)
