"""`python -m extract` / `make features`: images -> features/<name>.h5.

Reads CIFAR-10 (Keras' download, or --data-dir with the original python
layout) or a folder of photos with one subfolder per class; writes one HDF5
cache under features/ and points features/LATEST at it for `classify`.

    python -m extract --data-dir ../shared/data/cifar10-subset/cifar-10-batches-py --weights none
    python -m extract ... --shard 0/4                  # one slice; then:
    python -m extract merge --out features/x.h5 features/x.shard-*-of-4.h5
    python -m extract ... --engine ray --workers 8     # a Ray Data pipeline (docs/distributed.md)
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from extract.api import run_extraction
from extract.config import ExtractConfig
from featurecache.backbones import BACKBONES, POOLINGS, PRECISIONS
from featurecache.cache import features_dir, partial_dir, set_latest
from featurecache.command import Command, flagged
from featurecache.errors import UserError
from featurecache.runtime import RUNTIMES


class BackboneParam(click.ParamType):
    """--backbone: a table name or an existing .keras file, checked at parse time."""

    name = "NAME|PATH.keras"

    def convert(self, value, param, ctx):
        from featurecache.extractor import check_backbone

        try:
            check_backbone(value)
        except UserError as e:
            self.fail(e.message.split("; ")[0].replace(f"backbone={value!r} ", f"{value!r} "), param, ctx)
        return value


def out_file(ctx, param, value):
    """--out as a Path; "" (an unset make variable) or a folder name such as "." is refused at parse time."""
    if value is None:
        return None
    if not value.strip() or Path(value).name in ("", ".", ".."):
        raise click.BadParameter(f"{value!r} names no file; pass the cache's file path, e.g. --out features/x.h5",
                                 ctx, param)
    return Path(value)


@contextmanager
def flags_named():
    """The library's errors, worded in Python's terms, as one line naming the current command's flags."""
    try:
        yield
    except UserError as e:
        # the command's own flags first; merge's messages may name extract's (`shard='0/4'`: re-run that shard)
        command = click.get_current_context().command
        flags = {p.name: p.opts[0] for c in (cli, command) for p in c.params if isinstance(p, click.Option)}
        raise click.ClickException(flagged(e.message, flags)) from None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(path_type=str), default=None,
              help="Local data: a cifar-10-batches-py folder, cifar-10-python.tar.gz, or a folder of photos "
                   "with one subfolder per class (optionally under train/ and test/). "
                   "Default: CIFAR-10 through Keras' download.")
@click.option("--backbone", type=BackboneParam(), default="vgg16", show_default=True,
              help=f"Frozen feature extractor: a Keras application ({', '.join(sorted(BACKBONES))}) or a .keras "
                   "model file that takes RGB pixels in 0..255, shape (N, H, W, 3), does its own preprocessing "
                   "and returns (N, D) or a feature map (N, h, w, C).")
@click.option("--feature-layer", default=None, metavar="NAME",
              help="Take the output of this inner layer of the backbone instead of its last one.")
@click.option("--pooling", type=click.Choice(POOLINGS), default="gap", show_default=True,
              help="gap: global average pooling (D = channels). flatten: the whole final map "
                   "(vgg16: 512 at 32 px where the map is 1x1, so both give 512; 2,048 at 64 px).")
@click.option("--image-size", type=click.IntRange(min=8, max=2048), default=None,
              help="Resize images to N x N px inside the pipeline, batch by batch. Default: 32 for a Keras "
                   "application, a model file's own input size (224 when it has none).")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (Keras download), none (random, repeatable with --seed), or PATH to a weights file.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for random weights and for the train/test split of single-level folders.")
@click.option("--precision", type=click.Choice(("auto",) + PRECISIONS), default="auto", show_default=True,
              help="Compute precision; auto is float32 on a CPU (exact), bfloat16/float16 on a GPU that runs it "
                   "fast. bfloat16 is faster on CPUs with AVX-512 BF16 or AMX. Caches store float32.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="What runs the model: auto is OpenVINO on a CPU-only machine where it is installed "
                   "(pip install -e '.[runtime]'), TensorFlow otherwise. float32 features agree across runtimes.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per batch. Default: measured per runtime, precision and size.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only N images of each split (quick runs): photo folders take a stratified subset "
                   "seeded by --seed, in the folder's order; CIFAR-10 takes the first N of each split.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share held out for testing when a photo folder has no train/ and test/.")
@click.option("--out", type=click.Path(dir_okay=False), callback=out_file, default=None,
              help="Cache file. Default: features/<dataset>-<backbone>-<pooling>-<size>px[-<setting>...].h5, one "
                   "part for each setting not at its default (random, bf16, aug-flip+crop, 4views, ...). "
                   "Only a cache inside features/ becomes the default of classify (features/LATEST).")
@click.option("--store-dtype", type=click.Choice(("float32", "float16")), default="float32", show_default=True,
              help="Dtype of the stored features; float16 halves huge Flatten caches.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Rows per checkpoint: an interrupted run resumes from the last one.")
@click.option("--force", is_flag=True, help="Rebuild even if the cache exists, discarding any checkpoint.")
@click.option("--no-wait", is_flag=True,
              help="Fail at once if another extract is writing the same cache (default: wait for it).")
@click.option("--verify", is_flag=True,
              help="Photo folders: hash every file again instead of trusting unchanged sizes and times "
                   "recorded in <cache>.index.json.")
