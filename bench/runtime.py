"""`python -m bench.runtime` / `make bench-runtime`: the path real users take, whole processes, 224 px.

For each row (a backbone at a size on N CIFAR-10 images of ../shared/data), in alternating rounds:
  plain     the peer a user writes (`bench.plain`): Keras `model.predict` in float32, np.save
  float32   `python -m extract` with the defaults (auto runtime, auto precision = float32)
  bfloat16  the same with --precision bfloat16
each timed as a whole process (import, model build, conversion, cache writing included; best of the
rounds), with its peak memory, its share of the machine's measured float32 / bfloat16 matmul peak
(`bench.peak`), the cosine of its features against the plain float32 ones (min and mean), and for
Lite0 the LR test accuracy on each cache. Writes <out-dir>/runtime.json and runtime.md.

    python -m bench.runtime                      # lite0 (6,000 images), resnet50 (1,000), vgg16 (400), 224 px
    python -m bench.runtime --rows resnet50 --quick   # a smoke run: 16 images at 64 px, one round
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from bench.runner import StepFailed, job, run_step
from featurecache.command import Command

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-py"
LITE0 = ROOT.parent / "shared" / "models" / "efficientnet_lite0_imagenet_notop.keras"


@dataclass(frozen=True)
class Row:
    backbone: str       # a table name or a .keras file
    size: int
    limit: int | None   # images per split (None: all 6,000)
    accuracy: bool      # LR accuracy on each cache


ROWS = {
    "lite0": Row(str(LITE0), 224, None, True),
    "resnet50": Row("resnet50", 224, 500, False),
    "vgg16": Row("vgg16", 224, 200, False),
}


def flops_per_image(backbone: str, size: int) -> int:
    from bench.flops import model_flops
    from featurecache.extractor import Extractor

    if backbone.endswith(".keras"):
        import keras

        # a model file may take any H and W, leaving its layers' shapes unknown: fix them at `size`
        inner = keras.saving.load_model(backbone, safe_mode=True)
        return model_flops(keras.models.clone_model(inner, input_tensors=keras.Input((size, size, 3))))
    return model_flops(Extractor(backbone, "gap", size, "none", 0, "float32").model)


def features_of(cache: Path) -> np.ndarray:
    from featurecache.cache import read_cache

    c = read_cache(cache)
    return np.concatenate([c.train.features, c.test.features]).astype(np.float64)


def cosines(a: np.ndarray, b: np.ndarray) -> dict:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return {"min": float(cos.min()), "mean": float(cos.mean())}


def lr_accuracy(cache: Path, work: Path, tag: str) -> float | None:
    from bench.report import read_classify_runs

    out = work / f"{tag}-lr"
    try:
        run_step([sys.executable, "-m", "featurecache", "compare", "--model", "lr", "--features", str(cache),
                  "--out-dir", str(out)], work / f"{tag}-lr.log")
    except StepFailed as e:
        click.echo(f"bench.runtime: LR on {cache} failed: {e}", err=True)
        return None
    return read_classify_runs(out).get("lr", {}).get("test_accuracy")


def run_row(name: str, row: Row, data: str, work: Path, rounds: int, env: dict) -> dict:
    """The three processes of one row, alternating over `rounds`; the best wall time of each."""
    lim = ["--limit", str(row.limit)] if row.limit else []
    weights = [] if row.backbone.endswith(".keras") else ["--weights", "none"]
    plain_out = work / f"{name}-plain.npy"
    commands = {
        "plain": [sys.executable, "-m", "bench.plain", "--data-dir", data, "--backbone", row.backbone,
                  "--size", str(row.size), "--out", str(plain_out), "--json", str(work / f"{name}-plain.json"), *lim],
        **{p: [sys.executable, "-m", "extract", "--data-dir", data, "--backbone", row.backbone, "--image-size",
               str(row.size), *weights, *lim, "--out", str(work / f"{name}-{p}.h5"), "--force",
               *(["--precision", p] if p != "float32" else [])]
           for p in ("float32", "bfloat16")},
    }
    best: dict[str, dict] = {}
    for r in range(rounds):
        order = list(commands) if r % 2 == 0 else list(reversed(commands))  # alternate who goes first
        for kind in order:
            click.echo(f"bench.runtime: {name} {kind} (round {r + 1} of {rounds}) ...", err=True)
            step = run_step(commands[kind], work / f"{name}-{kind}-{r}.log", env=env)
            if kind not in best or step["wall_s"] < best[kind]["wall_s"]:
                best[kind] = {k: step[k] for k in ("wall_s", "peak_rss_mb", "others_cpu")}
            click.echo(f"bench.runtime: {name} {kind} {step['wall_s']:.1f} s, {step['peak_rss_mb']:.0f} MB "
                       f"(others used {step['others_cpu']} of the cores)", err=True)
    images = len(np.load(plain_out, mmap_mode="r"))
    plain = np.load(plain_out).astype(np.float64)
    result = {"backbone": Path(row.backbone).stem, "size": row.size, "images": images, "steps": best}
    for p in ("float32", "bfloat16"):
        result[f"cosine_{p}"] = cosines(features_of(work / f"{name}-{p}.h5"), plain)
        if row.accuracy:
            result[f"lr_accuracy_{p}"] = lr_accuracy(work / f"{name}-{p}.h5", work, f"{name}-{p}")
    from featurecache.cache import read_attrs

    result["runtime"] = read_attrs(work / f"{name}-float32.h5").get("runtime", "")
    result["batch_size"] = read_attrs(work / f"{name}-float32.h5").get("batch_size")
    return result


def shares(result: dict, flops: int, peak: dict) -> None:
    """Images/s, speed-up against plain and share of the measured matmul peak, per step."""
    n = result["images"]
    for kind, step in result["steps"].items():
        step["images_per_s"] = n / step["wall_s"]
        step["speedup"] = result["steps"]["plain"]["wall_s"] / step["wall_s"]
        dtype = "bfloat16" if kind == "bfloat16" else "float32"
        step["peak_share"] = step["images_per_s"] * flops / 1e9 / peak[dtype]["gflops"]
    result["gflop_per_image"] = flops / 1e9


def table(rows: list[dict]) -> str:
    lines = ["| row | images | plain float32 | extract float32 | extract bfloat16 | cosine float32 (min/mean) | "
             "cosine bfloat16 (min/mean) | LR accuracy float32 / bfloat16 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["steps"]

        def cell(k):
            return (f"{s[k]['wall_s']:.1f} s, {s[k]['images_per_s']:.1f} img/s, **{s[k]['speedup']:.2f}x**, "
                    f"{100 * s[k]['peak_share']:.0f}% of peak, {s[k]['peak_rss_mb']:.0f} MB")

        acc = (f"{100 * r['lr_accuracy_float32']:.1f} / {100 * r['lr_accuracy_bfloat16']:.1f}"
               if r.get("lr_accuracy_float32") is not None and r.get("lr_accuracy_bfloat16") is not None else "-")
        lines.append(f"| {r['backbone']} {r['size']} px ({r['runtime']}, batch {r['batch_size']}) | {r['images']:,} | "
                     f"{cell('plain')} | {cell('float32')} | {cell('bfloat16')} | "
                     f"{r['cosine_float32']['min']:.6f} / {r['cosine_float32']['mean']:.6f} | "
                     f"{r['cosine_bfloat16']['min']:.4f} / {r['cosine_bfloat16']['mean']:.4f} | {acc} |")
    return "\n".join(lines)


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=DEFAULT_DATA, show_default=True)
@click.option("--rows", default="lite0,resnet50,vgg16", show_default=True, help="Comma list of lite0, resnet50, vgg16.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Alternating rounds of the three processes of each row; the best of each is kept.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/bench-runtime"),
              show_default=True)
@click.option("--quick", is_flag=True, help="Smoke run: 8 images per split at 64 px (Lite0 at its own size), "
                                           "small matmuls.")
def cli(data_dir: Path, rows: str, rounds: int, out_dir: Path, quick: bool) -> None:
    """Plain Keras predict against this project's extract, float32 and bfloat16, as whole processes."""
    names = [r.strip() for r in rows.split(",") if r.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown or not names:
        raise click.BadParameter(f"{rows!r}: pick from {', '.join(ROWS)}", param_hint="--rows")
    if "lite0" in names and not LITE0.is_file():
        click.echo(f"bench.runtime: {LITE0} is missing: the lite0 row is left out", err=True)
        names.remove("lite0")
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = {"FEATURECACHE_FEATURES_DIR": str(work)}  # features/LATEST of the user stays as it is
    started = time.perf_counter()
    try:
        peak = job("peak", ["--sizes", "32", "--matmul-sizes", "512,1024" if quick else "2048,4096"], work, "peak")
        results = []
        for name in names:
            row = ROWS[name]
            if quick:
                row = Row(row.backbone, row.size if name == "lite0" else 64, 8, row.accuracy)
            result = run_row(name, row, str(Path(data_dir).resolve()), work, rounds, env)
            shares(result, flops_per_image(row.backbone, row.size), peak["peak"])
            results.append(result)
    except StepFailed as e:
        raise click.ClickException(str(e)) from None
    report = {"command": "python -m bench.runtime " + " ".join(sys.argv[1:]), "cpu": peak["cpu"],
              "cores": peak["cores"], "cpu_bf16": peak["cpu_bf16"], "cpu_amx": peak["cpu_amx"],
              "peak": peak["peak"], "rows": results, "bench_wall_s": time.perf_counter() - started}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "runtime.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    head = (f"{peak['cpu']}, {peak['cores']} cores, AVX-512 BF16 {peak['cpu_bf16']}, AMX {peak['cpu_amx']}; "
            f"matmul peak float32 {peak['peak']['float32']['gflops']:.0f}, bfloat16 "
            f"{peak['peak']['bfloat16']['gflops']:.0f} GFLOP/s; {report['bench_wall_s']:.0f} s in all")
    text = f"`{report['command']}`\n\n{head}\n\n{table(results)}\n"
    (out_dir / "runtime.md").write_text(text)
    click.echo(text)
    for h5 in work.glob("*.h5"):
        h5.unlink()


def main() -> None:
    cli(prog_name="python -m bench.runtime")


if __name__ == "__main__":
    main()
