"""Parallel decoding: the same rows, order and pixels with 1 and 2 decode workers; the loader bench."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from bench.decode import DecodeRow, decode_table
from extract.datasets import load_dataset


def read_all(folder, workers: int, batch: int = 7):
    data = load_dataset(folder, 48, workers=workers)
    out = {}
    for name, split in data.splits.items():
        batches = [split.read(a, min(a + batch, len(split))) for a in range(0, len(split), batch)]
        out[name] = (np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]),
                     [s for b in batches for s in b.sources], [s for b in batches for s in b.skipped])
    return out


def test_two_decode_workers_give_the_same_rows_order_and_pixels_as_one(photos_fixture):
    one, two = read_all(photos_fixture, 1), read_all(photos_fixture, 2)
    assert one.keys() == two.keys()
    for name in one:
        (px1, y1, src1, skip1), (px2, y2, src2, skip2) = one[name], two[name]
        assert src1 == src2 and skip1 == skip2 and len(src1) > 0
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(px1, px2)
    # the fixture's broken files are skipped by both, not crashes
    assert any(one[name][3] for name in one)


def test_extract_refuses_zero_decode_workers(cifar_fixture, tmp_path):
    from extract.cli import cli

    r = CliRunner().invoke(cli, ["--data-dir", str(cifar_fixture), "--decode-workers", "0", "--out", str(tmp_path / "c.h5")])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 2 and "--decode-workers" in r.output
    assert not (tmp_path / "c.h5").exists()


def test_decode_bench_table_and_command(photos_fixture):
    table = decode_table([DecodeRow(1, 100, 2.0), DecodeRow(2, 100, 1.0)], 224)
    assert "| 1 decode worker(s) | 100 | 2.00 | 50 | 1.00x |" in table
    assert "| 2 decode worker(s) | 100 | 1.00 | 100 | 2.00x |" in table
    from bench.decode import cli

    r = CliRunner().invoke(cli, ["--data-dir", str(photos_fixture), "--size", "32", "--workers", "1,2", "--rounds", "2"])
    assert r.exit_code == 0, r.output
    assert "| 2 decode worker(s) |" in r.output
    r = CliRunner().invoke(cli, ["--data-dir", str(photos_fixture), "--workers", "one"])
    assert r.exit_code == 2 and "--workers" in r.output
