"""--runtime: OpenVINO's float32 features equal TensorFlow's; auto without OpenVINO; resuming across runtimes.

OpenVINO runs the Extractor's own Keras graph (converted), so its float32 features are compared with
that same graph run by TensorFlow, on real CIFAR-10 fixture images, for every backbone of the table and
for the real EfficientNet-Lite0 model file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_FIXTURE, ROOT, SHARED_DATA
from featurecache.backbones import BACKBONES
from featurecache.cache import partial_dir, read_attrs, read_cache

LITE0 = SHARED_DATA.parent / "models" / "efficientnet_lite0_imagenet_notop.keras"
# the interpreter with OpenVINO made unimportable, as on a machine without the optional extra
NO_OPENVINO = "import sys; sys.modules['openvino'] = None; "


def cifar_images(n: int) -> np.ndarray:
    from extract.datasets import load_dataset

    data = load_dataset(str(CIFAR_FIXTURE), 32, n, 0.2, 0)
    return data.splits["train"].read(0, n).images  # (n, 32, 32, 3) uint8, real photos


def assert_float32_equal(ov: np.ndarray, tf: np.ndarray) -> None:
    """Equal within float32 rounding: every row's cosine 1 to 6 digits, differences tiny against the scale."""
    assert ov.shape == tf.shape and ov.dtype == np.float32
    cos = (ov * tf).sum(1) / (np.linalg.norm(ov, axis=1) * np.linalg.norm(tf, axis=1))
    assert cos.min() > 0.999999, cos.min()
    assert np.abs(ov - tf).max() <= 1e-4 * np.abs(tf).max(), (np.abs(ov - tf).max(), np.abs(tf).max())


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_openvino_float32_equals_tensorflow_on_every_backbone(backbone):
    pytest.importorskip("openvino")
    from featurecache.extractor import Extractor

    extractor = Extractor(backbone, "gap", 32, "none", 0, "float32", native_size=32, runtime="openvino")
    images = cifar_images(6)
    got = extractor(images)                                  # OpenVINO, compiled for this batch
    want = extractor.model(images, training=False).numpy()   # the same Keras graph on TensorFlow
    assert_float32_equal(got, want)
    assert extractor.identity()["precision_runtime"] == "" and extractor.record()["runtime"] == "openvino"


@pytest.mark.slow
@pytest.mark.skipif(not LITE0.is_file(), reason="the real EfficientNet-Lite0 model file is not in ../shared/models")
def test_openvino_float32_equals_tensorflow_on_the_real_model_file():
    pytest.importorskip("openvino")
    from featurecache.extractor import Extractor

    extractor = Extractor(str(LITE0), "gap", None, "imagenet", 0, "float32", native_size=32, runtime="openvino")
    extractor.batch_size = 4
    images = cifar_images(5)  # one full batch of 4 and a padded one of 1
    got = np.concatenate([extractor(images[:4]), extractor(images[4:])])
    assert_float32_equal(got, extractor.model(images, training=False).numpy())
    assert got.std() > 0.01  # real ImageNet features, not zeros


