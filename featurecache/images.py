"""Photos: decoding any image file to RGB pixels, and walking a folder of them.

    load_image      a photo -> (size, size, 3) uint8 RGB; a file that cannot be used raises ImageProblem
    ImageProblem    why one image file cannot be used, in a few words: a reason to skip it
    open_image      Pillow's Image.open with the decompression-bomb limit an exception
    unrecognised    the skip reason for a file Pillow does not recognise
    image_suffixes  the file endings Pillow opens
    walk_images     every image under a folder, and every other file there
    subfolders      a folder's visible child folders, each real folder once
    escape_name, source_path   a row's source (a relative path) to text and back to the file
    source_image    the picture behind one cache row (CIFAR-10 or a photo folder), for galleries

Shared by extract (the folder loader), classify (galleries, attacks, predict) and bench. Pillow is
imported when an image is read; no TensorFlow here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from featurecache.errors import reason

def _to_8bit(im):
    """High-bit-depth single-channel images (I;16*, I, F) -> mode L, scaled, not clipped.

    I;16: value / 257 (65535 -> 255, and a 16-bit copy of an 8-bit image gives its pixels back).
    I: a PNG's I is 16-bit grey (/257); otherwise values in 0..255 are taken as 8-bit, in
    0..65535 as 16-bit, anything else is stretched from its own min..max.
    F: values in 0..1 are scaled by 255, in 0..255 kept, anything else stretched from min..max."""
    from PIL import Image

    a = np.asarray(im).astype(np.float64)  # (h, w)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and (im.format == "PNG" or (lo >= 0 and 255 < hi <= 65535))):
        a = a / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif not (lo >= 0 and hi <= 255):
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


class ImageProblem(OSError):
    """Why one image file cannot be used, in a few words ("not an image", "unreadable: ...", "too large: ..."):
    a reason to skip the file and say so, never a crash. An OSError, as Pillow's own failure to open one is."""


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode any photo to (size, size, 3) uint8 RGB: EXIF orientation honoured, squashed to square.

    Used by extract and predict alike. 16-bit and float images are scaled to 8 bits
    (see `_to_8bit`); transparent images are composited on white. A file that cannot be
    used raises ImageProblem with the reason; an image over Pillow's decompression-bomb
    limit (Image.MAX_IMAGE_PIXELS) is one, decoded by neither."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path) as im:
            return _decode(im, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels, " if found else ""
        raise ImageProblem(f"too large: {pixels}over the decompression-bomb limit of "
                           f"{Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise ImageProblem(unrecognised(path)) from None
    except Exception as e:  # noqa: BLE001 - a broken file fails in many ways; each is a reason to skip it
        raise ImageProblem(f"unreadable: {reason(e)}") from None


def open_image(path: str | os.PathLike):
    """Pillow's Image.open, with an image over the decompression-bomb limit an exception
    (DecompressionBombWarning or DecompressionBombError), never a printed warning."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _decode(im, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    if im.format == "JPEG":
        im.draft("RGB", (size, size))  # decode at reduced scale: much faster for big photos
    ImageOps.exif_transpose(im, in_place=True)  # in place: a copy of every photo cost a tenth of the decode
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != "RGB":   # convert() copies even an RGB image
        im = im.convert("RGB")
    im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def unrecognised(path: str | os.PathLike) -> str:
    """The skip reason for a file whose header Pillow does not recognise: an image ending makes it a broken
    image ("unreadable"), any other ending "not an image"."""
    if os.path.splitext(os.fspath(path))[1].lower() in image_suffixes():
        return "unreadable: Pillow does not recognise its contents as an image"
    return "not an image"


# names that systems and tools leave in photo folders; never images, skipped silently
JUNK_NAMES = {"__macosx", "thumbs.db", "desktop.ini"}


def image_suffixes() -> set[str]:
    """File name endings Pillow can open (.jpg, .jfif, .jpe, .png, .tif, ...), lower case."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _is_image_file(path: str, suffixes: set[str]) -> bool:
    """A known image ending and a header Pillow recognises (the pixels are not decoded)."""
    from PIL import Image

    if os.path.splitext(path)[1].lower() not in suffixes:
        return False
    try:
        with open_image(path):
            return True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return True    # an image, too large to decode: load_image says so
    except Exception:  # noqa: BLE001 - any failure to recognise the header means "not an image"
        return False


def subfolders(folder: str, seen: set[str]) -> list[str]:
    """Visible child folders (symlinks followed) whose real path has not been seen, by name.

    Each one's real path is added to `seen`, so a link back up (`ln -s . loop`) or to a
    sibling is never entered twice."""
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _hidden(entry.name) or not entry.is_dir():
            continue
        real = os.path.realpath(entry.path)
        if real not in seen:
            seen.add(real)
            found.append(entry.path)
    return found


def walk_images(folder: str | os.PathLike, seen: set[str] | None = None) -> tuple[list[str], list[str]]:
    """Every image under `folder`, and every other file there, as paths (sorted, depth first).

    Follows symlinked files and folders but enters each real folder once; skips hidden
    entries (a leading dot), `__MACOSX`, `Thumbs.db` and `desktop.ini` silently. A file
    is an image when its ending is one Pillow knows and Pillow recognises its header;
    other files come back in the second list ("not images")."""
    folder = os.fspath(folder)
    seen = set() if seen is None else seen
    seen.add(os.path.realpath(folder))
    suffixes = image_suffixes()
    images, others = [], []

    def walk(path: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if _hidden(entry.name):
                continue
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in seen:
                    seen.add(real)
                    walk(entry.path)
            elif entry.is_file():
                (images if _is_image_file(entry.path, suffixes) else others).append(entry.path)

    walk(folder)
    return images, others


def escape_name(relative: str) -> str:
    """A relative path as printable UTF-8 text: undecodable bytes of a file name become \\xNN."""
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def source_path(root: str | os.PathLike, source: str) -> Path:
    """The file a row's source names under `root`, undoing `escape_name` where needed."""
    plain = Path(root) / source
    if plain.exists() or "\\x" not in source:
        return plain
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), source.encode("utf-8"))
    return Path(root) / os.fsdecode(raw)


def source_image(kind: str, location: str, source: str, size: int = 64) -> np.ndarray:
    """The picture behind one cache row, for galleries: (h, w, 3) uint8."""
    from featurecache.cifar import cifar10_image

    if kind == "cifar10":
        return cifar10_image(location, source)
    return load_image(source_path(location, source), size)
