"""bench.accuracy's table: kNN beside the others with intervals and ECEs, and the few-shot rows."""

from __future__ import annotations

from bench.accuracy import table


def test_table_shows_knn_intervals_calibration_and_fewshot():
    run = {"test_accuracy": 0.9, "train_seconds": 1.0, "predict_seconds": 0.1, "low": 0.85, "high": 0.94, "ece": 0.05}
    results = {"cats-vs-dogs": {
        "models": {"lr": run, "knn": {**run, "test_accuracy": 0.88}},
        "calibration": {"lr": {"ece_before": 0.05, "ece_after": 0.02, "temperature": 1.5}},
        "fewshot": [{"model": "knn", "shots": 5, "seeds": 5, "mean": 0.8, "std": 0.03, "low": 0.76, "high": 0.84}],
        "extract": {"float32": {"images_per_second": 10.0, "peak_rss_mb": 900}},
        "lr_by_precision": {"float32": 0.9},
    }}
    text = table(results)
    assert "| cats-vs-dogs | knn | 88.0% | 85.0%-94.0% | 0.050 |  | 1.00 |" in text
    assert "| cats-vs-dogs | lr | 90.0% | 85.0%-94.0% | 0.050 | 0.020 (T = 1.50) | 1.00 |" in text
    assert "| cats-vs-dogs | knn | 5 | 80.0% ± 3.0% | 76.0%-84.0% |" in text
