"""Shared test inputs: real fixture images, the larger real subsets, and one tiny cache.

Tests never touch the network: every extraction uses --weights none.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

# an empty Keras home: tests never see a user's downloaded data or weights, and write nothing into the repo
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="featurecache-test-keras-"))
# features/LATEST of every test run (subprocesses too) lands here, never in the repo's features/;
# tests of the default ./features folder remove this variable
os.environ["FEATURECACHE_FEATURES_DIR"] = tempfile.mkdtemp(prefix="featurecache-test-features-")
FEATURES_ENV = "FEATURECACHE_FEATURES_DIR"

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CIFAR_FIXTURE = FIXTURES / "cifar-10-batches-py"     # 100 train + 20 test real CIFAR-10 images
PHOTOS_FIXTURE = FIXTURES / "cats-vs-dogs"            # real photos, plus gray/RGBA/EXIF/broken files
SHARED_DATA = ROOT.parent / "shared" / "data"         # larger real subsets, when present
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def cifar_fixture() -> Path:
    return CIFAR_FIXTURE


@pytest.fixture(scope="session")
def photos_fixture() -> Path:
    return PHOTOS_FIXTURE


def invoke(command, *args):
    """Run a click command in-process; returns click's Result, whose `exception` the test inspects.

    `command` is a click command, a module with a `cli`, or a module's dotted name (imported at the
    call, so collecting the tests imports no stage); `args` are path-like arguments, one by one or
    in lists."""
    if isinstance(command, str):
        command = importlib.import_module(command)
    if isinstance(command, types.ModuleType):
        command = command.cli
    flat = [a for arg in args for a in (arg if isinstance(arg, (list, tuple)) else [arg])]
    return CliRunner().invoke(command, [str(a) for a in flat])


def invoker(module: str):
    """`invoke` bound to the `cli` of `module`: invoker("extract.cli")("--data-dir", folder, ...)."""
    return functools.partial(invoke, module)


def invoke_ok(command, *args):
    """`invoke`, and the run must succeed."""
    r = invoke(command, *args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


invoke_extract = invoker("extract.cli")   # the extract CLI in-process with any path-like arguments


def error_line(r, exit_code: int | None = None) -> str:
    """The one "Error: ..." line a user mistake gives: the last line on stderr, and no traceback."""
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.output
    assert sum(line.startswith("Error") for line in lines) == 1 and "Traceback" not in r.output, r.output
    if exit_code is not None:
        assert r.exit_code == exit_code, r.output
    return lines[-1]


def run_extract(args: list[str]):
    """Run the extract CLI in-process; returns click's Result."""
    from extract.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def photo_cache(folder: Path) -> Path:
    """The fixture photos extracted (random VGG16 weights) into folder/photos.h5."""
    cache = folder / "photos.h5"
    result = run_extract(["--data-dir", str(PHOTOS_FIXTURE), "--weights", "none", "--out", str(cache)])
    assert result.exit_code == 0, result.output
    return cache


