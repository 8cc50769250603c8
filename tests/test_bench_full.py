"""`make bench SCALE=full`: the tiled synthetic set and the full-scale report rows, with small numbers."""

from __future__ import annotations

import pickle

import numpy as np

from bench.report import scale_rows
from bench.tiled import build_tiled_cifar
from extract.datasets import load_cifar10


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
