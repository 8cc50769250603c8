"""`python -m bench.accuracy` / `make bench-accuracy`: test accuracy with a real ImageNet-trained backbone.

Extracts the CIFAR-10 subset (5,000 train + 1,000 test images, resized to 224 px inside the graph) and
the cats-vs-dogs photos (200 + 100) with the EfficientNet-Lite0 in ../shared/models, then trains LR
(`--C auto`), the MLP, the random forest and kNN on each cache with `classify.workflows.compare` (each accuracy
with its bootstrap 95% interval and ECE), again with `--calibrate` (LR, MLP, kNN: the ECE before and
after), runs `classify.workflows.fewshot` (1, 5, 10, 20 shots, 5 seeds, LR and kNN), and, for the photos,
compares the LR accuracy of a float32 and a bfloat16 cache. Each step runs in its own process.
Writes <out-dir>/accuracy.json and accuracy.md and prints the tables.

    python -m bench.accuracy                       # both data sets (CIFAR-10 at 224 px takes minutes)
    python -m bench.accuracy --sets cats-vs-dogs   # the photos only
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from bench.report import read_classify_runs
from bench.runner import StepFailed, run_step
from featurecache.command import Command

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "efficientnet_lite0_imagenet_notop.keras"
MODELS = ("lr", "mlp", "rf", "knn")
CALIBRATED = ("lr", "mlp", "knn")
FEWSHOT_MODELS = ("lr", "knn")
SETS = {
    "cifar10": SHARED / "data" / "cifar10-subset" / "cifar-10-batches-py",
    "cats-vs-dogs": SHARED / "data" / "cats-vs-dogs-subset",
}


def extract(data: Path, model: Path, out: Path, log: Path, precision: str) -> dict:
    """One extraction in a fresh process; its wall time and images/s."""
    # the bench's caches are its own: features/LATEST, which names the user's cache, is left alone
    step = run_step([sys.executable, "-m", "extract", "--data-dir", str(data), "--backbone", str(model),
                     "--image-size", "224", "--precision", precision, "--out", str(out), "--force"], log,
                    env={"FEATURECACHE_FEATURES_DIR": str(out.parent)})
    from featurecache.cache import read_attrs

    attrs = read_attrs(out)
    images = int(attrs["n_train"]) + int(attrs["n_test"])
    return {"wall_s": round(step["wall_s"], 1), "images": images, "images_per_second": round(images / step["wall_s"], 1),
            "peak_rss_mb": round(step["peak_rss_mb"]), "precision": attrs["precision"]}


def classify(cache: Path, out_dir: Path, log: Path, models: tuple[str, ...], *extra: str) -> dict:
    args = [a for m in models for a in ("--model", m)]
    run_step([sys.executable, "-m", "featurecache", "compare", "--features", str(cache), "--out-dir", str(out_dir),
              "--C", "auto", *args, *extra], log)
    return read_classify_runs(out_dir)


def calibration(cache: Path, out_dir: Path, log: Path) -> dict:
    """{model: {ece_before, ece_after, temperature}} of `compare --calibrate` for LR, MLP and kNN."""
    classify(cache, out_dir, log, CALIBRATED, "--calibrate")
    out = {}
    from classify.runs.record import SUFFIX, RunRecord

    for path in sorted(out_dir.glob("*" + SUFFIX)):
        record = RunRecord.load(path)
        cal = record.calibration
        out[record.model] = {"ece_before": round(cal.ece_before, 4), "ece_after": round(record.metrics.ece, 4),
                             "temperature": round(cal.temperature, 3)}
    return out


def fewshot(cache: Path, out_dir: Path, log: Path) -> list[dict]:
    """`featurecache fewshot`'s rows (model, shots, seeds, mean, std, low, high) for FEWSHOT_MODELS."""
    args = [a for m in FEWSHOT_MODELS for a in ("--model", m)]
    run_step([sys.executable, "-m", "featurecache", "fewshot", "--features", str(cache), "--out-dir", str(out_dir),
              "--shots", "1,5,10,20", "--seeds", "5", *args], log)
    (path,) = sorted(out_dir.glob("*-fewshot-*.json"))[-1:]
    return json.loads(path.read_text())["rows"]


