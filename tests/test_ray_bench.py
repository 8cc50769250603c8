"""The bench's Ray row: Ray Data's steady throughput against the single process, start-up reported apart."""

import pytest

from bench.report import build_report, format_table
from conftest import bench_steps as _steps


def test_ray_row_excludes_start_up_and_checks_80_percent():
    steps = _steps()
    steps["extract_64"]["loop_s"] = 10.0  # 6,000 images in the single process' loop: 600 img/s
    steps["extract_ray_64"] = {"workers": 2, "ray_init_s": 20.0, "first_batch_s": 30.0, "steady_images": 5400,
                               "steady_s": 10.0, "images": 6000}
    report = build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    row = next(r for r in report["rows"] if r["section"] == "distributed")
    assert row["seed"] == pytest.approx(600.0) and row["ours"] == pytest.approx(540.0)
    assert "20.0 s ray.init + 30.0 s actors" in row["ours_how"]
    t = {x["target"]: x for x in report["targets"]}
    assert t["ray_64"]["value"] == pytest.approx(0.9) and t["ray_64"]["met"]
    assert "ray_64: 0.90x, wanted >= 0.8x: **met**" in format_table(report)
