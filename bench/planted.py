"""A photo set with known faults, to check the audit against (`classify.workflows.audit`).

`build_planted` copies a class-per-folder photo set with train/ and test/ (the cats-vs-dogs subset
of ../shared/data) and plants, seeded:

    exact leaks      test photos also placed in train/ as they are
    altered leaks    test photos placed in train/ resized, slightly cropped or re-encoded as JPEG
                     at quality 70 (in turn)
    flipped labels   training photos moved to another class's folder

and returns what it planted as sources the cache will name (paths relative to the copy), so a test
or a bench can count what the audit found. Pillow and the standard library only.

    python -m bench.planted --src ../shared/data/cats-vs-dogs-subset --dest /tmp/planted
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np
from PIL import Image

from featurecache.command import Command

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
ALTERATIONS = ("resized", "cropped", "jpeg70")


@dataclass
class Planted:
    """What was planted, as (train source, test source) pairs and flipped training sources."""

    root: str
    leaks: list[tuple[str, str]] = field(default_factory=list)       # (train copy, test original)
    kinds: list[str] = field(default_factory=list)                   # "exact" or an ALTERATIONS entry, per leak
    flipped: list[str] = field(default_factory=list)                 # training sources whose label is wrong


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def alter(src: Path, dest: Path, how: str) -> None:
    """Write `src` to `dest` changed as `how` says: half-size, 6% cropped off each side, or JPEG quality 70."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        if how == "resized":
            im = im.resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR)
        elif how == "cropped":
            dx, dy = int(0.06 * w), int(0.06 * h)
            im = im.crop((dx, dy, w - dx, h - dy))
        im.save(dest, "JPEG", quality=70 if how == "jpeg70" else 90)


def build_planted(src: str | Path, dest: str | Path, exact: int = 10, altered: int = 10, flips: int = 15,
                  seed: int = 0) -> Planted:
    """Copy src (train/<class>/, test/<class>/) to dest and plant the faults; see the module docstring."""
    src, dest = Path(src), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    for photo in photos(src):   # file by file: a read-only source's folder modes are not copied
        target = dest / photo.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (dest / "train").iterdir() if p.is_dir())
    tests = photos(dest / "test")
    trains = photos(dest / "train")
    planted = Planted(str(dest))
    for i, t in enumerate(rng.choice(len(tests), exact + altered, replace=False)):
        photo = tests[t]
        how = "exact" if i < exact else ALTERATIONS[(i - exact) % len(ALTERATIONS)]
        target = dest / "train" / photo.parent.name / f"leak-{how}-{photo.stem}.jpg"
        if how == "exact":
            shutil.copyfile(photo, target.with_suffix(photo.suffix))
            target = target.with_suffix(photo.suffix)
        else:
            alter(photo, target, how)
        planted.leaks.append((target.relative_to(dest).as_posix(), photo.relative_to(dest).as_posix()))
        planted.kinds.append(how)
    for t in rng.choice(len(trains), flips, replace=False):
        photo = trains[t]
        other = classes[(classes.index(photo.parent.name) + 1) % len(classes)]
        target = dest / "train" / other / photo.name
        photo.rename(target)
        planted.flipped.append(target.relative_to(dest).as_posix())
    return planted


@click.command(cls=Command)
@click.option("--src", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A photo folder with train/<class>/ and test/<class>/.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the copy goes (replaced if it exists).")
@click.option("--seed", type=int, default=0, show_default=True)
def cli(src: Path, dest: Path, seed: int) -> None:
    """Copy a photo set with planted leaks and flipped labels; print what was planted as JSON."""
    planted = build_planted(src, dest, seed=seed)
    click.echo(json.dumps(asdict(planted), indent=1))


if __name__ == "__main__":
    cli(prog_name="python -m bench.planted")
