"""The Keras MLP: the only part of classify that imports TensorFlow.

Standardisation is the model's first layer (a Normalization layer holding the
training rows' mean and variance), so the saved .keras file predicts from raw
cached features on its own.
"""

from __future__ import annotations

import numpy as np

from classify import saved
from classify.config import ClassifyConfig
from classify.models import Trained


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


def fit_mlp(X_fit, y_fit, X_val, y_val, n_classes: int, cfg: ClassifyConfig) -> Trained:
    from extract.tfimport import keras as load_keras

    keras = load_keras()
    keras.utils.set_random_seed(cfg.seed)
    mean = X_fit.mean(axis=0)
    var = X_fit.var(axis=0)
    var[var == 0] = 1.0  # constant features (dead ReLUs of random weights) stay 0, not 0/eps
    model = build_mlp(keras, X_fit.shape[1], n_classes, mean, var, cfg)
    model.compile(optimizer=optimizer(keras, cfg), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    fit = model.fit(X_fit, y_fit, validation_data=(X_val, y_val), epochs=cfg.epochs, batch_size=cfg.batch_size,
                    callbacks=[stop], verbose=0)
    h = fit.history
    epochs = len(h["loss"])
    history = {
        "x_label": "epoch", "x": list(range(1, epochs + 1)),
        "train_loss": h["loss"], "val_loss": h["val_loss"],
        "train_acc": h["accuracy"], "val_acc": h["val_accuracy"],
    }
    best = int(np.argmin(h["val_loss"])) + 1
    return Trained(
        predict_proba=lambda X: np.asarray(model.predict(np.asarray(X, dtype=np.float32), batch_size=1024, verbose=0)),
        save=lambda path: saved.save_keras(path, model),
        format="keras",
        history={k: vals if k in ("x_label", "x") else [float(v) for v in vals] for k, vals in history.items()},
        details={"epochs_run": epochs, "best_epoch": best, "stopped_early": epochs < cfg.epochs},
    )
