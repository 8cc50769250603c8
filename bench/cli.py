"""`python -m bench` / `make bench`: seed style vs this project, one command, same real images.

Reads CIFAR-10 in its python layout (default ../shared/data/cifar10-subset/cifar-10-batches-py,
5,000 train + 1,000 test images) with random seeded weights (`--weights none`); writes
<out-dir>/bench.json, <out-dir>/bench.md and the logs of every step; prints the table.

    python -m bench --sizes 32,64 --out-dir reports/bench
    python -m bench --quick            # a smoke run on a few images, in well under a minute of compute
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from bench.report import build_report, format_table, write_report
from bench.decode import DEFAULT_PHOTOS
from bench.runner import StepFailed, job, run_step
from featurecache.command import Command

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-py"


def _sizes(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give sizes in px separated by commas, e.g. 32,64") from None
    if not sizes or min(sizes) < 8:
        raise click.BadParameter(f"{value!r}: sizes must be at least 8 px")
    return sizes


def classifiers(cache: Path, work: Path, tag: str) -> dict:
    """Time `featurecache compare` (LR, RF, MLP) on a cache in a fresh process."""
    out_dir = work / f"{tag}-reports"
    step = run_step([sys.executable, "-m", "featurecache", "compare", "--features", str(cache), "--out-dir", str(out_dir)],
                    work / f"{tag}.log")
    from bench.report import read_classify_runs

    return {**step, "models": read_classify_runs(out_dir)}


def compare_again(cache: Path, work: Path, times: int = 2) -> dict:
    """`featurecache compare` on the cache `times` more times, each in a fresh process: {"wall_s": [...]}."""
    walls = [classifiers(cache, work, f"compare_again_{k}")["wall_s"] for k in range(times)]
    return {"wall_s": walls}


def lr_only(cache: Path, work: Path, tag: str) -> dict:
    out_dir = work / f"{tag}-reports"
    step = run_step([sys.executable, "-m", "featurecache", "compare", "--model", "lr", "--features", str(cache),
                     "--out-dir", str(out_dir)],
                    work / f"{tag}.log")
    from bench.report import read_classify_runs

    return {**step, "models": read_classify_runs(out_dir)}


class Recorder:
    """Runs each step, logs it, and keeps its result under its tag."""

    def __init__(self, work: Path):
        self.work, self.steps = work, {}

    def __call__(self, tag: str, fn, *args) -> None:
        click.echo(f"bench: {tag} ...", err=True)
        self.steps[tag] = fn(*args)
        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.steps[tag].items()
                 if k in ("images", "seconds", "wall_s", "peak_rss_mb", "precision", "batch_size", "others_cpu")}
        click.echo(f"bench: {tag} done {json.dumps(shown, allow_nan=False)}", err=True)


def throughput_images(size: int, limit: int) -> int:
    """--scale full: images per split extracted at `size` for its throughput: `limit` at 64 px and
    below, proportionally fewer above (a 224 px image costs 12x a 64 px one), at least 16."""
    return max(16, round(limit * min(1.0, (64 / size) ** 2)))


def extraction_steps(step: Recorder, data: str, sizes: list[int], memory_sizes: list[int], memory_limit: int,
                     lim: list[str], quick: bool, full_limit: int | None = None, precision: str = "auto") -> None:
    """Peaks, then seed predict and extract side by side at each size (pairs run back to back, so each ratio
    compares runs under the same machine load), Ray, float32, and the memory comparison.

    `full_limit` (--scale full): extract runs on the whole set at the first size only; every other
    throughput step runs on `throughput_images` per split; the loader-only decode row is added,
    and the subset bench's Ray, float32 and memory comparisons are left to it."""
    work = step.work
    all_sizes = sorted(set(sizes) | set(memory_sizes))
    mm = "512,1024" if quick else "2048,4096"
    step("peak", job, "peak", ["--sizes", ",".join(map(str, all_sizes)), "--matmul-sizes", mm], work, "peak")
    if full_limit and DEFAULT_PHOTOS.is_dir():
        step("decode_224", job, "decode", ["--size", "224", "--rounds", "2" if quick else "5"], work, "decode_224")
    for s in sizes:
        few = ["--limit", str(throughput_images(s, full_limit))] if full_limit else lim
        step(f"seed_predict_{s}", job, "seed-predict", ["--data-dir", data, "--size", str(s), *few], work,
             f"seed_predict_{s}")
        step(f"extract_{s}", job, "extract",
             ["--data-dir", data, "--size", str(s), "--out", str(work / f"cifar10-{s}px-auto.h5"),
              "--precision", precision, *(lim if s == sizes[0] else few)], work, f"extract_{s}")
    if full_limit:
        return
    # Ray Data with 2 workers against the single process, at 64 px where asked (else the largest size)
    ray_size = 64 if 64 in sizes else max(sizes)
    try:
        if not quick:  # Ray's start-up alone outlasts a quick run
            step(f"extract_ray_{ray_size}", job, "extract-ray",
                 ["--data-dir", data, "--size", str(ray_size), "--workers", "2",
                  "--out", str(work / f"cifar10-{ray_size}px-ray.h5"), *lim], work, f"extract_ray_{ray_size}")
    except StepFailed as e:
        click.echo(f"bench: the Ray engine could not run (pip install -e '.[distributed]'), reported as "
                   f"missing: {e}", err=True)
    base = sizes[0]
    step(f"extract_{base}_float32", job, "extract",
         ["--data-dir", data, "--size", str(base), "--precision", "float32",
          "--out", str(work / f"cifar10-{base}px-float32.h5"), *lim], work, f"extract_{base}_float32")
    for s in memory_sizes:
        step(f"memory_extract_{s}", job, "extract",
             ["--data-dir", data, "--size", str(s), "--limit", str(memory_limit),
              "--out", str(work / f"memory-{s}px.h5")], work, f"memory_extract_{s}")