def measure(name: str, data: Path, model: Path, work: Path, precisions: tuple[str, ...]) -> dict:
    """Every precision's extraction; all three classifiers on the first, LR on the others."""
    result = {"data": str(data), "extract": {}, "models": {}, "lr_by_precision": {}}
    for k, precision in enumerate(precisions):
        cache = work / f"{name}-{precision}.h5"
        result["extract"][precision] = extract(data, model, cache, work / f"{name}-{precision}-extract.log", precision)
        runs = classify(cache, work / f"{name}-{precision}-reports", work / f"{name}-{precision}-classify.log",
                        MODELS if k == 0 else ("lr",))
        if k == 0:
            result["models"] = runs
            stem = work / f"{name}-{precision}"
            result["calibration"] = calibration(cache, Path(f"{stem}-calibrated"), Path(f"{stem}-calibrate.log"))
            result["fewshot"] = fewshot(cache, Path(f"{stem}-fewshot"), Path(f"{stem}-fewshot.log"))
        result["lr_by_precision"][precision] = runs["lr"]["test_accuracy"]
    return result


def table(results: dict) -> str:
    lines = ["| data | model | test accuracy | 95% interval | ECE | ECE with --calibrate | train time (s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        for model, m in sorted(r["models"].items()):
            cal = r.get("calibration", {}).get(model)
            calibrated = f"{cal['ece_after']:.3f} (T = {cal['temperature']:.2f})" if cal else ""
            lines.append(f"| {name} | {model} | {m['test_accuracy']:.1%} | {m['low']:.1%}-{m['high']:.1%} "
                         f"| {m['ece']:.3f} | {calibrated} | {m['train_seconds']:.2f} |")
    lines += ["", "| data | model | shots per class | test accuracy, mean ± std over seeds | 95% interval |",
              "| --- | --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        for f in r.get("fewshot", []):
            lines.append(f"| {name} | {f['model']} | {f['shots']} | {f['mean']:.1%} ± {f['std']:.1%} "
                         f"| {f['low']:.1%}-{f['high']:.1%} |")
    lines += ["", "| data | precision | LR test accuracy | extraction images/s | peak RSS MB |",
              "| --- | --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        for precision, e in r["extract"].items():
            lines.append(f"| {name} | {precision} | {r['lr_by_precision'][precision]:.1%} "
                         f"| {e['images_per_second']:,.1f} | {e['peak_rss_mb']:,} |")
    return "\n".join(lines)


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sets", default="cifar10,cats-vs-dogs", show_default=True,
              help="Comma-separated data sets: cifar10 (the 6,000-image subset), cats-vs-dogs.")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=MODEL,
              show_default=True, help="The ImageNet-trained .keras backbone.")
@click.option("--precisions", default="float32,bfloat16", show_default=True,
              help="Extraction precisions for the photos; the first one also trains every classifier.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/bench"),
              show_default=True)
def cli(sets: str, model: Path, precisions: str, out_dir: Path) -> None:
    """Accuracy of LR, MLP, RF and kNN (intervals, calibration, few-shot) on caches of a real ImageNet-trained backbone."""
    names = [s.strip() for s in sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: choose from {', '.join(SETS)}", param_hint="--sets")
    precision_list = tuple(p.strip() for p in precisions.split(",") if p.strip())
    work = out_dir / "accuracy-work"
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for name in names:
            click.echo(f"bench.accuracy: {name} ...", err=True)
            # CIFAR-10 at 224 px costs minutes per precision: one precision there, all of them on the photos
            results[name] = measure(name, SETS[name], model, work,
                                    precision_list if name == "cats-vs-dogs" else precision_list[:1])
    except StepFailed as e:
        raise click.ClickException(str(e)) from None
    report = {"model": str(model), "results": results, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (out_dir / "accuracy.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    text = table(results)
    (out_dir / "accuracy.md").write_text(f"# bench.accuracy\n\nbackbone: {model.name}\n\n{text}\n")
    click.echo(text)


def main() -> None:
    cli(prog_name="python -m bench.accuracy")


if __name__ == "__main__":
    main()
