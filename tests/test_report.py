"""reports/index.html from real runs on the CIFAR-10 fixture: every link resolves to a file beside it,
one table row per run record, runs whose files were deleted drop out on `make report`, and the page
renders in headless Chromium with every image drawn and no console message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from classify.commands import compare, learning_curve

from classify.commands import report
from classify.cli import cli as classify_cli
from conftest import ROOT, browser, chromium_probe, error_line


class Links(HTMLParser):
    """Every src/href, every id, every <script>, and the rows of the runs table (the one whose header
    names "test accuracy"), as lists of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.refs, self.ids, self.scripts, self.tables = [], set(), 0, []
        self.cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [a[k] for k in ("src", "href") if k in a]
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def runs_table(self) -> list[dict]:
        """The rows of every runs table (one per cache group), in page order."""
        return [dict(zip(rows[0], r)) for rows in self.tables if rows and "test accuracy" in rows[0] for r in rows[1:]]


def page(folder: Path) -> Links:
    return Links((folder / "index.html").read_text())


def run_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*-run.json"))]


@pytest.fixture(scope="module")
def reports(tiny_cache, tmp_path_factory) -> Path:
    """lr and rf from compare, an MLP from classify, and a learning curve, all in one folder."""
    out = tmp_path_factory.mktemp("reports")
    runner = CliRunner()
    for command, args in (
        (compare.cli, ["--model", "lr", "--model", "rf", "--n-estimators", "10"]),
        (classify_cli, ["--model", "mlp", "--epochs", "2", "--hidden", "16"]),
        (learning_curve.cli, ["--model", "lr", "--seeds", "1", "--points", "2", "--min-size", "60", "--val-fraction", "0.2"]),
    ):
        r = runner.invoke(command, [*args, "--features", str(tiny_cache), "--out-dir", str(out)])
        assert r.exit_code == 0, r.output
    return out


def test_every_src_and_href_resolves_to_a_file_beside_the_page(reports):
    links = page(reports)
    assert links.scripts == 0
    files = [r for r in links.refs if not r.startswith("#")]
    assert len([r for r in files if r.endswith(".png")]) >= 10, files  # 3 runs' figures, comparison, learning curve
    for ref in links.refs:
        assert "://" not in ref and not ref.startswith(("/", "//")), ref  # offline: no address, no absolute path
        if ref.startswith("#"):
            assert ref[1:] in links.ids, ref
        else:
            assert (reports / unquote(ref)).is_file(), ref
    names = {unquote(r) for r in files}
    assert "comparison.png" in names and any(n.endswith("-learning-curve.png") for n in names)
    assert any(n.endswith("-gallery.png") for n in names)  # the fixture cache records its images


def test_one_row_per_run_record_sorted_by_accuracy_with_cache_provenance(reports):
    records = run_records(reports)
    rows = page(reports).runs_table()
    assert len(records) == 3 and len(rows) == len(records)
    assert sorted(r["model"] for r in rows) == ["lr", "mlp", "rf"]
    acc = [float(r["test accuracy"]) for r in rows]
    assert acc == sorted(acc, reverse=True)
    by_model = {r["model"]: r for r in rows}
    for record in records:
        row = by_model[record["model"]]
        assert float(row["test accuracy"]) == pytest.approx(record["metrics"]["accuracy"], abs=1e-4)
        assert record["run_id"] in row["run"]
    text = (reports / "index.html").read_text()
    assert "vgg16 · 32 px · gap" in text and "10 classes" in text  # the group's header names the cache
    attrs = records[0]["cache"]["attrs"]
    assert records[0]["cache_id"] in text and attrs["data_fingerprint"][:16] in text and "cifar10" in text


def make_report(out_dir: Path) -> subprocess.CompletedProcess:
    """`make report OUT_DIR=...` with this interpreter (its install step taken as done)."""
    bin_dir = os.path.dirname(sys.executable)
    return subprocess.run(["make", "-s", "report", f"OUT_DIR={out_dir}", f"BIN={bin_dir}", "-o", ".venv/.installed-stamp"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_deleting_a_runs_files_and_make_report_drops_it(reports, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reports, out)
    rf = next(r for r in run_records(out) if r["model"] == "rf")
    stem = Path(rf["files"]["run"]).name.removesuffix("-run.json")
    for p in out.glob(stem + "-*"):
        p.unlink()
    (out / "index.html").unlink()
    done = make_report(out)
    assert done.returncode == 0, done.stderr
    assert "2 run(s)" in done.stdout
    links = page(out)
    assert sorted(r["model"] for r in links.runs_table()) == ["lr", "mlp"]
    assert rf["run_id"] not in (out / "index.html").read_text()
    assert all((out / unquote(ref)).is_file() for ref in links.refs if not ref.startswith("#"))


def test_report_command_on_a_missing_folder_is_one_line(tmp_path):
    r = CliRunner().invoke(report.cli, ["--out-dir", str(tmp_path / "nowhere")])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    assert "no reports folder" in error_line(r, 1) and not (tmp_path / "nowhere").exists()


def test_files_that_are_not_run_records_are_skipped_not_fatal(tmp_path):
    (tmp_path / "notes-run.json").write_text("{not json")
    (tmp_path / "other-run.json").write_text(json.dumps({"format": "something-else"}))
    r = CliRunner().invoke(report.cli, ["--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "index.html").read_text()
    assert "0 run(s)" in text and "notes-run.json" in text and "other-run.json" in text
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------------- a real browser

PROBE = """<script>
var probeErrors = [];
window.addEventListener("error", function (e) { probeErrors.push(String(e.message || (e.target && e.target.src))); }, true);
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (i) { return [i.getAttribute("src"), i.naturalWidth]; });
  var p = document.createElement("pre"); p.id = "probe-result";
  p.textContent = JSON.stringify({images: images, errors: probeErrors});
  document.body.appendChild(p);
});
</script>"""


def render_in_browser(exe: str, page_path: Path, screenshot: Path | None = None) -> tuple[dict, list[str]]:
    """Load a copy of the page with a probe script appended, in headless Chromium; returns (what the
    probe saw: every image's natural width and any error event, console lines from Chromium's log)."""
    flags = ["--enable-logging=stderr", "--v=0", "--window-size=1300,2400"]
    seen, stderr = chromium_probe(exe, page_path, PROBE, "probe-result", flags)
    if screenshot is not None:
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", *flags,
                        f"--screenshot={screenshot}", page_path.as_uri()], capture_output=True, timeout=90)
    return seen, [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
def test_page_renders_in_headless_chromium_with_every_image_drawn(reports, tmp_path):
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")
    # the probe can fail: a missing image and a console message are both seen
    broken = tmp_path / "broken.html"
    broken.write_text('<!doctype html><html><body><img src="missing.png"><script>console.error("x")</script></body></html>')
    seen, console = render_in_browser(exe, broken)
    assert seen["images"] == [["missing.png", 0]] and seen["errors"] and console

    shot = tmp_path / "index.png"
    seen, console = render_in_browser(exe, reports / "index.html", shot)
    assert console == [] and seen["errors"] == [], (console, seen["errors"])
    assert len(seen["images"]) >= 10
    assert all(width > 0 for _, width in seen["images"]), seen["images"]
    assert shot.is_file() and shot.stat().st_size > 10_000
