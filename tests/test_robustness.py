"""featurecache robustness (classify.commands.robustness): FGSM/PGD on a real run's test images (real CIFAR-10 fixture, random VGG16 weights)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from conftest import CIFAR_FIXTURE, classify_run, error_line, invoker, run_extract


@pytest.fixture(scope="module")
def lr_run(tiny_cache, tmp_path_factory):
    return classify_run(tiny_cache, tmp_path_factory.mktemp("rob-reports"))


invoke = invoker("classify.commands.robustness")   # invoke(*args): the robustness command in-process


def test_attacked_images_stay_in_the_eps_ball_and_in_0_255(lr_run):
    from classify.pixel import endtoend
    from classify.pixel.attacks import fgsm, pgd, read_batch, run_images
    from classify.runs.saved import load_run

    run = load_run(lr_run)
    e2e = endtoend.build(run)
    images = run_images(run, 12)
    x8 = read_batch(images, 0, 12, e2e.input_size)
    x = x8.astype(np.float32)
    grad = e2e.loss_gradient(x, images.labels)
    assert grad.shape == x.shape and np.abs(grad).max() > 0   # the float twin has a gradient
    rng = np.random.default_rng(0)
    for eps in (1, 2.5, 8, 255):
        for adv in (fgsm(grad, x, eps), pgd(e2e, x, images.labels, eps, 2, 2.0, rng)):
            assert adv.dtype == np.uint8 and adv.shape == x8.shape
            assert np.abs(adv.astype(int) - x8.astype(int)).max() <= math.floor(eps)
        assert np.abs(fgsm(grad, x, eps).astype(int) - x8.astype(int)).max() == math.floor(eps)  # it moves


def test_robustness_writes_results_whose_eps0_is_the_clean_accuracy_and_fgsm_hurts(lr_run, tmp_path):
    record = json.loads(lr_run.read_text())
    result = invoke("--run", lr_run, "--attack", "fgsm", "--attack", "pgd", "--eps", "0,8", "--pgd-steps", "2",
                    "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    stem = lr_run.name.removesuffix("-run.json")
    [written] = tmp_path.glob(f"{stem}-robustness-*.json")
    tag = written.name.removesuffix(".json").rsplit("-", 1)[1]
    doc = json.loads(written.read_text())
    assert (tmp_path / f"{stem}-robustness-{tag}.png").stat().st_size > 0
    assert (tmp_path / f"{stem}-adversarial-{tag}.png").stat().st_size > 0
    acc = {(r["attack"], r["eps"]): r["accuracy"] for r in doc["results"]}
    assert set(acc) == {("fgsm", 0), ("fgsm", 8), ("pgd", 0), ("pgd", 8)}
    assert all(r["n_images"] == record["metrics"]["n_test"] for r in doc["results"])
    clean = record["metrics"]["accuracy"]
    assert clean > 0.15                                   # the run learned something to lose
    assert abs(acc[("fgsm", 0)] - clean) <= 0.005 and abs(acc[("pgd", 0)] - clean) <= 0.005
    assert acc[("fgsm", 8)] < clean and acc[("pgd", 8)] < clean
    assert doc["settings"]["transfer_attack"] is None and doc["settings"]["gradient_precision"] == "float32"


def test_forest_run_is_attacked_by_transfer_from_an_lr_run_of_its_cache(tiny_cache, lr_run, tmp_path):
    rf = classify_run(tiny_cache, lr_run.parent, "rf")   # beside the lr run: found there
    result = invoke("--run", rf, "--eps", "0,8", "--limit", "10", "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    doc = json.loads(next(tmp_path.glob("*-robustness-*.json")).read_text())
    assert doc["settings"]["transfer_attack"]["crafted_on"] == str(lr_run)
    assert doc["results"][0]["n_images"] == 10

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(rf, alone / rf.name)
    shutil.copytree(rf.parent / rf.name.removesuffix("-run.json"), alone / rf.name.removesuffix("-run.json"))
    result = invoke("--run", alone / rf.name, "--limit", "4")
    assert "no gradient" in error_line(result, 1) and "--transfer-from" in error_line(result)


def test_other_attack_settings_write_files_of_their_own(lr_run, tmp_path):
    stem = lr_run.name.removesuffix("-run.json")
    for eps in ("0,4", "0,8", "0,8"):   # the third repeats the second: it replaces that one's files
        result = invoke("--run", lr_run, "--eps", eps, "--limit", "8", "--out-dir", tmp_path)
        assert result.exit_code == 0, result.output
    docs = {tuple(json.loads(p.read_text())["settings"]["eps"]): p for p in tmp_path.glob(f"{stem}-robustness-*.json")}
    assert set(docs) == {(0, 4), (0, 8)}
    assert len(list(tmp_path.glob(f"{stem}-adversarial-*.png"))) == 2


@pytest.mark.parametrize("eps", ["-1", "0,256", "nan", "1,inf", "a,b"])
def test_bad_eps_is_one_line(lr_run, eps):
    assert "--eps" in error_line(invoke("--run", lr_run, "--eps", eps), 1)


def test_missing_foreign_or_tampered_runs_are_refused(lr_run, tmp_path):
    assert "no run record" in error_line(invoke("--run", tmp_path / "nope-run.json"), 1)
    foreign = tmp_path / "x-run.json"
    foreign.write_text(json.dumps({"model": "lr"}))
    assert "not a run record" in error_line(invoke("--run", foreign), 1)
    copy = tmp_path / "copy"
    shutil.copytree(lr_run.parent, copy)
    model = next(copy.glob("*/*-model.h5"))
    model.write_bytes(model.read_bytes() + b"\0")
    assert "checksum differs" in error_line(invoke("--run", copy / lr_run.name), 1)


@pytest.fixture(scope="module")
def model_file_run(tmp_path_factory):
    """A cache of a copy of the CIFAR-10 fixture made with a tiny .keras backbone file, and its lr run."""
    from featurecache.tfimport import keras

    k = keras()
    tmp = tmp_path_factory.mktemp("rob-file")
    data = tmp / "cifar-10-batches-py"
    shutil.copytree(CIFAR_FIXTURE, data)
    k.utils.set_random_seed(0)
    inputs = k.Input((32, 32, 3))
    x = k.layers.Rescaling(1 / 255)(inputs)
    model = k.Model(inputs, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(8, 3, activation="relu")(x)))
    backbone = tmp / "tiny.keras"
    model.save(backbone)
    cache = tmp / "cache.h5"
    result = run_extract(["--data-dir", str(data), "--backbone", str(backbone), "--out", str(cache)])
    assert result.exit_code == 0, result.output
    return tmp, data, backbone, classify_run(cache, tmp / "reports")


def test_changed_backbone_file_or_gone_images_are_refused(model_file_run):
    from featurecache.tfimport import keras

    tmp, data, backbone, run = model_file_run
    result = invoke("--run", run, "--limit", "4", "--eps", "0,1", "--out-dir", tmp / "ok")
    assert result.exit_code == 0, result.output

    original = backbone.read_bytes()
    model = keras().saving.load_model(backbone)
    model.set_weights([w + 1 for w in model.get_weights()])
    model.save(backbone)
    assert "SHA-256" in error_line(invoke("--run", run, "--limit", "4"), 1)
    backbone.write_bytes(original)

    shutil.rmtree(data)
    line = error_line(invoke("--run", run, "--limit", "4"), 1)
    assert "images behind the run's cache are gone" in line and str(data) in line


@pytest.mark.slow
def test_mlp_head_and_bfloat16_cache_score_like_the_run(tiny_cache, tmp_path):
    """The MLP's saved layers and a bfloat16 backbone: the end-to-end model scores like the run on cached features."""
    from classify.pixel import endtoend
    from classify.pixel.attacks import read_batch, run_images
    from classify.runs.saved import load_run
    from featurecache.cache import read_cache

    bf16 = tmp_path / "bf16.h5"
    result = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--precision", "bfloat16",
                          "--out", str(bf16)])
    assert result.exit_code == 0, result.output
    for cache_path, model in ((tiny_cache, "mlp"), (bf16, "lr")):
        run = load_run(classify_run(cache_path, tmp_path / f"{model}-{cache_path.stem}", model))
        e2e = endtoend.build(run)
        images = run_images(run, None)
        x8 = read_batch(images, 0, len(images.labels), e2e.input_size)
        got = e2e.proba(x8)
        want = run.predict_proba(read_cache(cache_path).test.features)
        assert (got.argmax(1) != want.argmax(1)).sum() <= 1, model           # at most one flipped by rounding
        assert np.abs(got - want).max() < (1e-4 if model == "mlp" else 0.05)
        assert np.abs(e2e.loss_gradient(x8.astype(np.float32), images.labels)).max() > 0
