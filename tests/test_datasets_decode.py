"""Issue 13 item 2: `load_image` decodes a photo by what it is. Every PIL mode a folder
can hold gives (size, size, 3) uint8 RGB, and 16-bit / float images are scaled to 8
bits, not clipped: a 16-bit copy of an 8-bit picture gives the same pixels (within 1)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS_FIXTURE
from featurecache.images import load_image

SIZE = 24


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo as (48, 48, 3) uint8: the reference every mode is compared with."""
    with Image.open(PHOTOS_FIXTURE / "train" / "cats" / "cat.1.jpg") as im:
        return np.asarray(im.convert("RGB").resize((48, 48)), dtype=np.uint8)


def gray(photo: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(photo).convert("L"))  # (48, 48) uint8


def png16_rgb(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # bit depth 16, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def decoded(path: Path) -> np.ndarray:
    image = load_image(path, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    return image.astype(int)


def reference(tmp_path: Path, pixels: np.ndarray, mode: str = "RGB") -> np.ndarray:
    path = tmp_path / f"ref-{mode}.png"
    Image.fromarray(pixels, mode).save(path)
    return decoded(path)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "CMYK", "LA"])
def test_8bit_modes_decode_like_their_rgb(tmp_path, photo, mode):
    im = Image.fromarray(photo).convert(mode)
    assert im.mode == mode
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, fmt)
    with Image.open(path) as back:
        assert back.mode == mode
    want = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=int)
    got = decoded(path)
    tolerance = 8 if fmt == "JPEG" else 1  # JPEG is lossy; alpha 255 composites to the pixel itself
    assert np.abs(got - want).mean() < tolerance
    assert got.std() > 5


def test_16bit_grayscale_png_matches_its_8bit_equivalent(tmp_path, photo):
    g8 = gray(photo)
    path = tmp_path / "g16.png"
    Image.fromarray(g8.astype(np.uint16) * 257).save(path)  # mode I;16
    with Image.open(path) as im:
        assert im.mode == "I;16"
    got, want = decoded(path), reference(tmp_path, g8, "L")
    assert np.abs(got - want).max() <= 1
    assert (got < 250).mean() > 0.5  # not the all-255 of a clipped 16-bit image


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16bit_tiff_modes_are_scaled_not_clipped(tmp_path, photo, mode):
    g16 = gray(photo).astype(np.uint16) * 257  # (48, 48) 0..65535
    if mode == "I":
        im = Image.fromarray(g16.astype(np.int32), "I")
    elif mode == "I;16":
        im = Image.fromarray(g16)
    else:
        im = Image.frombytes("I;16B", (48, 48), g16.astype(">u2").tobytes())
    path = tmp_path / "x.tif"
    im.save(path)
    with Image.open(path) as back:
        assert back.mode == mode
    assert np.abs(decoded(path) - reference(tmp_path, gray(photo), "L")).max() <= 1


def test_float_image_in_0_1_is_scaled_by_255(tmp_path, photo):
    f = gray(photo).astype(np.float32) / 255.0
    path = tmp_path / "f.tif"
    Image.fromarray(f, "F").save(path)
    with Image.open(path) as back:
        assert back.mode == "F"
    assert np.abs(decoded(path) - reference(tmp_path, gray(photo), "L")).max() <= 1


def test_float_and_int_images_of_another_range_are_stretched(tmp_path, photo):
    g = gray(photo).astype(np.float64)
    stretched = np.rint((g - g.min()) * 255 / (g.max() - g.min())).astype(np.uint8)
    for mode, values in (("F", (g * 1000 - 5000).astype(np.float32)), ("I", (g.astype(np.int32) * 100_000))):
        path = tmp_path / f"{mode}.tif"
        Image.fromarray(values, mode).save(path)
        assert np.abs(decoded(path) - reference(tmp_path, stretched, "L")).max() <= 1, mode


def test_16bit_per_channel_rgb_png_matches_its_8bit_equivalent(tmp_path, photo):
    path = tmp_path / "rgb16.png"
    png16_rgb(path, photo.astype(np.uint16) * 257)
    with Image.open(path) as im:
        assert im.size == (48, 48)
    assert np.abs(decoded(path) - reference(tmp_path, photo)).max() <= 1


def test_16bit_pngs_give_the_features_of_their_8bit_equivalents(tmp_path, photo):
    """Through the real extractor (VGG16, random weights, the default precision): a 16-bit gray and a
    16-bit RGB PNG give the features of the same picture saved in 8 bits, within bfloat16 tolerance."""
    from featurecache.extractor import Extractor
    from featurecache.precision import resolve_precision

    Image.fromarray(gray(photo).astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    png16_rgb(tmp_path / "rgb16.png", photo.astype(np.uint16) * 257)
    Image.fromarray(gray(photo)).save(tmp_path / "gray8.png")
    Image.fromarray(photo).save(tmp_path / "rgb8.png")
    extractor = Extractor("vgg16", "gap", 32, "none", precision=resolve_precision("auto"))
    batch = np.stack([load_image(tmp_path / name, 32) for name in ("gray16.png", "gray8.png", "rgb16.png", "rgb8.png")])
    f = extractor(batch)  # (4, 512)
    for a, b in ((0, 1), (2, 3)):
        assert np.linalg.norm(f[a] - f[b]) / np.linalg.norm(f[b]) < 0.05
    assert np.linalg.norm(f[0] - f[3]) / np.linalg.norm(f[3]) > 0.01  # gray and colour differ: the check can fail
