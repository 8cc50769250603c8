"""Active learning on cached features: which training images to label next, per strategy (margin,
least-confident, entropy, random), and the test accuracy each reaches (the command: `featurecache active`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from scipy.special import entr
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from classify.training.config import ClassifyConfig
from classify.training.data import smallest_train_size, split_rows
from classify.training.specs import SPECS
from featurecache.errors import SettingError, UserError
from featurecache.progress import progress

SCORE_CHUNK = 8192  # pool rows scored at a time: bounds the float64 copies of a large pool


def margin(proba: np.ndarray) -> np.ndarray:
    """Uncertainty (n,) of probabilities (n, C): minus the gap between the two most probable classes."""
    top2 = np.partition(proba, -2, axis=1)[:, -2:]     # (n, 2): second, first
    return top2[:, 0] - top2[:, 1]


def least_confident(proba: np.ndarray) -> np.ndarray:
    """Uncertainty (n,): one minus the probability of the predicted class."""
    return 1.0 - proba.max(axis=1)


def predictive_entropy(proba: np.ndarray) -> np.ndarray:
    """Uncertainty (n,): entropy of the predicted distribution (nats)."""
    return entr(proba).sum(axis=1)   # entr(p) = -p log p, 0 at p = 0


# name -> uncertainty(proba (n, C)) -> (n,), larger = queried first; "random" draws instead
STRATEGIES = {"margin": margin, "entropy": predictive_entropy, "least-confident": least_confident, "random": None}
DEFAULT_STRATEGIES = ("margin", "random")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many rows are labelled when: --initial rows, then --batch per round up to --budget."""

    initial: int = 750
    batch: int = 50
    budget: int = 1000

    def sizes(self) -> list[int]:
        """Labelled counts after each round, round 0 first: initial, initial + batch, ..., budget."""
        return sorted(set(range(self.initial, self.budget, self.batch)) | {self.budget})


def holds_out(cfg: ClassifyConfig) -> str | None:
    """Why a round's model holds out validation rows from the labelled set ("C='auto'" chooses C on
    them, "model='mlp'" stops early on them), or None when it fits every labelled row."""
    return "model='mlp'" if cfg.model == "mlp" else "C='auto'" if cfg.C == "auto" else None


def check_plan(plan: Plan, train_labels: np.ndarray, n_test: int, path, cfg: ClassifyConfig | None = None) -> None:
    """Refuse, before anything is fitted, a plan the cache cannot run: one line naming the option
    and the values that work. With `cfg`, an --initial set too small to hold out its validation rows
    is refused too."""
    n = len(train_labels)
    k = len(np.unique(train_labels))
    if n_test == 0:
        raise UserError(f"{path} has no test rows to score the rounds on; use a cache with a test split "
                        "(extract writes one for CIFAR-10 and for photo folders)")
    if k < 2:
        raise UserError(f"the cache's {n:,} training rows are all of one class; a classifier needs at least two: "
                        "extract a cache with images of two or more classes")
    why = holds_out(cfg) if cfg is not None else None
    need = smallest_train_size(train_labels, cfg.val_fraction) if why else k
    if why and not need <= plan.initial <= n:
        raise SettingError(f"initial={plan.initial} is outside what {why} allows: it holds out val_fraction="
                        f"{cfg.val_fraction:g} of the labelled rows for validation, at least one row of each of the "
                        f"{k} classes on each side; pass `initial` between {need} and {n:,}")
    if not k <= plan.initial <= n:
        raise SettingError(f"initial={plan.initial} is outside what the pool of {n:,} training rows with {k} classes "
                           f"allows; pass `initial` between {k} and {n:,}")
    if plan.budget > n:
        raise SettingError(f"budget={plan.budget} is more than the {n:,} training rows in the pool; "
                           f"pass `budget` between {plan.initial} (`initial`) and {n:,}")
    if plan.budget < plan.initial:
        raise SettingError(f"budget={plan.budget} is smaller than initial={plan.initial}; "
                           f"pass `budget` between {plan.initial} and {n:,}")