def classify_run(cache: Path, out_dir: Path, model: str = "lr") -> Path:
    """`classify --model MODEL` on a cache, writing into out_dir; the one run record of that model there."""
    from classify.cli import cli as classify_cli

    result = CliRunner().invoke(classify_cli, ["--model", model, "--features", str(cache), "--out-dir", str(out_dir)])
    assert result.exit_code == 0, result.output
    runs = list(Path(out_dir).glob(f"*-{model}-*-run.json"))
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A real cache of the 120 fixture CIFAR-10 images: random VGG16 weights, GAP, 32 px."""
    out = tmp_path_factory.mktemp("features") / "cifar10-vgg16-gap-32px.h5"
    result = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser() -> str | None:
    """Headless Chromium for the report page's checks: $CHROMIUM, or the first of BROWSERS on PATH."""
    return os.environ.get("CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)


def snapshot(folder: Path) -> dict[str, bytes]:
    """The files directly in `folder`, by name, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder under `folder`, with the bytes of each file."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}


def tree_digests(folder: Path) -> dict[str, str]:
    """Every file under `folder`, with its SHA-256."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_clean_failure(result, *words, code: int = 1):
    """One "Error:" line naming `words`, and a SystemExit: code 1 from a UserError (a ClickException),
    2 from click's own parse-time check of an option; any other exception is a crash."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], (word, errors[0])


# --------------------------------------------------------------------------- small caches written here


def blob_cache(path: Path, n_train: int = 300, n_test: int = 90, dim: int = 16, classes: int = 3,
               spread: float = 4.0, seed: int = 0, test_labels=None, test_features=None, train_labels=None) -> Path:
    """Gaussian clusters, one per class: well separated with the default spread, so accuracy must be high.
    test_labels / test_features / train_labels replace those arrays (the training rows stay the same
    for a seed whatever the test split holds)."""
    from featurecache.cache import write_cache

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (classes, dim))

    def split(n: int, labels=None, features=None) -> dict:
        y = np.arange(n) % classes
        x = centres[y] + rng.normal(size=(n, dim))
        y = y if labels is None else np.asarray(labels)
        x = x if features is None else np.asarray(features)
        return {"features": x.astype(np.float32), "labels": y.astype(np.int64),
                "sources": np.asarray([str(i) for i in range(n)], dtype=object)}

    attrs = {"dataset": "blobs", "backbone": "none", "pooling": "gap", "image_size": 1, "weights": "none",
             "seed": seed, "precision": "float32", "feature_dim": dim,
             "class_names": [f"class{k}" for k in range(classes)]}
    return write_cache(path, attrs, {"train": [split(n_train, train_labels)], "test": [split(n_test, test_labels, test_features)]})


@pytest.fixture(scope="module")
def blobs(request, tmp_path_factory) -> Path:
    """A blob_cache per test module, named by the module's BLOBS_FILE (default blobs.h5)."""
    return blob_cache(tmp_path_factory.mktemp("blobs") / getattr(request.module, "BLOBS_FILE", "blobs.h5"))


def synthetic_cache(path: Path, n: int, dim: int = 2048, n_test: int = 200, views: int = 0, seed: int = 0) -> Path:
    """A Flatten-wide (64 px VGG16: 2,048 values) cache of n training rows in 10 overlapping classes,
    written in parts of 4,000 rows by write_cache, as extract writes one."""
    from featurecache.cache import write_cache

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim)).astype(np.float32)

    def part(m):
        y = rng.integers(0, 10, m)
        X = (centers[y] * 0.05 + rng.normal(size=(m, dim))).astype(np.float32)
        p = {"features": X, "labels": y.astype(np.int64), "sources": np.array([f"r/{i}" for i in range(m)])}
        if views:
            p["view_features"] = (X[:, None, :] + rng.normal(size=(m, views, dim)) * 0.1).astype(np.float32)
        return p

    attrs = {"dataset": "synthetic", "backbone": "vgg16", "pooling": "flatten", "image_size": 64, "weights": "none",
             "class_names": [f"c{i}" for i in range(10)], "feature_dim": dim}
    return write_cache(path, attrs, {"train": [part(min(4000, n - i)) for i in range(0, n, 4000)],
                                     "test": [part(n_test)]})


def assert_same_cache(a: Path, b: Path, atol: float = 1e-5) -> None:
    """Two cache files hold the same rows (features within `atol`) and the same identity."""
    from featurecache.cache import read_cache

    x, y = read_cache(a), read_cache(b)
    for split in ("train", "test"):
        p, q = getattr(x, split), getattr(y, split)
        assert (p.labels == q.labels).all() and (p.sources == q.sources).all(), split
        np.testing.assert_allclose(p.features, q.features, atol=atol, rtol=1e-4)
    for key in ("data_fingerprint", "backbone", "image_size", "class_names", "feature_dim", "n_train", "n_test"):
        assert x.attrs[key] == y.attrs[key], key
    assert sorted(x.attrs["skipped"]) == sorted(y.attrs["skipped"])


