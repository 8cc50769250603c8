"""classify.workflows.audit: near-duplicates and leaks, label suspects, outliers, clean-test accuracy, --exclude.

The planted test extracts a copy of the cats-vs-dogs photos with known leaks and flipped labels with
the real EfficientNet-Lite0 file; the memory test runs the audit in real subprocesses on tiled caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from classify.commands.audit import cli as audit_cli
from classify.workflows.audit import THRESHOLD
from classify.workflows.audit_record import Audit, parse_exclude
from classify.workflows.neighbours import merge_top, search
from conftest import ROOT, SHARED_DATA, error_line
from featurecache.cache import write_cache
from featurecache.errors import UserError

LITE0 = ROOT.parent / "shared" / "models" / "efficientnet_lite0_imagenet_notop.keras"
PHOTOS = SHARED_DATA / "cats-vs-dogs-subset"


def cluster_cache(path: Path, n_train: int = 400, n_test: int = 100, dim: int = 32, classes: int = 4,
                  leaks: int = 0, seed: int = 0) -> Path:
    """Gaussian clusters; the last `leaks` training rows are copies of the first test rows (half exact,
    half with a little noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim))   # within a class, cosine about 0.5: no accidental duplicates
    y_tr, y_te = np.arange(n_train) % classes, np.arange(n_test) % classes
    X_tr = centres[y_tr] + rng.normal(size=(n_train, dim))
    X_te = centres[y_te] + rng.normal(size=(n_test, dim))
    for k in range(leaks):
        X_tr[n_train - 1 - k] = X_te[k] + (0 if k % 2 == 0 else rng.normal(0, 0.02, dim))
        y_tr[n_train - 1 - k] = y_te[k]

    def part(X, y, name):
        return {"features": X.astype(np.float32), "labels": y.astype(np.int64),
                "sources": np.asarray([f"{name}/{i}" for i in range(len(y))], dtype=object)}

    attrs = {"dataset": "clusters", "backbone": "none", "pooling": "gap", "image_size": 1, "weights": "none",
             "seed": seed, "precision": "float32", "feature_dim": dim, "data_fingerprint": f"clusters-{seed}-{leaks}",
             "class_names": [f"c{k}" for k in range(classes)]}
    return write_cache(path, attrs, {"train": [part(X_tr, y_tr, "train")], "test": [part(X_te, y_te, "test")]})


def brute_pairs(path: Path, threshold: float) -> set[tuple[int, int]]:
    from featurecache.cache import read_cache

    c = read_cache(path)
    X = np.concatenate([c.train.features, c.test.features])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    S = X @ X.T
    r, col = np.nonzero(np.triu(S >= threshold, 1))
    return set(zip(r.tolist(), col.tolist()))


@pytest.mark.parametrize("block_rows, dims", [(4096, 256), (64, 256), (64, 8), (37, 4)])
def test_search_finds_exactly_the_pairs_of_a_full_product(tmp_path, block_rows, dims):
    """Blocked, with or without the projected filter (dims < D), the pairs are those of the full product."""
    path = cluster_cache(tmp_path / "c.h5", leaks=6)
    for threshold in (0.95, 0.5):
        found = search(path, threshold, block_rows=block_rows, dims=dims)
        got = set(zip(found.first.tolist(), found.second.tolist()))
        assert got == brute_pairs(path, threshold)
    assert len(got) > 6   # the leaks and many cluster neighbours at 0.5: the comparison is not of empty sets


def test_merge_top_keeps_the_k_highest_of_every_block():
    rng = np.random.default_rng(1)
    best = np.full((40, 5), -np.inf, dtype=np.float32)
    blocks = [rng.standard_normal((40, 200)).astype(np.float32) for _ in range(5)]
    for S in blocks:
        best = merge_top(best, S)
    want = -np.sort(-np.concatenate(blocks, axis=1), axis=1)[:, :5]
    assert np.allclose(-np.sort(-best, axis=1), want)
    by_columns = np.full((40, 5), -np.inf, dtype=np.float32)
    for S in blocks:
        by_columns = merge_top(by_columns, np.ascontiguousarray(S.T), columns=True)
    assert np.allclose(-np.sort(-by_columns, axis=1), want)


