"""The shared settings of the classify stage, with their defaults, in one place; each model's own
settings live with its spec (classify.training.specs), and a ClassifyConfig holds one of each.

The CLI fills a `ClassifyConfig` from its options (flat: `C=0.5` goes to LR's settings, `epochs=3` to
the MLP's); a run logs it once and saves it in its run record. Defaults are chosen to be quick on
50,000 x 512 features on a laptop: lbfgs on standardised features, a forest on all cores, an MLP
trained with Adam in batches of 256.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields

from classify.training.specs import SPECS, default_params, owner_of
from featurecache.errors import UserError

SHARED_PARAMS = ("model", "seed", "val_fraction", "train_size")  # what every run shows, beside its model's own
ADVERSARIAL_PARAMS = ("adversarial", "adv_eps", "adv_steps", "adv_ratio", "adv_every")   # --adversarial and its settings


def has_views(attrs: dict) -> bool:
    """Whether a cache (its attributes) holds augmented views, so that --views and --tta apply."""
    return bool(attrs.get("views") or attrs.get("test_views"))


@dataclass(init=False)
class ClassifyConfig:
    model: str = "lr"                    # a name of classify.training.specs.SPECS: lr | rf | mlp | knn
    features: str | None = None          # None: the cache features/LATEST names
    out_dir: str = "reports"
    plot_name: str | None = None         # None: <cache stem>-<model>-curves.png
    report_name: str | None = None       # None: <cache stem>-<model>-report.{txt,json}
    seed: int = 0                        # validation split, --train-size subset, model initialisation
    val_fraction: float = 0.1            # share of the training rows held out to choose and stop
    train_size: int | None = None        # None: every training row; N: a stratified subset of N rows
    tensorboard: str | None = None       # MLP: folder for TensorBoard logs (not part of the run's identity)
    # augmented caches (extract --augment): fit the training images' views too; average test views
    views: str = "all"                   # all | none: fit each image's K views beside its original
    tta: bool = False                    # average test probabilities over the original and its test views
    calibrate: bool = False              # the models whose spec calibrates: temperature scaling fitted on the validation split
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
    # model name -> that model's own settings (its spec's params dataclass), every model's, defaults unless given
    params: dict = field(default_factory=default_params)

    def __init__(self, params: dict | None = None, **settings):
        """Shared settings by name; a model's own setting by name too (`C=0.5`), routed to the model that
        owns it (classify.training.specs.OWNERS) and checked there. `params` (as `dataclasses.replace`
        passes it): every model's settings to start from instead of the defaults."""
        unknown = [k for k in settings if k not in SHARED_FIELDS and owner_of(k) is None]
        if unknown:
            raise TypeError(f"ClassifyConfig has no setting {unknown[0]!r}")
        for name, f in SHARED_FIELDS.items():
            object.__setattr__(self, name, settings.get(name, f.default))
        if self.model not in SPECS:
            raise UserError(f"model={self.model!r} is not one of {', '.join(sorted(SPECS))}; pass one of them")
        own: dict[str, dict] = {}
        for key, value in settings.items():
            if key not in SHARED_FIELDS:
                own.setdefault(owner_of(key).name, {})[key] = value
        start = default_params() if params is None else dict(params)
        for name, given in own.items():
            # fresh: the dataclass resolves what depends on another setting (the MLP's learning rate)
            start[name] = SPECS[name].params(**given) if params is None else dataclasses.replace(start[name], **given)
        object.__setattr__(self, "params", start)

    def __getattr__(self, name: str):
        """A model's own setting read by name (`cfg.C`), from the model that owns it."""
        spec = None if name.startswith("_") or name == "params" else owner_of(name)
        if spec is None or "params" not in self.__dict__:
            raise AttributeError(f"ClassifyConfig has no setting {name!r}")
        return getattr(self.__dict__["params"][spec.name], name)

    def __setattr__(self, name: str, value) -> None:
        spec = owner_of(name)
        if spec is None:
            object.__setattr__(self, name, value)
        else:   # checked by the model's dataclass, as at construction
            self.params[spec.name] = dataclasses.replace(self.params[spec.name], **{name: value})

    @property
    def own(self):
        """This run's model's own settings (its spec's params dataclass)."""
        return self.params[self.model]

    @classmethod
    def setting_names(cls) -> set[str]:
        """Every name the constructor takes: the shared settings and each model's own."""
        return set(SHARED_FIELDS) | {k for spec in SPECS.values() for k in spec.param_names()}

    def to_dict(self) -> dict:
        """Every setting, flat: the shared ones and every model's own (tuples as lists)."""
        d = {name: getattr(self, name) for name in SHARED_FIELDS}
        for p in self.params.values():
            d.update(asdict(p))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def settings(self, views: bool = False) -> dict:
        """The settings that apply to this run, for the screen, the run record's `settings` summary
        and MLflow: the model, its own hyperparameters, the shared ones, and the optional ones only
        where they do something (`views`: the cache has augmented views, so --views and --tta act;
        a memory budget when given; TensorBoard logs for the MLP). `to_dict` keeps everything."""
        keep = SHARED_PARAMS + SPECS[self.model].param_names() + (("views", "tta") if views else ())
        keep += ("max_memory",) if self.max_memory is not None else ()
        keep += ("tensorboard",) if self.model == "mlp" and self.tensorboard else ()
        keep += ADVERSARIAL_PARAMS if self.adversarial else ()
        full = self.to_dict()
        return {k: full[k] for k in keep}

    def hyperparameters(self) -> dict:
        """The settings of this run's model only, for summaries and comparison rows."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.own).items()}


SHARED_FIELDS = {f.name: f for f in fields(ClassifyConfig) if f.name != "params"}