def one_model(cache: Path, work: Path, model: str) -> dict:
    """Time `python -m classify --model MODEL` on a cache in a fresh process (--scale full)."""
    return run_step([sys.executable, "-m", "classify", "--model", model, "--features", str(cache),
                     "--out-dir", str(work / f"classify_{model}-reports")], work / f"classify_{model}.log")


def training_steps(step: Recorder, data: str, base: int, epochs: int, lim: list[str], full: bool = False) -> None:
    """The seed's end-to-end training, then the classifiers on the caches extracted above: compare (and
    LR on the float32 cache) on the subset; compare and `classify --model mlp` alone at --scale full,
    the MLP being the end-to-end row's classifier."""
    work = step.work
    step(f"seed_train_{base}", job, "seed-train",
         ["--data-dir", data, "--size", str(base), "--epochs", str(epochs), *lim], work, f"seed_train_{base}")
    try:
        step("classify_auto", classifiers, work / f"cifar10-{base}px-auto.h5", work, "classify_auto")
        if not full:   # compare's time, a dozen seconds that vary by one or two: its median of three runs
            step("compare_again", compare_again, work / f"cifar10-{base}px-auto.h5", work)
        if full:
            step("classify_mlp", one_model, work / f"cifar10-{base}px-auto.h5", work, "mlp")
        else:
            step("classify_lr_float32", lr_only, work / f"cifar10-{base}px-float32.h5", work, "classify_lr_float32")
    except StepFailed as e:
        click.echo(f"bench: the classifiers could not run, reported as missing: {e}", err=True)


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=DEFAULT_DATA, show_default=True,
              help="CIFAR-10 python-layout folder (cifar-10-batches-py).")
@click.option("--sizes", default="32,64", show_default=True, callback=_sizes,
              help="Image sizes in px for the images/s and GFLOP/s comparison.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N images of each split (default: all).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Epochs of the seed style's end-to-end training (run for real, not scaled).")
@click.option("--memory-sizes", default="32,128", show_default=True, callback=_sizes,
              help="Sizes of the peak-memory comparison (first is the base).")
