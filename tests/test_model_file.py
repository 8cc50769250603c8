"""Any Keras model file as the backbone: the contract, the cache's record of it, bad files, and real accuracy.

Small model files are built here with standard Keras layers; the accuracy test uses the real
ImageNet-trained EfficientNet-Lite0 in ../shared/models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PHOTOS_FIXTURE, SHARED_DATA, error_line, invoke_extract
from featurecache.cache import read_cache
from featurecache.files import sha256

SHARED_MODEL = SHARED_DATA.parent / "models" / "efficientnet_lite0_imagenet_notop.keras"
CATS_DOGS = SHARED_DATA / "cats-vs-dogs-subset"


def tiny_model(path: Path, size: int | None = None, output: str = "map", inputs_shape=None) -> Path:
    """A small convolutional model file of standard layers: RGB 0..255 in, a 4-D map or a 2-D vector out."""
    from featurecache.tfimport import keras

    k = keras()
    k.utils.set_random_seed(0)
    x = inp = k.Input(inputs_shape or (size, size, 3), name="pixels")
    x = k.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(x)
    x = k.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(x)
    x = k.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    if output == "vector":
        x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    elif output == "3d":
        x = k.layers.Reshape((-1, 16), name="to3d")(x)
    k.Model(inp, x, name="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"any": tiny_model(d / "tiny_any.keras"), "fixed": tiny_model(d / "tiny_fixed.keras", size=48),
            "vector": tiny_model(d / "tiny_vec.keras", output="vector")}


def extract(out: Path, *args):
    return invoke_extract("--data-dir", PHOTOS_FIXTURE, "--out", out, *args)


def test_a_model_file_is_a_backbone_recorded_in_the_cache(tiny_files, tmp_path):
    out = tmp_path / "c.h5"
    r = extract(out, "--backbone", tiny_files["any"], "--image-size", 64)
    assert r.exit_code == 0, r.output
    cache = read_cache(out)
    a = cache.attrs
    # 64 px -> two stride-2 convolutions -> a 15x15x16 map, averaged to 16 features
    assert cache.train.features.shape[1] == 16 == a["feature_dim"]
    assert a["backbone"] == "tiny_any" and a["backbone_file"] == str(tiny_files["any"].resolve())
    assert a["backbone_sha256"] == sha256(tiny_files["any"]) and a["model_name"] == "tiny"
    assert a["weights"] == "file" and a["feature_layer"] == "" and a["image_size"] == 64
    # the same command again reuses it; another layer is another cache
    again = extract(out, "--backbone", tiny_files["any"], "--image-size", 64)
    assert again.exit_code == 0 and "already up to date" in again.stdout
    other = extract(out, "--backbone", tiny_files["any"], "--image-size", 64, "--feature-layer", "conv1")
    assert other.exit_code == 1 and "feature_layer" in error_line(other)


def test_flatten_and_inner_layers_and_sizes(tiny_files, tmp_path):
    r = extract(tmp_path / "f.h5", "--backbone", tiny_files["any"], "--image-size", 32, "--pooling", "flatten")
    assert r.exit_code == 0, r.output
    assert read_cache(tmp_path / "f.h5").attrs["feature_dim"] == 7 * 7 * 16
    r = extract(tmp_path / "l.h5", "--backbone", tiny_files["any"], "--image-size", 32, "--feature-layer", "conv1")
    assert r.exit_code == 0, r.output
    assert read_cache(tmp_path / "l.h5").attrs["feature_dim"] == 8
    # a fixed input size is the default, and another size is refused
    r = extract(tmp_path / "x.h5", "--backbone", tiny_files["fixed"])
    assert r.exit_code == 0, r.output
    assert read_cache(tmp_path / "x.h5").attrs["image_size"] == 48
    r = extract(tmp_path / "y.h5", "--backbone", tiny_files["fixed"], "--image-size", 64)
    assert r.exit_code == 1 and "takes 48 px images only" in error_line(r)
    # without a fixed size and without --image-size: 224 px
    r = extract(tmp_path / "z.h5", "--backbone", tiny_files["vector"], "--limit", 2)
    assert r.exit_code == 0, r.output
    assert read_cache(tmp_path / "z.h5").attrs["image_size"] == 224


def test_predict_refuses_a_changed_model_file(tiny_files, tmp_path):
    import shutil

    from classify.cli import cli as classify_cli
    from classify.commands.predict import cli as predict_cli

    model = tmp_path / "mine.keras"
    shutil.copy(tiny_files["vector"], model)
    out = tmp_path / "c.h5"
    assert extract(out, "--backbone", model, "--image-size", 40).exit_code == 0
    r = CliRunner().invoke(classify_cli, ["--model", "lr", "--features", str(out), "--out-dir", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "r").glob("*-run.json"))
    ok = CliRunner().invoke(predict_cli, ["--run", str(run), str(PHOTOS_FIXTURE / "test"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.stdout)["predictions"]) == 6
    tiny_model(model, output="map")  # other weights and layers under the same name
    r = CliRunner().invoke(predict_cli, ["--run", str(run), str(PHOTOS_FIXTURE / "test")])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    line = error_line(r)
    assert "SHA-256" in line and "--allow-weights-mismatch" in line
    assert sha256(model)[:16] in line and read_cache(out).attrs["backbone_sha256"][:16] in line


# --------------------------------------------------------------------------- bad model files


def lambda_model(path: Path) -> Path:
    from featurecache.tfimport import keras

    k = keras()
    inp = k.Input((None, None, 3))
    k.Model(inp, k.layers.Lambda(lambda t: t * 2.0)(inp)).save(path)
    return path


def dense_model(path: Path) -> Path:
    from featurecache.tfimport import keras

    k = keras()
    inp = k.Input((10,))
    k.Model(inp, k.layers.Dense(4)(inp)).save(path)
    return path


@pytest.mark.parametrize("make, words", [
    (lambda p: (p.write_text("not a model"), p)[1], "cannot be loaded as a Keras model"),
    (lambda_model, "cannot be loaded as a Keras model"),
    (dense_model, "not (N, H, W, 3)"),
    (lambda p: tiny_model(p, output="3d"), "(N, D) or a feature map"),
], ids=["not-a-model", "custom-code", "not-images", "3d-output"])
def test_bad_model_files_get_one_line_and_write_nothing(make, words, tmp_path):
    model = make(tmp_path / "bad.keras")
    out = tmp_path / "out" / "c.h5"
    r = extract(out, "--backbone", model, "--image-size", 32)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, r.output
    assert words in error_line(r)
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_bad_backbone_names_and_layers(tiny_files, tmp_path):
    r = extract(tmp_path / "c.h5", "--backbone", "vgg17")  # refused at parse time, before anything runs
    assert r.exit_code == 2 and "'vgg17' is neither a known backbone" in r.stderr.strip().splitlines()[-1]
    (tmp_path / "weights.h5").write_bytes(b"x")
    r = extract(tmp_path / "c.h5", "--backbone", tmp_path / "weights.h5")
    assert r.exit_code == 2 and "is not a Keras model file (.keras)" in r.stderr.strip().splitlines()[-1]
    r = extract(tmp_path / "c.h5", "--backbone", tiny_files["any"], "--feature-layer", "nope", "--image-size", 32)
    assert r.exit_code == 1 and "--feature-layer nope is not a layer" in error_line(r)
    r = extract(tmp_path / "c.h5", "--backbone", tiny_files["any"], "--weights", "none")
    assert r.exit_code == 1 and "brings its own weights" in error_line(r)
    assert not list(tmp_path.glob("c.h5*"))  # not even the lock: nothing is locked before the model builds


# --------------------------------------------------------------------------- real ImageNet weights


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MODEL.is_file() or not CATS_DOGS.is_dir(), reason="../shared/models or data absent")
def test_real_imagenet_backbone_separates_cats_from_dogs(tmp_path):
    """The first test that fails if the image pipeline (decode, resize, preprocessing) is wrong."""
    from classify.cli import cli as classify_cli

    out = tmp_path / "cvd.h5"
    r = invoke_extract("--data-dir", CATS_DOGS, "--backbone", SHARED_MODEL, "--out", out)
    assert r.exit_code == 0, r.output
    cache = read_cache(out)
    assert cache.attrs["image_size"] == 224 and cache.attrs["feature_dim"] == 1280
    assert cache.attrs["model_name"] == "efficientnet_lite0"
    r = CliRunner().invoke(classify_cli, ["--model", "lr", "--features", str(out), "--out-dir", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    record = json.loads(next((tmp_path / "r").glob("*-run.json")).read_text())
    assert record["metrics"]["accuracy"] >= 0.95, record["metrics"]


def test_predict_refuses_a_changed_weights_file_unless_allowed(tmp_path):
    """A Keras application with --weights PATH: the cache records the file's SHA-256, and predict compares it."""
    from classify.cli import cli as classify_cli
    from featurecache.tfimport import keras
    from classify.commands.predict import cli as predict_cli

    k = keras()

    def weights(seed: int) -> Path:
        k.utils.set_random_seed(seed)
        base = k.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
        base.save_weights(tmp_path / "mine.weights.h5")
        return tmp_path / "mine.weights.h5"

    out = tmp_path / "c.h5"
    r = extract(out, "--backbone", "mobilenetv2", "--weights", weights(0))
    assert r.exit_code == 0, r.output
    assert read_cache(out).attrs["weights_sha256"] == sha256(tmp_path / "mine.weights.h5")
    r = CliRunner().invoke(classify_cli, ["--model", "lr", "--features", str(out), "--out-dir", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "r").glob("*-run.json"))
    photo = str(PHOTOS_FIXTURE / "test" / "cats" / "cat.4001.jpg")
    assert CliRunner().invoke(predict_cli, ["--run", str(run), photo]).exit_code == 0
    weights(1)  # other weights under the same name
    r = CliRunner().invoke(predict_cli, ["--run", str(run), photo])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    line = error_line(r)
    assert "mine.weights.h5 has SHA-256" in line and "--allow-weights-mismatch" in line
    r = CliRunner().invoke(predict_cli, ["--run", str(run), photo, "--allow-weights-mismatch"])
    assert r.exit_code == 0, r.output