def assert_identical_cache(a, b):
    """Two read caches hold the same rows, features bit for bit (same weights, same batches)."""
    for split in ("train", "test"):
        x, y = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.sources, y.sources)
        np.testing.assert_array_equal(x.features, y.features)


# --------------------------------------------------------------------------- a CIFAR-10 folder big enough to kill

BIG_CIFAR_PER_BATCH = 100  # 500 train rows, 100 test rows: ~60 checkpoint parts, a few seconds of work


def cifar_batch(name: str) -> dict:
    import pickle

    with open(CIFAR_FIXTURE / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.fixture(scope="session")
def big_cifar(tmp_path_factory) -> Path:
    """A CIFAR-10 folder in the original format with BIG_CIFAR_PER_BATCH rows per batch, cut from the fixture images."""
    import pickle

    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rows = np.concatenate([cifar_batch(n)[b"data"] for n in names])  # (120, 3072) uint8
    labels = np.concatenate([cifar_batch(n)[b"labels"] for n in names])
    folder = tmp_path_factory.mktemp("big") / "cifar-10-batches-py"
    folder.mkdir()
    for b, name in enumerate(names):
        idx = np.arange(b * BIG_CIFAR_PER_BATCH, (b + 1) * BIG_CIFAR_PER_BATCH)
        # image i is fixture image i % 120, shifted by i // 120 pixels: every row is different
        data = np.stack([np.roll(rows[i % len(rows)], 97 * (i // len(rows))) for i in idx])
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(labels[i % len(labels)]) for i in idx],
                         b"data": data}, f, protocol=2)
    return folder


def big_cifar_command(data: Path, out: Path) -> list[str]:
    """`python -m extract` on big_cifar in small batches and checkpoints, so a kill lands part-way."""
    import sys

    return [sys.executable, "-m", "extract", "--data-dir", str(data), "--weights", "none", "--out", str(out),
            "--batch-size", "8", "--checkpoint-every", "16", "--precision", "float32"]


def process_env(tmp_path: Path) -> dict:
    e = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home"), "PYTHONUNBUFFERED": "1"}
    e.pop("FEATURECACHE_TF_LOGS", None)
    return e


def run_process(cmd, tmp_path):
    """`cmd` run to its end from the repository root; subprocess.CompletedProcess."""
    import subprocess

    return subprocess.run(cmd, cwd=ROOT, env=process_env(tmp_path), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def reference(big_cifar, tmp_path_factory):
    """An uninterrupted run of big_cifar_command, read back."""
    from featurecache.cache import read_cache

    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "ref.h5"
    r = run_process(big_cifar_command(big_cifar, out), tmp)
    assert r.returncode == 0, r.stderr
    assert "resuming" not in r.stderr
    return read_cache(out)


# --------------------------------------------------------------------------- comparison tables


def table_rows(out_dir) -> list[dict]:
    import csv

    with open(out_dir / "comparison.csv") as f:
        return list(csv.DictReader(f))


def latest_run(out_dir, stem: str, model: str) -> dict:
    """The run record that <stem>-<model>-latest.json names."""
    import json

    pointer = json.loads((out_dir / f"{stem}-{model}-latest.json").read_text())
    return json.loads((out_dir / pointer["run"]).read_text())


def assert_rows_match_their_runs(out_dir) -> None:
    """Every row points at an existing run record, whose model file exists and whose numbers are the row's."""
    import json

    from classify.runs.outputs import resolve

    table = out_dir / "comparison.csv"
    for row in table_rows(out_dir):
        run_json = resolve(table, row["run_record"])
        assert run_json.is_absolute() and run_json.parent == out_dir, row["run_record"]
        record = json.loads(run_json.read_text())
        assert (run_json.parent / record["folder"] / record["model_file"]).is_file()
        assert (record["run_id"], record["cache_id"], record["model"]) == (row["run_id"], row["cache_id"], row["model"])
        assert record["metrics"]["accuracy"] == pytest.approx(float(row["accuracy"]), abs=1e-4)
        assert record["hyperparameters"] == json.loads(row["hyperparameters"])


# --------------------------------------------------------------------------- the bench's steps


def bench_steps(speed64: float = 150.0) -> dict:
    """Measured steps as the bench gathers them, with made-up numbers."""
    e = {"precision": "bfloat16", "batch_size": 128, "peak_rss_mb": 800.0, "wall_s": 20.0, "load_before": 0.1}
    s = {"prepare_s": 1.0, "array_mb": 70.0, "peak_rss_mb": 1200.0, "wall_s": 30.0, "load_before": 0.1}
    return {
        "peak": {"cpu": "test cpu", "cores": 2, "cpu_bf16": True, "gpu_capability": None, "tensorflow": "x",
                 "peak": {"float32": {"gflops": 200.0, "n": 4096}, "bfloat16": {"gflops": 400.0, "n": 4096}},
                 "vgg16_flops": {"32": 626_000_000, "64": 2_504_000_000, "128": 10_016_000_000}},
        "seed_predict_32": {**s, "images": 6000, "predict_s": 20.0},       # 300 img/s
        "extract_32": {**e, "images": 6000, "seconds": 10.0},              # 600 img/s: 2x
        "seed_predict_64": {**s, "images": 6000, "predict_s": 60.0},       # 100 img/s
        "extract_64": {**e, "images": 6000, "seconds": 6000 / speed64},
        "extract_32_float32": {**e, "precision": "float32", "images": 6000, "seconds": 18.0},
        "memory_extract_32": {**e, "images": 1000, "seconds": 2.0, "peak_rss_mb": 800.0},
        "memory_extract_128": {**e, "images": 1000, "seconds": 30.0, "peak_rss_mb": 960.0},
        "seed_train_32": {"prepare_s": 1.0, "fit_s": 300.0, "evaluate_s": 4.0, "test_accuracy": 0.3,
                          "wall_s": 310.0, "load_before": 0.1},
        "classify_auto": {"wall_s": 10.0, "load_before": 0.1, "models": {
            "lr": {"test_accuracy": 0.40, "train_seconds": 1.0, "predict_seconds": 0.1},
            "rf": {"test_accuracy": 0.35, "train_seconds": 3.0, "predict_seconds": 0.1},
            "mlp": {"test_accuracy": 0.42, "train_seconds": 5.0, "predict_seconds": 0.1}}},
        "classify_lr_float32": {"wall_s": 5.0, "models": {"lr": {"test_accuracy": 0.403, "train_seconds": 1.0}}},
    }


def chromium_probe(exe: str, page_path: Path, probe_html: str, marker: str, flags: list[str]) -> tuple[object, str]:
    """Load a copy of the page with `probe_html` put before </body> in headless Chromium (`--dump-dom`, plus
    `flags`); returns the JSON the probe wrote into <pre id="marker">, and Chromium's stderr."""
    import html
    import json
    import subprocess

    probe = page_path.with_name(".probe-" + page_path.name)
    probe.write_text(page_path.read_text().replace("</body>", probe_html + "</body>"))
    try:
        done = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", *flags,
                               "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    tag = f'<pre id="{marker}">'
    start = done.stdout.find(tag)
    assert start >= 0, done.stderr[-2000:]
    return json.loads(html.unescape(done.stdout[start + len(tag):done.stdout.index("</pre>", start)])), done.stderr


# --------------------------------------------------------------------------- figure layout (tests of figures)

SLACK = 1.0  # pixels of rounding allowed at a box's edge


def drawn_texts(fig) -> list:
    """The Text artists drawn when the figure is rendered (ticks outside the view are never drawn,
    so they are not counted), non-empty and visible."""
    from matplotlib.text import Text

    seen = []
    original = Text.draw

    def record(self, renderer):
        seen.append(self)
        return original(self, renderer)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    unique = {id(t): t for t in seen if t.get_visible() and t.get_text().strip()}
    return list(unique.values())


def apart(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) <= SLACK) or (min(a.y1, b.y1) - max(a.y0, b.y0) <= SLACK)


def picture_box(image):
    """The canvas pixels a figure-level picture (`Figure.figimage`) covers."""
    from matplotlib.transforms import Bbox

    rows, cols = image.get_array().shape[:2]
    return Bbox.from_bounds(image.ox, image.oy, cols, rows)


def layout_problems(fig, min_image_px: int = 0) -> list[str]:
    """What is wrong with the figure's layout, as it renders: [] when nothing is."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    pictures = [picture_box(im) for im in fig.images]   # placed at their own pixels (figimage)
    problems = []
    for t, b in boxes:
        if b.x0 < -SLACK or b.y0 < -SLACK or b.x1 > width + SLACK or b.y1 > height + SLACK:
            problems.append(f"{t.get_text()!r} leaves the canvas: {b.bounds} in {width:.0f}x{height:.0f}")
        for ax in panels:
            if ax is not t.axes and not apart(b, ax.get_window_extent(renderer)):
                problems.append(f"{t.get_text()!r} lies on another panel's axes")
        problems += [f"{t.get_text()!r} lies on a picture" for box in pictures if not apart(b, box)]
    for i, box in enumerate(pictures):
        if box.x0 < -SLACK or box.y0 < -SLACK or box.x1 > width + SLACK or box.y1 > height + SLACK:
            problems.append(f"a picture leaves the canvas: {box.bounds} in {width:.0f}x{height:.0f}")
        if min(box.width, box.height) < min_image_px - SLACK:
            problems.append(f"a picture is {box.width:.0f}x{box.height:.0f} px, under {min_image_px}")
        problems += ["two pictures overlap" for other in pictures[i + 1:] if not apart(box, other)]
    for i, (t, b) in enumerate(boxes):
        for u, c in boxes[i + 1:]:
            if not apart(b, c):
                problems.append(f"{t.get_text()!r} overlaps {u.get_text()!r}")
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        problems += [f"a legend covers a panel: {legend.get_texts()[0].get_text()!r}"
                     for ax in panels if not apart(box, ax.get_window_extent(renderer))]
    problems += ["a legend inside a panel can cover its data" for ax in panels if ax.get_legend() is not None]
    for ax in panels:
        if ax.images:
            box = ax.get_window_extent(renderer)
            if min(box.width, box.height) < min_image_px - SLACK:
                problems.append(f"a picture is {box.width:.0f}x{box.height:.0f} px, under {min_image_px}")
    return problems


class Run:
    """`python -m MODULE ARGS` in a child process, its stderr collected as it comes; in a session of its
    own with `new_session` (so a signal can go to its whole process group, as a terminal's Ctrl-C does)."""

    def __init__(self, module: str, args: list, new_session: bool = False):
        import subprocess
        import sys
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session)
        self.err: list[str] = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        import time

        end = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None, "".join(self.err)
            assert time.monotonic() < end, f"no {text!r} after {timeout} s: " + "".join(self.err)
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        """Wait for the process to end: (exit code, stderr)."""
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.proc.stdout.close()
        return rc, "".join(self.err)

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        return self.finish(120)


def alone_run(cache, model: str, folder, *extra) -> dict:
    """`classify --model MODEL` on `cache` by itself, into `folder`: its run record, as a dict."""
    import json

    from classify.cli import cli

    result = invoke(cli, ["--model", model, "--features", cache, "--out-dir", folder, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(next(Path(folder).glob(f"*-{model}-*-run.json")).read_text())


def assert_same_run(a: dict, b: dict, keys=("accuracy", "accuracy_ci", "macro_f1", "ece", "val_accuracy")) -> None:
    """Two run records of one run: the same identity, validation rows and numbers."""
    assert a["run_id"] == b["run_id"] and a["val_images"] == b["val_images"]
    for key in keys:
        assert a["metrics"][key] == b["metrics"][key], (a["model"], key)