@click.option("--memory-limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="Images per split in the memory comparison (500 -> 1,000 images).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where bench.json, bench.md and the step logs go (default: reports/bench, and "
                   "reports/bench-full with --scale full, so neither run overwrites the other).")
@click.option("--quick", is_flag=True,
              help="Smoke run: 100 images per split, 32 px, 1 epoch, 32 vs 64 px memory, small matmuls.")
@click.option("--precision", type=click.Choice(("auto", "float32", "bfloat16")), default="auto", show_default=True,
              help="Precision of the extract rows (auto: float32 on a CPU); bfloat16 for its rows.")
@click.option("--keep-caches", is_flag=True, help="Keep the caches the bench builds (in <out-dir>/work).")
@click.option("--scale", type=click.Choice(("subset", "full")), default="subset", show_default=True,
              help="full: a synthetic 60,000-image CIFAR-10 tiled from --data-dir with flips and shifts; sizes "
                   "32,64,224 (64 and 224 px on --throughput-limit images), each classifier alone, the seed "
                   "style for 2 epochs extrapolated to 10, the photo loader at 224 px.")
@click.option("--throughput-limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="--scale full: images per split for the throughput rows (at 64 px; proportionally fewer "
                   "above), the first size's extract excepted.")
def cli(data_dir: Path, sizes: list[int], limit: int | None, epochs: int, memory_sizes: list[int],
        memory_limit: int, out_dir: Path, quick: bool, precision: str, keep_caches: bool, scale: str,
        throughput_limit: int) -> None:
    """Benchmark the seed style (VGG16 float32 on one big array, 10 epochs end to end) against
    extract-once + LR/RF/MLP on the cache, and check the performance targets of issue 4."""
    out_dir = out_dir or Path("reports/bench-full" if scale == "full" else "reports/bench")
    if quick:
        sizes, limit, epochs, memory_sizes, memory_limit = [32], limit or 100, 1, [32, 64], min(memory_limit, limit or 100)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    data = str(Path(data_dir).resolve())
    full = None
    if scale == "full":
        from bench.tiled import SYNTHETIC

        # in a process of its own: the set's arrays (a GB) would otherwise be every later step's
        # peak memory, as a child's ru_maxrss starts from its parent's at fork
        click.echo("bench: building the synthetic 60,000-image set ...", err=True)
        try:
            run_step([sys.executable, "-m", "bench.tiled", data, str(work / "tiled")], work / "tiled.log")
        except StepFailed as e:
            raise click.ClickException(str(e)) from None
        data = str(work / "tiled" / "cifar-10-batches-py")
        full = "60,000 images " + SYNTHETIC.format(src=Path(data_dir).name)
        if sizes == [32, 64]:   # the default: add 224 px for the matmul-peak shares
            sizes = [32, 64, 224]
        epochs = min(epochs, 2)
    lim = ["--limit", str(limit)] if limit else []
    full_limit = min(limit or throughput_limit, throughput_limit) if full else None
    started = time.perf_counter()
    steps = Recorder(work)
    try:
        extraction_steps(steps, data, sizes, memory_sizes, memory_limit, lim, quick, full_limit, precision)
        if full and (work / f"cifar10-{sizes[0]}px-auto.h5").exists():
            from bench.tiled import group_cache

            group_cache(work / f"cifar10-{sizes[0]}px-auto.h5", data)   # validation holds out whole source images
        training_steps(steps, data, sizes[0], epochs, lim, full=bool(full))
    except StepFailed as e:
        raise click.ClickException(str(e)) from None
    base, steps = sizes[0], steps.steps

    report = build_report(steps, sizes=sizes, base=base, memory_sizes=memory_sizes, epochs=epochs, quick=quick,
                          full=full)
    report["command"] = "python -m bench " + " ".join(sys.argv[1:])
    report["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["bench_wall_s"] = time.perf_counter() - started
    paths = write_report(report, out_dir)
    click.echo(format_table(report))
    click.echo(f"wrote {paths['json']} and {paths['md']} (step logs in {work})")
    if not keep_caches:
        for h5 in work.glob("*.h5"):
            h5.unlink()
        shutil.rmtree(work / "tiled", ignore_errors=True)   # --scale full's synthetic set (180 MB)


def main() -> None:
    cli(prog_name="python -m bench")