def test_audit_cli_writes_record_and_runs_report_clean_accuracy(tmp_path):
    from classify.cli import cli as classify_cli

    path = cluster_cache(tmp_path / "c.h5", leaks=6)
    out = tmp_path / "reports"
    r = CliRunner().invoke(audit_cli, ["--features", str(path), "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    audit = Audit.load(out / "c-audit.json")
    leaks = {(p["first_source"], p["second_source"]) for p in audit.pairs if p["kind"] == "train-test"}
    assert {(f"train/{399 - k}", f"test/{k}") for k in range(6)} <= leaks
    assert audit.threshold == THRESHOLD and audit.counts["test_rows_with_train_duplicate"] == 6
    assert (out / "c-audit-pairs.csv").read_text().count("train-test") == audit.counts["pairs_train-test"]
    assert "no duplicates gallery" in r.output   # the cache names no images behind it
    # a run in that folder reports accuracy on the 94 clean test rows beside the raw accuracy
    r = CliRunner().invoke(classify_cli, ["--features", str(path), "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    record = json.loads(next(out.glob("c-lr-*-run.json")).read_text())
    assert record["metrics"]["clean_n_test"] == 94 and 0 <= record["metrics"]["clean_accuracy"] <= 1
    assert "clean test" in (out / "index.html").read_text()
    from classify.commands.compare import cli as compare_cli

    r = CliRunner().invoke(compare_cli, ["--features", str(path), "--out-dir", str(out), "--model", "lr"])
    assert r.exit_code == 0, r.output
    row = (out / "comparison.csv").read_text().splitlines()
    assert "clean_accuracy" in row[0] and row[1].split(",")[row[0].split(",").index("clean_accuracy")] != ""
    # --exclude duplicates: the 6 leaked training copies are left out, and the record says so
    r = CliRunner().invoke(classify_cli, ["--features", str(path), "--out-dir", str(tmp_path / "ex"),
                                          "--exclude", f"{out / 'c-audit.json'}:duplicates"])
    assert r.exit_code == 0, r.output
    record = json.loads(next((tmp_path / "ex").glob("c-lr-*-run.json")).read_text())
    assert record["metrics"]["excluded_rows"] == 6
    assert record["metrics"]["n_fit"] + record["metrics"]["n_val"] == 400 - 6


def test_exclude_refuses_another_caches_audit_and_bad_specs(tmp_path):
    from classify.cli import cli as classify_cli

    a = cluster_cache(tmp_path / "a.h5", leaks=2)
    b = cluster_cache(tmp_path / "b.h5", seed=1)
    out = tmp_path / "reports"
    assert CliRunner().invoke(audit_cli, ["--features", str(a), "--out-dir", str(out), "--no-labels"]).exit_code == 0
    runner = CliRunner()
    r = runner.invoke(classify_cli, ["--features", str(b), "--out-dir", str(out),
                                     "--exclude", f"{out / 'a-audit.json'}:duplicates"])
    assert "audit of another cache" in error_line(r, 1)
    r = runner.invoke(classify_cli, ["--features", str(b), "--out-dir", str(out),
                                     "--exclude", f"{out / 'a-audit.json'}:typos"])
    assert "--exclude" in error_line(r, 1)
    (tmp_path / "x-audit.json").write_text('{"format": "something else"}')
    r = runner.invoke(classify_cli, ["--features", str(b), "--exclude", f"{tmp_path / 'x-audit.json'}:duplicates"])
    assert "not an audit" in error_line(r, 1)
    with pytest.raises(UserError):
        parse_exclude("no-colon")


def test_audit_of_a_missing_cache_is_one_line(tmp_path):
    r = CliRunner().invoke(audit_cli, ["--features", str(tmp_path / "none.h5"), "--out-dir", str(tmp_path)])
    assert "no features at" in error_line(r, 1)


# --------------------------------------------------------------------------- the planted photos


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The cats-vs-dogs photos with 20 planted leaks and 15 flipped labels, extracted with EfficientNet-Lite0."""
    if not LITE0.is_file() or not PHOTOS.is_dir():
        pytest.skip("needs ../shared/models/efficientnet_lite0_imagenet_notop.keras and the cats-vs-dogs subset")
    from bench.planted import build_planted

    root = tmp_path_factory.mktemp("planted")
    facts = build_planted(PHOTOS, root / "photos", seed=0)
    cache = root / "planted.h5"
    r = subprocess.run([sys.executable, "-m", "extract", "--data-dir", str(root / "photos"), "--backbone", str(LITE0),
                        "--image-size", "224", "--out", str(cache)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = root / "reports"
    r = subprocess.run([sys.executable, "-m", "featurecache", "audit", "--features", str(cache), "--out-dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return facts, Audit.load(out / "planted-audit.json"), out


@pytest.mark.slow
def test_planted_leaks_are_found_at_the_default_threshold(planted):
    facts, audit, out = planted
    assert audit.threshold == THRESHOLD
    planted_pairs = {tuple(p) for p in facts.leaks}
    found = {(p["first_source"], p["second_source"]) for p in audit.pairs}
    assert len(planted_pairs & found) >= 19, sorted(planted_pairs - found)
    assert len(found - planted_pairs) <= 5, sorted(found - planted_pairs)
    assert (out / "planted-audit-duplicates.png").is_file()


@pytest.mark.slow
def test_planted_flipped_labels_lead_the_suspects(planted):
    facts, audit, out = planted
    top = [s["source"] for s in audit.suspects[:30]]
    assert len(set(facts.flipped) & set(top)) >= 12, top
    first = audit.suspects[0]
    assert first["given"] != first["predicted"] and first["rank"] == 1
    assert (out / "planted-audit-labels.png").is_file()


# --------------------------------------------------------------------------- memory


def peak_rss(args: list[str]) -> int:
    """Peak resident memory (bytes) of a real subprocess (ru_maxrss of that child alone)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, err[-2000:]
    return usage.ru_maxrss * 1024


@pytest.mark.slow
@pytest.mark.timeout(900)   # 60,000 rows: 1.8e9 similarities, about a minute on two busy cores
def test_duplicate_search_memory_does_not_grow_with_the_cache(tmp_path):
    """6,000 against 60,000 rows of a tiled cache (32 features: the products are cheap, the blocks and
    their similarities are the full-size ones): peak resident memory within 1.5x."""
    from bench.tiled_cache import tile_cache

    src = cluster_cache(tmp_path / "src.h5", n_train=500, n_test=100, dim=32, classes=10)
    peaks = {}
    for n_train, n_test in ((5_000, 1_000), (50_000, 10_000)):
        path = tile_cache(src, tmp_path / f"tiled-{n_train}.h5", n_train, n_test, noise=1.0)
        peaks[n_train] = peak_rss(["-m", "featurecache", "audit", "--features", str(path), "--out-dir",
                                   str(tmp_path / f"out-{n_train}"), "--no-labels"])
    assert peaks[50_000] <= 1.5 * peaks[5_000], peaks
    print(f"peak resident memory: {peaks}")