def initial_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` training rows with the class proportions of `labels`, seeded, sorted; every strategy
    of a seed starts from these."""
    if size == len(labels):
        return np.arange(len(labels))
    try:
        idx, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed)
    except ValueError:  # a class with a single training row cannot be stratified
        counts = np.bincount(labels)
        raise UserError(f"a class has {counts[counts > 0].min()} training row(s), too few to draw a stratified `initial` "
                        "set; use a cache with at least two rows of every class") from None
    return np.sort(idx)


def pool_uncertainty(trained, features: np.ndarray, strategy: str) -> np.ndarray:
    """Uncertainty (n,) of every pool row under a fitted model, scored in contiguous chunks (views,
    no copy of the pool; the model's float64 copy is one chunk at a time)."""
    score = STRATEGIES[strategy]
    return np.concatenate([score(trained.predict_proba(features[i:i + SCORE_CHUNK]))
                           for i in range(0, len(features), SCORE_CHUNK)])


def query(strategy: str, trained, features: np.ndarray, unlabelled: np.ndarray, batch: int,
          rng: np.random.Generator) -> np.ndarray:
    """The `batch` pool rows of `unlabelled` (sorted) the strategy picks, in the order picked: most
    uncertain first, ties to the earlier row; random draws them."""
    if strategy == "random":
        return rng.choice(unlabelled, size=batch, replace=False)
    u = pool_uncertainty(trained, features, strategy)[unlabelled]
    return unlabelled[np.argsort(-u, kind="stable")[:batch]]


def fit(cache, cfg: ClassifyConfig, labelled: np.ndarray, n_classes: int):
    """The round's model on the labelled rows. A model that needs validation rows (--C auto, the MLP)
    gets --val-fraction of them held out (stratified, seeded); otherwise it fits all of them."""
    X, y = cache.train.features, cache.train.labels
    if holds_out(cfg):
        rows = split_rows(y[labelled], cfg.val_fraction, cfg.seed)
        fit_rows, val_rows = labelled[rows.fit], labelled[rows.val]
    else:
        fit_rows, val_rows = labelled, labelled[:0]
    return SPECS[cfg.model].fit(X[fit_rows], y[fit_rows], X[val_rows], y[val_rows], n_classes, cfg, False)


def run_strategy(cache, cfg: ClassifyConfig, strategy: str, seed: int, plan: Plan) -> dict:
    """One strategy from one seed's initial set to the budget. Returns {strategy, seed, indices
    (labelled training rows in the order labelled), rounds: [{round, labelled, accuracy, macro_f1,
    queried_per_class}]}; round 0 is the initial set."""
    cfg = dataclasses.replace(cfg, seed=seed)
    labels = cache.train.labels
    n_classes = len(cache.class_names)
    rng = np.random.default_rng(seed)  # the random strategy's draws: the same for a seed whatever else runs
    labelled = initial_rows(labels, plan.initial, seed)
    picked = labelled
    sizes = plan.sizes()
    rounds = []
    for r, size in enumerate(sizes):
        trained = fit(cache, cfg, labelled, n_classes)
        pred = trained.predict_proba(cache.test.features).argmax(axis=1)  # the only use of the test rows
        rounds.append({"round": r, "labelled": len(labelled),
                       "accuracy": round(float(accuracy_score(cache.test.labels, pred)), 4),
                       "macro_f1": round(float(f1_score(cache.test.labels, pred, labels=range(n_classes),
                                                        average="macro", zero_division=0)), 4),
                       "queried_per_class": np.bincount(labels[picked], minlength=n_classes).tolist()})
        if r + 1 < len(sizes):
            unlabelled = np.setdiff1d(np.arange(len(labels)), labelled)  # sorted pool rows not yet labelled
            picked = query(strategy, trained, cache.train.features, unlabelled, sizes[r + 1] - size, rng)
            labelled = np.concatenate([labelled, picked])
    return {"strategy": strategy, "seed": seed, "indices": labelled.tolist(), "rounds": rounds}


def active_learning(cache, cfg: ClassifyConfig, strategies: list[str], seeds: list[int], plan: Plan) -> list[dict]:
    """Every strategy from every seed (`run_strategy`), seed-major."""
    # BLAS on one thread: the products here are thin ((n, D) x (D, C)) and many; on a busy machine
    # idle BLAS threads cost more than they give (fit_lr fits this way for the same reason)
    runs = []
    with threadpool_limits(limits=1, user_api="blas"), \
            progress("active learning", len(seeds) * len(strategies), "runs") as bar:
        for seed in seeds:
            for strategy in strategies:
                runs.append(run_strategy(cache, cfg, strategy, seed, plan))
                bar.update(1)
    return runs


def csv_rows(runs: list[dict], class_names: list[str]) -> list[dict]:
    """One row per strategy, seed and round; queried_per_class as a JSON object of class -> count."""
    return [{"strategy": run["strategy"], "seed": run["seed"], "round": r["round"], "labelled": r["labelled"],
             "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
             "queried_per_class": json.dumps(dict(zip(class_names, r["queried_per_class"])), separators=(",", ":"))}
            for run in runs for r in run["rounds"]]


def curves(runs: list[dict]) -> dict[str, dict]:
    """strategy -> {labelled (R,), mean (R,), sd (R,)}: test accuracy over seeds (population sd)."""
    out = {}
    for strategy in dict.fromkeys(run["strategy"] for run in runs):
        acc = np.array([[r["accuracy"] for r in run["rounds"]] for run in runs if run["strategy"] == strategy])
        labelled = [r["labelled"] for r in next(run for run in runs if run["strategy"] == strategy)["rounds"]]
        out[strategy] = {"labelled": labelled, "mean": acc.mean(axis=0), "sd": acc.std(axis=0)}
    return out


def table(runs: list[dict]) -> list[str]:
    """Final test accuracy per strategy (mean ± sd over seeds), then its gain in mean test accuracy
    over random at each labelled count (when random ran)."""
    c = curves(runs)
    sizes = next(iter(c.values()))["labelled"]
    width = max(len("strategy"), *map(len, c)) + 2
    base = c.get("random")
    cols = " ".join(f"{n:>7,}" for n in sizes)
    lines = []
    if base is not None:
        lines.append(" " * (width + 18) + "gain over random at labelled =")
    lines.append(f"{'strategy':<{width}}{'final accuracy':<18}" + (cols if base is not None else ""))
    for s, v in c.items():
        line = f"{s:<{width}}{v['mean'][-1]:.4f} ± {v['sd'][-1]:.4f}   "
        if base is not None:
            line += " ".join(f"{g:>+7.4f}" for g in v["mean"] - base["mean"])
        lines.append(line.rstrip())
    return lines


def plot(runs: list[dict], path, title: str) -> None:
    """Mean test accuracy +- one sd over seeds against labelled images, one line per strategy."""
    from classify.reporting import plots

    plots.save(plots.active_figure(curves(runs), len({run["seed"] for run in runs}), title), path)
