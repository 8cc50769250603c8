"""`featurecache robust-model` / `make robust-model`: a robust model against a baseline.

The recipe (docs/robustness.md), on one cache with augmented views (extract --augment color,rotate,flip
--views K) whose pictures are still where it was extracted from, for each of --seeds seeds:

    robust    --initial random training images (stratified), topped up by margin active learning
              (classify.workflows.active) in rounds of --batch to --budget; its head (--robust-model, an
              MLP with one hidden layer by default) trained on those images and their views with PGD
              adversarial examples (classify.pixel.adversarial: --adv-* settings);
    baseline  --budget random training images (stratified), no views, plain LR (C=--C);

both attacked on the same first --limit test images with FGSM and PGD-(--pgd-steps) at every --eps,
each model attacked against itself (adaptive: its own backbone + head, never another's gradients).
Test images are read only to be attacked and scored; training and regeneration read training rows only.

Writes under --out-dir (default reports/), <id> a digest of the settings and the cache's identity:

    <cache>-<id>-robust-model.csv    model, seed, attack, eps, accuracy, n_images (every seed)
    <cache>-<id>-robust-model.md     mean ± std over seeds per model, attack and eps, and training seconds
    <cache>-<id>-robust-model.json   {"settings", "seeds": [{seed, per model: rows, sources, seconds}], "results"}
    <cache>-<id>-robust-model.png    accuracy against eps, both models, mean ± std bands over seeds

and rebuilds the folder's index.html, where the figure and its table appear under "Robust model".

    featurecache robust-model --features features/cifar10-efficientnet_lite0_imagenet_notop-gap-32px-sha...-aug-flip+rotate+color-4views.h5
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np

from featurecache.errors import UserError
from featurecache.files import Staged
from featurecache.progress import progress

MODELS = ("baseline", "robust")
ATTACKS = ("fgsm", "pgd")
EVAL_BATCH = 50   # test images per traced call
PGD_PIXELS = 4 * 50 * 64 * 64   # image rows x pixels in one PGD call: all four eps of 50 images at 32 or 64 px,
                                # one eps at a time at 224 px (the gradient's activations grow with both)


@dataclass
class RobustConfig:
    """Every setting of the workflow, with its default (the recipe at the original's scale)."""

    features: str | None = None
    out_dir: str = "reports"
    seeds: int = 3
    seed: int = 0
    limit: int = 200                    # test images attacked (the first N of the test split)
    eps: tuple[float, ...] = (0, 1, 2, 4, 8)
    pgd_steps: int = 10
    initial: int = 750                  # random images before active learning
    batch: int = 50                     # images per active-learning round (margin)
    budget: int = 1000                  # training images of each model
    C: float = 0.01                     # the baseline's LR (and the active-learning rounds' model)
    robust_model: str = "mlp"           # the robust head: lr | mlp
    hidden: tuple[int, ...] = field(default=(256,))
    adversarial: str = "pgd"
    adv_eps: float = 2.0
    adv_steps: int = 5
    adv_ratio: float = 0.5
    adv_every: int = 5
    epochs: int = 30
    batch_size: int = 64

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def classify_config(rc: RobustConfig, model: str, seed: int, adversarial: bool):
    """The ClassifyConfig of one of the two models (the baseline: plain LR; the robust head: adversarial)."""
    from classify.training.config import ClassifyConfig

    return ClassifyConfig(model=model, seed=seed, C=rc.C, hidden=rc.hidden, epochs=rc.epochs, batch_size=rc.batch_size,
                          adversarial=rc.adversarial if adversarial else None, adv_eps=rc.adv_eps,
                          adv_steps=rc.adv_steps, adv_ratio=rc.adv_ratio, adv_every=rc.adv_every)


def check(rc: RobustConfig, cache) -> None:
    """Refuse, before anything is fitted, a cache or plan the workflow cannot run (one line each)."""
    from classify.pixel.adversarial import check as check_adversarial
    from classify.workflows.active import Plan, check_plan

    if cache.train.views is None or cache.train.views.shape[1] == 0:
        raise UserError(f"{cache.path} has no augmented views; extract one with --augment color,rotate,flip --views 4 "
                        "(make robust-model does)")
    check_plan(Plan(rc.initial, rc.batch, rc.budget), cache.train.labels, len(cache.test.labels), cache.path)
    check_adversarial(classify_config(rc, rc.robust_model, rc.seed, True), cache.attrs)


# --------------------------------------------------------------------------- the two models


def robust_rows(cache, rc: RobustConfig, seed: int) -> np.ndarray:
    """--initial random rows, then margin active learning to --budget (LR on the cached features); sorted."""
    from classify.workflows.active import Plan, run_strategy

    run = run_strategy(cache, classify_config(rc, "lr", seed, False), "margin", seed, Plan(rc.initial, rc.batch, rc.budget))
    return np.sort(np.asarray(run["indices"]))


def train_robust(cache, rc: RobustConfig, seed: int, backbone) -> tuple[object, dict]:
    """The robust head (logits callable) and {rows, seconds, ...}: active learning, then adversarial training
    on the rows and their views."""
    from classify.pixel.adversarial import settings_of, train_head
    from classify.training.data import fit_rows

    t0 = time.perf_counter()
    rows = robust_rows(cache, rc, seed)
    t1 = time.perf_counter()
    cfg = classify_config(rc, rc.robust_model, seed, True)
    X_fit, y_fit = fit_rows(cache.train.features, cache.train.labels, rows, cache.train.views)
    no_val = (X_fit[:0], y_fit[:0])   # the robust model fits every one of its --budget images, as the baseline does
    head = train_head(cache, cfg, rows, (X_fit, y_fit), no_val, settings_of(cfg), backbone)
    t2 = time.perf_counter()
    details = head.details
    adversarial = {k: v for k, v in details["adversarial"].items() if k != "regenerated_rows"}
    return head.attack, {"rows": rows.tolist(), "fit_rows": len(y_fit), "active_seconds": round(t1 - t0, 2),
                                      "train_seconds": round(t2 - t1, 2), "adversarial": adversarial,
                                      "regenerated_rows": details["adversarial"]["regenerated_rows"]}


class BaselineAttack:
    """The baseline LR as one Dense layer on the shared backbone, attacked against itself: one PixelAttack for
    every seed (each seed's weights are set into the same layer, so nothing is traced again)."""

    def __init__(self, backbone, dim: int, n_classes: int):
        from classify.pixel.gradients import PixelAttack
        from featurecache.tfimport import keras

        self.dense = keras().layers.Dense(n_classes, name="lr_logits")
        self.dense.build((None, dim))
        self.attack = PixelAttack(backbone, lambda features, training=False: self.dense(features))

    def set_lr(self, weights: dict, n_classes: int):
        """The LR's arrays (`classify.training.lr.lr_weights`) as the layer's kernel and bias (standardisation
        folded in, as the run's end-to-end model holds them); returns the attack."""
        from classify.training.lr import linear_logits_weights

        self.dense.set_weights(list(linear_logits_weights(weights, n_classes)))
        return self.attack


def train_baseline(cache, rc: RobustConfig, seed: int, baseline: BaselineAttack) -> tuple[object, dict]:
    """The baseline's attack and {rows, seconds}: LR (scikit-learn, C=--C) on --budget random (stratified)
    training images, no views, no adversarial examples."""
    from classify.training.lr import lr_pipeline, lr_weights
    from classify.workflows.active import initial_rows

    t0 = time.perf_counter()
    rows = initial_rows(cache.train.labels, rc.budget, seed)
    pipe = lr_pipeline(rc.C, 300).fit(cache.train.features[rows], cache.train.labels[rows])
    seconds = round(time.perf_counter() - t0, 2)
    attack = baseline.set_lr(lr_weights(pipe), len(cache.class_names))
    return attack, {"rows": rows.tolist(), "fit_rows": len(rows), "train_seconds": seconds}


# --------------------------------------------------------------------------- the evaluation


def evaluate_model(attack, pixels: np.ndarray, labels: np.ndarray, eps, pgd_steps: int, seed: int) -> list[dict]:
    """Accuracy of the attack's own model (backbone + head) on the test pictures under FGSM and PGD at every
    eps, the attacks made against that model itself. [{"attack", "eps", "accuracy", "n_images"}]."""
    rng = np.random.default_rng(seed)
    live = [e for e in eps if e > 0]
    correct = {(a, e): 0 for a in ATTACKS for e in eps}
    for start in range(0, len(labels), EVAL_BATCH):
        x, y = pixels[start:start + EVAL_BATCH], labels[start:start + EVAL_BATCH]
        fgsm = attack.fgsm(x, y, live or [0.0])
        for a in ATTACKS:
            if 0 in eps:
                correct[(a, 0)] += int((fgsm["clean_pred"] == y).sum())
        for i, e in enumerate(live):
            correct[("fgsm", e)] += int((fgsm["pred"][i] == y).sum())
        per_call = max(1, PGD_PIXELS // (len(y) * x.shape[1] * x.shape[2]))   # eps whose copies fit one call
        for group in (live[i:i + per_call] for i in range(0, len(live), per_call)):
            # several eps in one call: len(group) copies of the batch, one eps each
            xs, ys = np.concatenate([x] * len(group)), np.concatenate([y] * len(group))
            per_row = np.repeat(np.asarray(group, np.float32), len(y))
            pred = attack.pgd(xs, ys, per_row, pgd_steps, rng=rng)["pred"].reshape(len(group), len(y))
            for i, e in enumerate(group):
                correct[("pgd", e)] += int((pred[i] == y).sum())
    return [{"attack": a, "eps": float(e), "accuracy": correct[(a, e)] / len(labels), "n_images": len(labels)}
            for a in ATTACKS for e in eps]


def one_seed(cache, rc: RobustConfig, seed: int, models: dict, pixels: np.ndarray, labels: np.ndarray) -> dict:
    """Both models of one seed, trained and attacked: {"seed", "baseline": {...}, "robust": {...}, "results"}.
    `models`: {"baseline": BaselineAttack, "robust": the shared float32 backbone}."""
    out: dict = {"seed": seed, "results": []}
    for name, train in (("baseline", train_baseline), ("robust", train_robust)):
        # the attack returned is the trained model itself (backbone + its head): an adaptive attack
        attack, info = train(cache, rc, seed, models[name])
        t0 = time.perf_counter()
        rows = evaluate_model(attack, pixels, labels, rc.eps, rc.pgd_steps, seed)
        info.update(eval_seconds=round(time.perf_counter() - t0, 2), attacked_against=name,
                    sources=[str(s) for s in cache.train.sources[info["rows"]]])
        out[name] = info
        out["results"] += [{"model": name, "seed": seed, **r} for r in rows]
    return out


def summary(results: list[dict]) -> list[dict]:
    """Mean and std (population, over seeds) of accuracy per model, attack and eps."""
    keys = dict.fromkeys((r["model"], r["attack"], r["eps"]) for r in results)
    out = []
    for model, attack, eps in keys:
        acc = np.array([r["accuracy"] for r in results if (r["model"], r["attack"], r["eps"]) == (model, attack, eps)])
        out.append({"model": model, "attack": attack, "eps": eps, "mean": float(acc.mean()), "std": float(acc.std()),
                    "seeds": len(acc)})
    return out


def figure(rows: list[dict], seeds: int, name: str):
    """Accuracy against eps, one colour per model, PGD solid and FGSM dashed, mean ± 1 std bands over seeds."""
    from classify.reporting import plots

    fig = plots.new_figure(7, 4.8)
    ax = fig.subplots()
    colours = {"baseline": "tab:blue", "robust": "tab:orange"}
    for model in MODELS:
        for attack, style in (("pgd", "-o"), ("fgsm", "--s")):
            r = sorted((x for x in rows if (x["model"], x["attack"]) == (model, attack)), key=lambda x: x["eps"])
            if not r:
                continue
            eps, mean, std = (np.array([x[k] for x in r]) for k in ("eps", "mean", "std"))
            ax.plot(eps, mean, style, color=colours[model], markersize=4, label=f"{model}, {attack.upper()}")
            ax.fill_between(eps, mean - std, mean + std, color=colours[model], alpha=0.15)
    ax.set_xlabel("eps (pixel values out of 255, L-infinity)")
    ax.set_ylabel(f"test accuracy (mean ± 1 std, {seeds} seed{'s' * (seeds > 1)})")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, title="model, attack (each against itself)",
               title_fontsize=8)
    plots.headline(fig, name)
    return fig


def markdown(rows: list[dict], seeds: list[dict], eps) -> str:
    """The table: accuracy mean ± std per model and attack at each eps, then each model's training seconds."""
    head = "| model | attack | " + " | ".join(f"eps {e:g}" for e in eps) + " |"
    lines = [head, "|---|---|" + "---|" * len(eps)]
    for model in MODELS:
        for attack in ATTACKS:
            cells = {r["eps"]: f"{r['mean']:.3f} ± {r['std']:.3f}" for r in rows if (r["model"], r["attack"]) == (model, attack)}
            lines.append(f"| {model} | {attack.upper()} | " + " | ".join(cells.get(float(e), "") for e in eps) + " |")
    lines += ["", "| model | seconds to train (mean over seeds) | of which active learning | attack evaluation |",
              "|---|---|---|---|"]
    for model in MODELS:
        mean = lambda key: np.mean([s[model].get(key, 0.0) for s in seeds])   # noqa: E731
        lines.append(f"| {model} | {mean('train_seconds') + mean('active_seconds'):.1f} | {mean('active_seconds'):.1f} "
                     f"| {mean('eval_seconds'):.1f} |")
    return "\n".join(lines) + "\n"


def run_workflow(cache, rc: RobustConfig) -> dict:
    """Every seed's two models, trained and attacked on the same test pictures; the JSON document."""
    from classify.pixel.adversarial import read_pixels
    from classify.pixel.endtoend import float_backbone
    from featurecache.extractor import Extractor

    backbone = float_backbone(Extractor.from_cache(cache.attrs, keras=True), cache.attrs)   # one, shared, frozen
    n = min(rc.limit, len(cache.test.labels))
    size = int(backbone.input.shape[1])
    test_pixels = read_pixels(cache.attrs, cache.test.sources[:n], size)       # attacked and scored, nothing else
    test_labels = cache.test.labels[:n].astype(np.int64)
    models = {"baseline": BaselineAttack(backbone, cache.train.features.shape[1], len(cache.class_names)),
              "robust": backbone}
    seeds = []
    with progress("robust model", rc.seeds, "seeds") as bar:
        for seed in range(rc.seed, rc.seed + rc.seeds):
            seeds.append(one_seed(cache, rc, seed, models, test_pixels, test_labels))
            bar.update(1)
    results = [r for s in seeds for r in s.pop("results")]
    return {"settings": {**rc.to_dict(), "cache": str(cache.path), "input_size": size, "n_test": n,
                         "test_sources": [str(s) for s in cache.test.sources[:n]],
                         "eps_units": "pixel values out of 255, L-infinity",
                         "attack": "each model attacked against itself (its own backbone + head)",
                         "class_names": cache.class_names},
            "seeds": seeds, "results": results, "summary": summary(results)}


def write_outputs(doc: dict, out_dir, stem: str) -> dict:
    """The CSV, Markdown table, JSON and figure, written aside and renamed together."""
    from classify.reporting import plots
    from classify.runs.outputs import csv_text

    paths = {ext: out_dir / f"{stem}-robust-model.{ext}" for ext in ("csv", "md", "json", "png")}
    rc = doc["settings"]
    title = f"{stem}: baseline vs robust model under attack ({rc['n_test']} test images, {rc['input_size']} px)"
    try:
        with Staged() as staged:
            staged.aside(paths["csv"]).write_text(csv_text(doc["results"]))
            staged.aside(paths["md"]).write_text(markdown(doc["summary"], doc["seeds"], rc["eps"]))
            staged.aside(paths["json"]).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
            plots.save(figure(doc["summary"], rc["seeds"], title), staged.aside(paths["png"]))
    except OSError as e:
        raise UserError(f"could not write the robust-model files in {out_dir} ({e}); earlier files are unchanged") from None
    return paths


def parse_eps(text: str) -> tuple[float, ...]:
    from classify.pixel.attacks import parse_eps as parse

    return parse(text)
