"""`make bench SCALE=full`: the tiled synthetic set and the full-scale report rows, with small numbers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from bench.report import scale_rows
from bench.tiled import build_tiled_cifar
from extract.cifar import load_cifar10


def test_tiled_set_reads_as_cifar10_with_flipped_and_shifted_copies(cifar_fixture, tmp_path):
    src = load_cifar10(cifar_fixture)
    out = build_tiled_cifar(cifar_fixture, tmp_path, n_train=250, n_test=45)
    tiled = load_cifar10(out)
    assert (len(tiled.splits["train"]), len(tiled.splits["test"])) == (250, 45)
    assert tiled.class_names == src.class_names
    s_train, t_train = src.splits["train"], tiled.splits["train"]
    n_src = len(s_train)
    first = t_train.read(0, n_src).images
    np.testing.assert_array_equal(first, s_train.read(0, n_src).images)   # the first pass is the real images
    copies = t_train.read(n_src, 2 * n_src).images
    assert not np.array_equal(copies, first)                              # later passes are transformed
    np.testing.assert_array_equal(t_train.labels[n_src:2 * n_src], s_train.labels)
    with open(out / "data_batch_1", "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"batch_label"].startswith(b"synthetic")
    assert "synthetic" in (out / "README.txt").read_text()


def test_scale_rows_extrapolate_the_seed_and_give_peak_memory_per_step():
    steps = {
        "seed_train_32": {"wall_s": 100.0, "fit_s": 80.0, "evaluate_s": 5.0, "epochs": 2, "peak_rss_mb": 3000.0},
        "extract_32": {"wall_s": 40.0, "seconds": 30.0, "peak_rss_mb": 1000.0},
        "classify_mlp": {"wall_s": 20.0, "peak_rss_mb": 900.0},
        "classify_lr": {"wall_s": 10.0, "peak_rss_mb": 500.0},
    }
    rows, targets = scale_rows(steps, base=32, epochs=2, to_epochs=10)
    by = {r.measure: r for r in rows}
    seed = by["seed style, 10 epochs (extrapolated from 2), wall s"]
    assert seed.seed == 100.0 + 80.0 * 4          # the 8 epochs not run, at the 2 measured epochs' pace
    e2e = by["end to end at 32 px: features + MLP, wall s"]
    assert e2e.ours == 60.0 and e2e.ratio == (100.0 + 320.0) / 60.0
    assert by["peak memory, extract_32 (MiB)"].ours == 1000.0
    assert by["peak memory, seed_train_32 (MiB)"].seed == 3000.0
    assert [t.target for t in targets] == ["end_to_end_full"] and targets[0].met == (420 / 60 >= 12)


def test_full_scale_targets_give_each_size_its_share_of_the_peak_and_the_loader_its_speed_up():
    from bench.cli import throughput_images
    from bench.report import Steps, full_scale_targets

    assert [throughput_images(s, 1000) for s in (32, 64, 128, 224)] == [1000, 1000, 250, 82]
    assert throughput_images(2048, 1000) == 16
    flops = {32: 0.6e9, 64: 2.4e9, 224: 30e9}
    steps = {
        "peak": {"peak": {"float32": {"gflops": 100.0, "n": 2048}, "bfloat16": {"gflops": 400.0, "n": 2048}},
                 "vgg16_flops": {str(k): v for k, v in flops.items()}},
        # 32 px: 150 img/s x 0.6 GFLOP = 90 GFLOP/s of a 100 peak; 64 px: bfloat16, 160 x 2.4 = 384 of 400
        "extract_32": {"images": 60_000, "loop_s": 400.0, "precision": "float32", "batch_size": 512},
        "extract_64": {"images": 1_600, "loop_s": 10.0, "precision": "bfloat16", "batch_size": 128},
        "extract_224": {"images": 80, "loop_s": 40.0, "precision": "float32", "batch_size": 8},   # 60 of 100
        "decode_224": {"size": 224, "rows": [{"workers": 2, "images": 300, "seconds": 0.5},
                                             {"workers": 1, "images": 300, "seconds": 0.9}],
                       "processes": {"workers": 2, "images": 600, "seconds": 0.95}},
    }
    rows, targets = full_scale_targets(Steps(steps, 32), [32, 64, 224])
    by = {t.target: t for t in targets}
    assert by["peak_32"].value == pytest.approx(0.9) and by["peak_32"].met            # >= 85%
    assert by["peak_64_full"].value == pytest.approx(0.96) and by["peak_64_full"].met  # >= 90%
    assert by["peak_224"].value == pytest.approx(0.6) and not by["peak_224"].met
    assert by["decode_2"].value == pytest.approx(1.8) and by["decode_2"].met
    loader = {r.measure.split(",")[0]: r for r in rows}
    assert loader["photo loader alone"].seed == pytest.approx(300 / 0.9) and loader["photo loader alone"].ours == pytest.approx(600)
    assert abs(rows[-1].ratio - (600 / 0.95) / (300 / 0.9)) < 1e-12   # the processes' ceiling, against 1 worker
