"""The end-to-end model agrees with predict, and `predict --export` gives a SavedModel plain TensorFlow can serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PHOTOS_FIXTURE, classify_run, error_line, invoker, photo_cache
from conftest import tree_snapshot as snapshot


@pytest.fixture(scope="module")
def photo_runs(tmp_path_factory):
    """Real photos -> cache (random VGG16) -> saved LR and RF runs."""
    tmp = tmp_path_factory.mktemp("export")
    cache = photo_cache(tmp)
    return {model: classify_run(cache, tmp / "reports", model) for model in ("lr", "rf")}


def fixture_files():
    from classify.pixel.predict import collect_images

    return [str(f) for f in collect_images((PHOTOS_FIXTURE / "test",))[0]]


invoke = invoker("classify.commands.predict")   # invoke(*args): the predict command in-process


def test_end_to_end_model_agrees_with_predict(photo_runs):
    from classify.pixel import endtoend
    from classify.runs.saved import load_run
    from featurecache.images import load_image
    from classify.pixel.predict import predict_images

    run = load_run(photo_runs["lr"])
    files = [Path(f) for f in fixture_files()]
    expected, _ = predict_images(run, files)
    e2e = endtoend.build(run)
    proba = e2e.proba(np.stack([load_image(f, e2e.input_size) for f in files]))   # (n, C)
    for p, want in zip(proba, expected):
        assert run.class_names[int(np.argmax(p))] == want["class"], want["image"]
        assert float(p.max()) == pytest.approx(want["probability"], abs=0.01)


@pytest.mark.slow
def test_exported_saved_model_in_plain_tensorflow_gives_predicts_classes(photo_runs, tmp_path):
    from featurecache.images import load_image

    out = tmp_path / "export"
    out.mkdir()
    result = invoke("--run", photo_runs["lr"], "--export", out)        # an empty folder is used as it is
    assert result.exit_code == 0, result.output
    first = (out / "model.keras").stat().st_ino
    assert "already holds an export of this run; pass --force" in error_line(
        invoke("--run", photo_runs["lr"], "--export", out), 1)
    result = invoke("--run", photo_runs["lr"], "--export", out, "--force")   # --force replaces an earlier export
    assert result.exit_code == 0, result.output
    ir = ["model.bin", "model.xml"] if (out / "model.xml").exists() else []   # OpenVINO IR where openvino is installed
    assert sorted(p.name for p in out.iterdir()) == sorted(["export.json", "labels.json", "model.keras", "saved_model", *ir])
    assert (out / "model.keras").stat().st_ino != first and not list(tmp_path.glob(".*tmp*"))
    labels = json.loads((out / "labels.json").read_text())
    assert labels == json.loads(photo_runs["lr"].read_text())["class_names"]

    files = fixture_files()
    expected = {p["image"]: p["class"] for p in json.loads(invoke("--run", photo_runs["lr"], *files, "--json").output)["predictions"]}
    size = 32  # the photo cache's input size (random VGG16 at its default 32 px)
    np.save(tmp_path / "pixels.npy", np.stack([load_image(f, size) for f in files]))
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        f"serve = tf.saved_model.load({str(out / 'saved_model')!r}).signatures['serving_default']\n"
        f"labels = json.load(open({str(out / 'labels.json')!r}))\n"
        f"pixels = np.load({str(tmp_path / 'pixels.npy')!r})\n"
        "(probs,) = serve(images=tf.constant(pixels)).values()\n"
        f"files = {files!r}\n"
        "full = [labels[int(np.argmax(list(serve(images=tf.io.decode_image(tf.io.read_file(f), channels=3,"
        " expand_animations=False)[None]).values())[0][0]))] for f in files]\n"
        "assert not any(m.split('.')[0] in ('featurecache', 'classify', 'extract', 'predict') for m in sys.modules)\n"
        "print(json.dumps({'classes': [labels[i] for i in np.argmax(probs.numpy(), 1)], 'full': full,"
        " 'sums': probs.numpy().sum(1).tolist()}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["classes"] == [expected[f] for f in files]               # predict's pixels: the same classes
    assert np.allclose(got["sums"], 1.0, atol=1e-4)
    # whole photos of any size, resized inside the model (TensorFlow's decoder and resize, not Pillow's)
    agree = np.mean([a == expected[f] for a, f in zip(got["full"], files)])
    assert agree >= 0.8, agree


def test_export_refuses_a_forest_and_a_file_as_folder(photo_runs, tmp_path):
    line = error_line(invoke("--run", photo_runs["rf"], "--export", tmp_path / "rf"), 1)
    assert "random-forest" in line and not (tmp_path / "rf").exists()
    (tmp_path / "f").write_text("")
    assert "is a file" in error_line(invoke("--run", photo_runs["lr"], "--export", tmp_path / "f"), 2)
    assert "no IMAGES" in error_line(invoke("--run", photo_runs["lr"]), 1)


def test_export_force_never_removes_a_folder_that_holds_other_files(photo_runs, tmp_path):
    reports = photo_runs["lr"].parent                    # the runs, models, PNGs and index.html of the runs exported
    features = tmp_path / "features"
    features.mkdir()
    (features / "photos.h5").write_bytes((reports.parent / "photos.h5").read_bytes())
    (features / "LATEST").write_text("photos.h5\n")
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "settings.ini").write_text("[a]\n")
    (home / "labels.json").write_text("[]\n")           # one of the export's names, among files that are not
    (home / "notes.txt").write_text("keep me\n")
    for folder in (reports, features, home):
        before = snapshot(folder)
        if folder == home:   # `--export ~ --force` from a shell, in a real process
            proc = subprocess.run(f'"{sys.executable}" -m featurecache predict --run "{photo_runs["lr"]}" --export ~ --force',
                                  shell=True, capture_output=True, text=True, env={**os.environ, "HOME": str(home)},
                                  timeout=120)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
            line = proc.stderr.strip()
        else:
            line = error_line(invoke("--run", photo_runs["lr"], "--export", folder, "--force"), 1)
        assert "not an export's" in line and len(line.splitlines()) == 1, line
        assert snapshot(folder) == before, folder
        assert not list(folder.parent.glob(f".{folder.name}*"))

def test_export_to_an_empty_name_is_one_line(photo_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "has no folder name" in error_line(invoke("--run", photo_runs["lr"], "--export", "/", "--force"), 1)
    (tmp_path / "keep.txt").write_text("x")
    line = error_line(invoke("--run", photo_runs["lr"], "--export", ".", "--force"), 1)
    assert str(tmp_path) in line and "keep.txt" in line and (tmp_path / "keep.txt").read_text() == "x"


@pytest.mark.slow
def test_exported_openvino_ir_alone_gives_predicts_classes(photo_runs, tmp_path):
    """model.xml/model.bin, loaded by OpenVINO with none of this project (nor TensorFlow) imported."""
    pytest.importorskip("openvino")
    from featurecache.images import load_image

    out = tmp_path / "export"
    result = invoke("--run", photo_runs["lr"], "--export", out)
    assert result.exit_code == 0, result.output
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file() and "openvino:" in result.output
    files = fixture_files()
    expected = {p["image"]: p["class"] for p in json.loads(invoke("--run", photo_runs["lr"], *files, "--json").output)["predictions"]}
    np.save(tmp_path / "pixels.npy", np.stack([load_image(f, 32) for f in files]))
    script = (
        "import json, sys, numpy as np, openvino as ov\n"
        f"model = ov.Core().compile_model({str(out / 'model.xml')!r}, 'CPU', {{'INFERENCE_PRECISION_HINT': 'f32'}})\n"
        f"labels = json.load(open({str(out / 'labels.json')!r}))\n"
        f"probs = model(np.load({str(tmp_path / 'pixels.npy')!r}))[0]\n"
        "assert not any(m.split('.')[0] in ('featurecache', 'classify', 'extract', 'predict', 'tensorflow', 'keras')"
        " for m in sys.modules)\n"
        "print(json.dumps({'classes': [labels[i] for i in np.argmax(probs, 1)], 'sums': probs.sum(1).tolist()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["classes"] == [expected[f] for f in files]
    assert np.allclose(got["sums"], 1.0, atol=1e-4)
