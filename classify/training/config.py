"""Every setting of the classify stage, with its default, in one place.

The CLI fills a `ClassifyConfig` from its options; a run logs it once and
saves it in its run record. Defaults are chosen to be quick on 50,000 x 512
features on a laptop: lbfgs on standardised features, a forest on all cores,
an MLP trained with Adam in batches of 256.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# hyperparameters that belong to each model (the rest are shared)
MODEL_PARAMS = {
    "lr": ("C", "max_iter"),
    "rf": ("n_estimators", "max_depth", "max_samples"),
    "mlp": ("hidden", "dropout", "epochs", "batch_size", "learning_rate", "decay_steps", "decay_rate",
            "optimizer", "momentum", "patience"),
    "knn": ("k", "temperature"),
}
CALIBRATED_MODELS = ("lr", "mlp", "knn")           # --calibrate: a temperature fitted on the validation split
SHARED_PARAMS = ("model", "seed", "val_fraction", "train_size")  # what every run shows, beside its model's own
C_GRID = tuple(10.0 ** k for k in range(-4, 2))  # --C auto: 1e-4 .. 1e1, chosen on the validation split
RF_MIN_SAMPLES = 2500                            # rows a tree's bootstrap sample draws at least
LEARNING_RATES = {"adam": 0.001, "sgd": 0.01}    # the MLP's initial learning rate when none is given
ADVERSARIAL_PARAMS = ("adversarial", "adv_eps", "adv_steps", "adv_ratio", "adv_every")   # --adversarial and its settings


def has_views(attrs: dict) -> bool:
    """Whether a cache (its attributes) holds augmented views, so that --views and --tta apply."""
    return bool(attrs.get("views") or attrs.get("test_views"))


@dataclass
class ClassifyConfig:
    model: str = "lr"                    # lr | rf | mlp | knn (classify.training.models.MODELS)
    features: str | None = None          # None: the cache features/LATEST names
    out_dir: str = "reports"
    plot_name: str | None = None         # None: <cache stem>-<model>-curves.png
    report_name: str | None = None       # None: <cache stem>-<model>-report.{txt,json}
    seed: int = 0                        # validation split, --train-size subset, model initialisation
    val_fraction: float = 0.1            # share of the training rows held out to choose and stop
    train_size: int | None = None        # None: every training row; N: a stratified subset of N rows
    # logistic regression (lbfgs, multinomial, on standardised features)
    C: float | str = 0.01                # inverse regularisation strength, or "auto"; strong by default:
                                         # best on the 6,000-image subset, and lbfgs converges in ~100 steps
    max_iter: int = 300
    # random forest (all cores): many trees, each on a bootstrap sample of part of the rows (as
    # scikit-learn's own benchmarks grow them): on 45,000 x 512 rows, 300 trees on 10% each reach the
    # test accuracy of 100 trees on all rows in a third of the time (docs/performance-scale.md)
    n_estimators: int = 300
    max_depth: int | None = None         # None: grow until leaves are pure
    max_samples: float | None = None     # share of the rows in each tree's bootstrap sample;
                                         # None: 10%, at least RF_MIN_SAMPLES rows (all, when fewer)
    # Keras MLP (standardised features -> Dense/ReLU/Dropout layers -> softmax)
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
    tensorboard: str | None = None       # MLP: folder for TensorBoard logs (not part of the run's identity)
    # weighted kNN (cosine similarity on L2-normalised features, votes weighted by exp(sim / T))
    k: int | str = "auto"                # neighbours, or "auto": chosen on the validation split (classify.training.knn.K_GRID)
    temperature: float = 0.07            # T of the votes' weights, DINOv2's
    # augmented caches (extract --augment): fit the training images' views too; average test views
    views: str = "all"                   # all | none: fit each image's K views beside its original
    tta: bool = False                    # average test probabilities over the original and its test views
    calibrate: bool = False              # lr, mlp, knn: temperature scaling fitted on the validation split
    # memory: bytes of feature data a classifier may hold; a larger cache is streamed from its file
    max_memory: int | None = None        # None: half the RAM available when the run starts
    # an audit's flagged training rows left out (classify.workflows.audit_record): "AUDIT.json:duplicates|label-issues"
    exclude: str | None = None
    # adversarial training of the head through the frozen backbone (classify.pixel.adversarial); lr and mlp
    adversarial: str | None = None       # None | fgsm | pgd
    adv_eps: float = 2.0                 # L-infinity budget, pixel values out of 255
    adv_steps: int = 5                   # PGD steps (step size 2.5 * eps / steps, random start)
    adv_ratio: float = 0.5               # share of each batch replaced by its adversarial twin; 0: plain training
    adv_every: int = 5                   # epochs between regenerations against the current head

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            self.learning_rate = LEARNING_RATES.get(self.optimizer, LEARNING_RATES["adam"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def settings(self, views: bool = False) -> dict:
        """The settings that apply to this run, for the screen, the run record's `settings` summary
        and MLflow: the model, its own hyperparameters, the shared ones, and the optional ones only
        where they do something (`views`: the cache has augmented views, so --views and --tta act;
        a memory budget when given; TensorBoard logs for the MLP). `to_dict` keeps everything."""
        keep = SHARED_PARAMS + MODEL_PARAMS[self.model] + (("views", "tta") if views else ())
        keep += ("max_memory",) if self.max_memory is not None else ()
        keep += ("tensorboard",) if self.model == "mlp" and self.tensorboard else ()
        keep += ADVERSARIAL_PARAMS if self.adversarial else ()
        full = self.to_dict()
        return {k: full[k] for k in keep}

    def hyperparameters(self) -> dict:
        """The settings of this run's model only, for summaries and comparison rows."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if k in MODEL_PARAMS[self.model]}