def run_python(code: str, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home"), "PYTHONUNBUFFERED": "1"}
    env.pop("FEATURECACHE_TF_LOGS", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def extract_code(out: Path, *extra: str, prefix: str = "") -> str:
    args = ["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--limit", "24", "--out", str(out), *extra]
    return prefix + f"import sys; from extract.cli import main; sys.argv = ['extract'] + {args!r}; main()"


@pytest.mark.slow
def test_auto_falls_back_to_tensorflow_without_openvino_and_openvino_asks_to_install_it(tmp_path):
    out = tmp_path / "auto.h5"
    r = run_python(extract_code(out, prefix=NO_OPENVINO), tmp_path)
    assert r.returncode == 0, r.stderr
    assert "float32 on tensorflow" in r.stdout
    assert read_attrs(out)["runtime"] == "tensorflow"

    r = run_python(extract_code(tmp_path / "ov.h5", "--runtime", "openvino", prefix=NO_OPENVINO), tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert lines[-1].startswith("Error: --runtime openvino needs the openvino package") and "pip install" in lines[-1]
    assert not (tmp_path / "ov.h5").exists()


# the child kills itself (SIGKILL) right after writing its second checkpoint part: an interrupted run on disk
KILL_AFTER_TWO_PARTS = """import os, signal, sys
from extract import pipeline
save = pipeline.Checkpoints.save
def save_then_die(self, path, part, _n=[0]):
    save(self, path, part)
    _n[0] += 1
    if _n[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
pipeline.Checkpoints.save = save_then_die
"""


def interrupted(out: Path, tmp_path: Path, *extra: str) -> None:
    r = run_python(extract_code(out, "--batch-size", "8", "--checkpoint-every", "8", *extra,
                                prefix=KILL_AFTER_TWO_PARTS), tmp_path)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists() and len(list(partial_dir(out).glob("train-*.npz"))) == 2


@pytest.mark.slow
def test_a_float32_run_resumes_on_the_other_runtime_with_the_same_features(tmp_path):
    pytest.importorskip("openvino")
    whole, resumed = tmp_path / "whole.h5", tmp_path / "resumed.h5"
    r = run_python(extract_code(whole, "--runtime", "tensorflow", "--batch-size", "8"), tmp_path)
    assert r.returncode == 0, r.stderr
    interrupted(resumed, tmp_path, "--runtime", "tensorflow")
    r = run_python(extract_code(resumed, "--runtime", "openvino", "--batch-size", "8", "--checkpoint-every", "8"),
                   tmp_path)
    assert r.returncode == 0, r.stderr
    assert "train: resuming at row 16 of 24" in r.stderr and "float32 on openvino" in r.stdout
    a, b = read_cache(whole), read_cache(resumed)
    for split in ("train", "test"):
        assert_float32_equal(getattr(b, split).features, getattr(a, split).features)
        assert list(getattr(b, split).sources) == list(getattr(a, split).sources)
    assert b.attrs["runtime"] == "openvino" and b.attrs["precision_runtime"] == ""


@pytest.mark.slow
def test_a_bfloat16_run_is_not_resumed_on_the_other_runtime(tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "bf16.h5"
    interrupted(out, tmp_path, "--runtime", "tensorflow", "--precision", "bfloat16")
    manifest = json.loads((partial_dir(out) / "manifest.json").read_text())
    assert manifest["identity"]["precision_runtime"] == "tensorflow"
    before = sorted(p.name for p in partial_dir(out).iterdir())
    r = run_python(extract_code(out, "--runtime", "openvino", "--precision", "bfloat16", "--batch-size", "8",
                                "--checkpoint-every", "8"), tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1].startswith("Error: ") and "precision_runtime 'tensorflow' != 'openvino'" in lines[-1]
    assert sorted(p.name for p in partial_dir(out).iterdir()) == before and not out.exists()


def test_a_reduced_precision_cache_runs_on_the_runtime_that_made_it():
    """float32 caches take the runtime asked for; a bfloat16 cache its own, another is one UserError."""
    from featurecache.errors import UserError
    from featurecache.extractor import cache_runtime
    from featurecache.runtime import openvino_module

    assert cache_runtime({"precision": "float32", "runtime": "openvino"}, "tensorflow") == "tensorflow"
    assert cache_runtime({"precision": "bfloat16"}, "auto") == "tensorflow"   # made before runtimes were recorded
    with pytest.raises(UserError, match="computed in bfloat16 on tensorflow.*--runtime tensorflow"):
        cache_runtime({"precision": "bfloat16", "runtime": "tensorflow"}, "openvino")
    if openvino_module() is not None:
        assert cache_runtime({"precision": "bfloat16", "runtime": "openvino"}, "auto") == "openvino"
