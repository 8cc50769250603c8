"""`Trained`: a fitted model as the rest of classify sees it, whichever library fitted it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Trained:
    predict_proba: Callable[[np.ndarray], np.ndarray]  # raw features (n, D) float32 -> (n, C)
    save: Callable[[Path], None]                       # writes the model file its spec's `load` reads
    format: str                                        # its spec's format: "linear" | "forest" | "keras" | "knn"
    # progress curves: x_label, x, train_loss, val_loss, train_acc, val_acc (equal-length lists);
    # LR adds "chosen": the C that was kept
    history: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)        # what training chose or found (C, sweep, epochs run)