@click.option("--shard", default=None, metavar="i/N",
              help="Extract only slice i of N (0..N-1) of every split into <cache>.shard-i-of-N.h5; run all N "
                   "anywhere, then `python -m extract merge --out <cache> SHARDS...`.")
@click.option("--decode-workers", type=click.IntRange(min=1), default=None,
              help="Photo folders: threads decoding images while the model runs.  [default: every core]")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="local: this process. ray: a Ray Data pipeline of --workers actors on this machine or a "
                   "cluster (pip install -e '.[distributed]').")
@click.option("--workers", type=int, default=None,
              help="--engine ray: actors holding the model, one GPU each where there are GPUs; on this machine at "
                   "most one per CPU (GPU), with a note.  [default: 2]")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="--engine ray: the Ray cluster to join (default: RAY_ADDRESS, else Ray on this machine).")
@click.option("--verbose", is_flag=True, help="--engine ray: show Ray's own logs and progress bars.")
@click.option("--augment", default=None, metavar="SPEC",
              help="Also store K augmented views of each training image (/train/view_features): a comma list of "
                   "flip, crop (shift up to 12.5%), rotate (up to --rotate-degrees), color (brightness and "
                   "contrast) and zoom (up to 10%). Needs --views.")
@click.option("--views", type=int, default=None, metavar="K", help="Augmented views per training image (1..64).")
@click.option("--rotate-degrees", type=float, default=None, metavar="DEG",
              help="Largest rotation of `rotate`, 0..180 degrees.  [default: 15]")
@click.option("--test-views", type=int, default=None, metavar="K",
              help="Also store K augmented views of each test image, for test-time augmentation (classify --tta).")
def cli(**options) -> None:
    """Run a frozen ImageNet CNN over a data set once and cache its features in HDF5.

    Interrupted runs (Ctrl-C, SIGTERM, a crash) resume when the same command is
    run again; a finished cache is reused unless --force is given.
    """
    cfg = ExtractConfig(**{k: v for k, v in options.items() if k != "out"},
                        out=str(options["out"]) if options["out"] else None)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    where: dict[str, Path] = {}
    try:
        with flags_named():
            result = run_extraction(cfg, log=lambda msg: click.echo(msg, err=True), progress=True,
                                    started=lambda job: where.update(out=job.out))
    except KeyboardInterrupt:
        # one line; the newline first only ends a progress bar drawn on a terminal
        lead = "\n" if sys.stderr.isatty() else ""
        if "out" in where:
            click.echo(f"{lead}interrupted: finished checkpoints are kept in {partial_dir(where['out'])}; "
                       "run the same command again to resume", err=True)
        else:
            click.echo(f"{lead}interrupted before any features were computed", err=True)
        sys.exit(130)
    report(cfg, result)


def report(cfg: ExtractConfig, result) -> None:
    """What a finished run says on stdout: the cache and its rows, skipped files, the next step of a shard."""
    out = result.out
    if result.status == "up-to-date":
        click.echo(f"{out} is already up to date with these settings: nothing to do (--force rebuilds it)")
        return
    splits = ", ".join(f"{split} {n:,} x {result.feature_dim:,}" for split, n in result.rows.items())
    if cfg.augment:
        splits += f"; {cfg.views} view(s) of each training image" + (
            f", {cfg.test_views} of each test image" if cfg.test_views else "") + f" ({cfg.augment})"
    click.echo(f"wrote {out}: {splits} ({result.precision} on {result.runtime}, batch {result.batch_size}, {result.speed()})")
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        click.echo(f"skipped {len(result.skipped)} unreadable file(s), listed in the cache's 'skipped' attribute: {shown}")
    if cfg.engine == "ray":
        click.echo(result.pool_line())
    if cfg.shard:
        n = cfg.shard.split("/")[1].strip()
        click.echo(f"shard {cfg.shard} done; when all {n} are: python -m extract merge --out "
                   f"{out.parent / (out.name.split('.shard-')[0] + out.suffix)} {out.parent}/"
                   f"{out.name.split('.shard-')[0]}.shard-*-of-{n}{out.suffix}")


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--out", type=click.Path(dir_okay=False), callback=out_file, required=True,
              help="The merged cache, e.g. features/cifar10-vgg16-gap-32px.h5.")
@click.option("--force", is_flag=True, help="Merge again even if --out already holds these shards' cache.")
@click.argument("shards", nargs=-1, type=click.Path(path_type=Path))
def merge_cli(out: Path, force: bool, shards: tuple[Path, ...]) -> None:
    """Merge the shard files of `extract --shard i/N` into one ordinary cache.

    Checks that the shards share one identity, cover every row exactly once and are each
    complete; writes nothing otherwise.
    """
    from extract.shards import merge

    with flags_named():
        result = merge(list(shards), out, force=force, log=lambda msg: click.echo(msg, err=True))
    note = set_latest(features_dir(), out)
    if note:
        click.echo(note, err=True)
    splits = ", ".join(f"{split} {n:,} x {result.feature_dim:,}" for split, n in result.rows.items())
    click.echo(f"merged {result.shards} shards into {out}: {splits}")


def main() -> None:
    """`python -m extract [OPTIONS]` extracts; `python -m extract merge --out CACHE SHARDS...` merges shards."""
    if sys.argv[1:2] == ["merge"]:
        merge_cli(args=sys.argv[2:], prog_name="python -m extract merge")
    cli(prog_name="python -m extract")


__all__ = ["cli", "merge_cli", "main", "UserError"]
