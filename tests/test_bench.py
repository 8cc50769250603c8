"""The bench's pieces on tiny inputs: FLOP counting, the report (JSON, Markdown, verdicts),
per-process memory measurement, and one real step on the fixture images. No timings are asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bench.report import build_report, format_table, read_classify_runs, write_report
from bench.runner import StepFailed, run_step
from conftest import ROOT
from conftest import bench_steps as _steps

# VGG16 convolutions at 32 px: (map side, in channels, out channels), all 3x3, 'same' padding
VGG16_CONVS_32 = (
    [(32, 3, 64), (32, 64, 64), (16, 64, 128), (16, 128, 128)]
    + [(8, 128, 256), (8, 256, 256), (8, 256, 256)]
    + [(4, 256, 512), (4, 512, 512), (4, 512, 512)]
    + [(2, 512, 512)] * 3
)


def test_vgg16_flops_at_32px_equal_a_hand_count_of_its_convolutions():
    from bench.flops import layer_flops, vgg16_flops
    from featurecache.extractor import Extractor

    hand = sum(2 * side * side * 9 * c_in * c_out for side, c_in, c_out in VGG16_CONVS_32)
    assert vgg16_flops(32) == hand
    # the extractor extract builds (uint8 in, backbone nested inside) counts the same 13 layers
    model = Extractor("vgg16", "gap", 32, "none").model
    rows = layer_flops(model)
    assert [r["kind"] for r in rows] == ["Conv2D"] * 13
    assert sum(r["flops"] for r in rows) == hand
    assert vgg16_flops(64) == 4 * hand  # every map is 4x the area; no dense layers without the top


def test_dense_layers_count_inputs_times_units():
    from bench.flops import model_flops
    from featurecache.tfimport import keras

    k = keras()
    model = k.Sequential([k.Input((512,)), k.layers.Dense(10)])
    assert model_flops(model) == 2 * 512 * 10


def test_report_ratios_and_verdicts():
    report = build_report(_steps(), sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    t = {x["target"]: x for x in report["targets"]}
    assert t["speed_32"]["value"] == pytest.approx(2.0) and t["speed_32"]["met"]
    assert t["speed_64"]["value"] == pytest.approx(1.5) and not t["speed_64"]["met"]
    assert t["peak_64"]["value"] == pytest.approx(150 * 2.504 / 400) and t["peak_64"]["met"]
    assert t["end_to_end"]["value"] == pytest.approx(310 / 30) and t["end_to_end"]["met"]  # whole processes
    compute = next(r for r in report["rows"] if r["measure"].startswith("compute s"))
    assert compute["seed"] == pytest.approx(304) and compute["ours"] == pytest.approx(10 + 1 + 3 + 5 + 0.3)
    assert t["lr_accuracy"]["value"] == pytest.approx(0.3) and t["lr_accuracy"]["met"]
    assert t["memory"]["value"] == pytest.approx(1.2) and t["memory"]["met"]
    assert t["compare_subset"]["value"] == 10.0 and t["compare_subset"]["met"]   # the compare process's wall time
    assert "6,000-image cache at 32 px" in t["compare_subset"]["note"] and "median of 1 runs" in t["compare_subset"]["note"]
    assert report["notes"] == []  # load was low: no "other work was running" note
    steps = _steps()
    steps["classify_auto"]["wall_s"] = 12.5
    steps["compare_again"] = {"wall_s": [11.0, 13.5]}   # the median of the three runs counts
    report = build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    slow = {x["target"]: x for x in report["targets"]}
    assert slow["compare_subset"]["value"] == 12.5 and not slow["compare_subset"]["met"]
    assert "12.5 s, 11.0 s, 13.5 s" in slow["compare_subset"]["note"]
    assert "- compare_subset: 12.5 s, wanted <= 12 s: **missed**" in format_table(report)
    steps["compare_again"] = {"wall_s": [11.0, 11.5]}
    fast = {x["target"]: x for x in build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10,
                                                  quick=False)["targets"]}
    assert fast["compare_subset"]["value"] == 11.5 and fast["compare_subset"]["met"]


def test_table_says_met_or_missed_and_files_are_written(tmp_path):
    report = build_report(_steps(speed64=320.0), sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=True)
    report["command"] = "python -m bench --quick"
    table = format_table(report)
    assert "| images/s at 64 px | 100 |" in table and "**3.20x**" in table
    assert "- speed_64: 3.20x, wanted >= 3x: **met**" in table
    assert "- peak_64: 200%, wanted >= 85%: **met**" in table
    assert "--quick" in table  # the note that a quick run's figures mean nothing
    paths = write_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert {t["target"] for t in data["targets"]} == {"speed_32", "speed_64", "peak_64", "end_to_end", "lr_accuracy", "memory"}
    assert paths["md"].read_text().startswith("# make bench\n\n`python -m bench --quick`")


def test_an_accuracy_gap_of_exactly_half_a_point_is_within_half_a_point():
    steps = _steps()
    steps["classify_auto"]["models"]["lr"]["test_accuracy"] = 0.387
    steps["classify_lr_float32"]["models"]["lr"]["test_accuracy"] = 0.382  # 5 of 1,000 test images
    report = build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    t = {x["target"]: x for x in report["targets"]}
    assert t["lr_accuracy"]["value"] == 0.5 and t["lr_accuracy"]["met"]
    steps["classify_auto"]["models"]["lr"]["test_accuracy"] = 0.388
    report = build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    assert not {x["target"]: x for x in report["targets"]}["lr_accuracy"]["met"]


def test_missing_classifiers_are_reported_as_missed():
    steps = _steps()
    del steps["classify_auto"], steps["classify_lr_float32"]
    report = build_report(steps, sizes=[32, 64], base=32, memory_sizes=[32, 128], epochs=10, quick=False)
    t = {x["target"]: x for x in report["targets"]}
    assert t["end_to_end"]["value"] is None and not t["end_to_end"]["met"]
    assert t["compare_subset"]["value"] is None and not t["compare_subset"]["met"]
    assert not t["lr_accuracy"]["met"] and "n/a" in format_table(report)


def test_read_classify_runs_reads_the_comparison_csv(tmp_path):
    (tmp_path / "comparison.csv").write_text(
        "cache,model,accuracy,macro_f1,train_time_s,predict_time_s\nc,lr,0.4100,0.4,1.25,0.01\nc,rf,0.3500,0.3,2.5,0.05\n")
    none = {"low": None, "high": None, "ece": None}   # a table from before intervals and calibration
    assert read_classify_runs(tmp_path) == {
        "lr": {"test_accuracy": 0.41, "train_seconds": 1.25, "predict_seconds": 0.01, **none},
        "rf": {"test_accuracy": 0.35, "train_seconds": 2.5, "predict_seconds": 0.05, **none}}
    assert read_classify_runs(tmp_path / "none") == {}


def _child(tmp_path, name: str, mb: int) -> dict:
    code = (f"import json; from bench.runner import peak_rss_mb; b = bytearray({mb} * 2**20); "
            f"b[::4096] = b'x' * len(b[::4096]); "
            f"open({str(tmp_path / name)!r}, 'w').write(json.dumps({{'self_peak_rss_mb': peak_rss_mb()}}))")
    return run_step([sys.executable, "-c", code], tmp_path / f"{name}.log", tmp_path / name)


def test_run_step_measures_the_child_own_peak_memory(tmp_path):
    from featurecache.tfimport import tensorflow

    tensorflow()  # make this (parent) process big: a child's ru_maxrss would start from its size
    big, small = _child(tmp_path, "big.json", 300), _child(tmp_path, "small.json", 1)
    assert big["peak_rss_mb"] >= 300 > small["peak_rss_mb"]
    with pytest.raises(StepFailed, match="exit 3"):
        run_step([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "fail.log")


def test_cli_refuses_bad_sizes():
    from bench.cli import cli

    result = CliRunner().invoke(cli, ["--sizes", "32,big"])
    assert result.exit_code == 2 and "give sizes in px" in result.output


@pytest.mark.slow
def test_extract_step_on_fixture_images(tmp_path, cifar_fixture):
    from bench.runner import job

    r = job("extract", ["--data-dir", str(cifar_fixture), "--size", "32", "--limit", "8",
                        "--out", str(tmp_path / "c.h5")], tmp_path, "extract")
    assert r["images"] == 16 and r["precision"] in ("bfloat16", "float32") and r["peak_rss_mb"] > 0
    assert (tmp_path / "c.h5").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)  # five whole processes: minutes on a busy 2-core machine
def test_bench_runtime_quick_row_compares_plain_keras_with_extract(tmp_path):
    """`python -m bench.runtime --rows resnet50 --quick`: three whole processes, their table and JSON."""
    pytest.importorskip("openvino")
    out = tmp_path / "bench-runtime"
    proc = subprocess.run([sys.executable, "-m", "bench.runtime", "--rows", "resnet50", "--quick", "--out-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KERAS_HOME": str(tmp_path / "keras")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "runtime.json").read_text())
    (row,) = report["rows"]
    assert row["images"] == 16 and row["runtime"] == "openvino"
    assert set(row["steps"]) == {"plain", "float32", "bfloat16"}
    assert all(s["wall_s"] > 0 and s["peak_rss_mb"] > 0 for s in row["steps"].values())
    assert row["cosine_float32"]["min"] > 0.99999   # extract's float32 features are plain Keras' features
    assert "| resnet50 64 px" in (out / "runtime.md").read_text() and not list((out / "work").glob("*.h5"))
