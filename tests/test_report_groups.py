"""The report page groups runs by cache, shows what differs inside a group, names each cache's best
run by validation accuracy (what `predict --run best` uses) and fits a 1,400 px window in headless
Chromium. Real runs on three real caches: the CIFAR-10 fixture, the fixture photos and an augmented
copy of the CIFAR-10 fixture (views and test views)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from classify.reporting import report
from classify.runs.record import Metrics, RunRecord
from conftest import CIFAR_FIXTURE, PHOTOS_FIXTURE, ROOT, chromium_probe, error_line, photo_cache, run_extract
from conftest import invoke_ok as invoke

LONG = "cifar10-subset-efficientnet-lite0-imagenet-gap-224px-bfloat16-a-long-descriptive-file-name-of-a-copy.h5"




@pytest.fixture(scope="module")
def reports(tiny_cache, tmp_path_factory) -> Path:
    from classify.commands import active, learning_curve
    from classify import cli as classify_cli

    work = tmp_path_factory.mktemp("groups")
    out = work / "reports"
    photos = photo_cache(work)
    augmented = work / "cifar10-flip-views.h5"
    r = run_extract(["--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--augment", "flip", "--views", "1",
                     "--test-views", "1", "--out", str(augmented)])
    assert r.exit_code == 0, r.output
    long = work / LONG
    shutil.copy(tiny_cache, long)
    for cache, extra in ((tiny_cache, []), (tiny_cache, ["--C", "auto"]), (long, []), (photos, []),
                         (photos, ["--model", "rf", "--n-estimators", "10"]), (augmented, ["--views", "none"]),
                         (augmented, []), (augmented, ["--tta"])):
        invoke(classify_cli, ["--features", cache, "--out-dir", out, *extra])
    invoke(learning_curve, ["--features", tiny_cache, "--out-dir", out, "--seeds", "1", "--points", "2",
                            "--min-size", "60", "--val-fraction", "0.2"])
    invoke(active, ["--features", tiny_cache, "--out-dir", out, "--seeds", "1", "--initial", "20", "--batch", "20",
                    "--budget", "60"])
    return out


def group_sections(folder: Path) -> list[str]:
    """The HTML of each cache group's section, in page order."""
    text = (folder / "index.html").read_text()
    return [part.split("</section>")[0] for part in text.split('<section class="group">')[1:]]


def test_runs_on_two_data_sets_make_separate_groups_with_their_class_counts(reports):
    records = [json.loads(p.read_text()) for p in reports.glob("*-run.json")]
    sections = group_sections(reports)
    assert len(sections) == len({r["cache_id"] for r in records}) == 3
    cifar = [s for s in sections if "cifar10 · vgg16 · 32 px · gap" in s and "10 classes" in s]
    photos = [s for s in sections if "cats-vs-dogs" in s and "2 classes" in s]
    assert len(cifar) == 2 and len(photos) == 1
    for record in records:  # each run sits in its own cache's section only
        holders = [s for s in sections if f'id="cache-{record["cache_id"]}"' in s]
        assert len(holders) == 1 and record["run_id"] in holders[0]
    page = report.build_page(reports)
    for group in page.groups:  # sorted by test accuracy inside a group
        acc = [r.accuracy for r in group.runs]
        assert acc == sorted(acc, reverse=True)


def test_views_and_tta_runs_show_their_difference(reports):
    page = report.build_page(reports)
    group = next(g for g in page.groups if g.record.cache.attrs.get("views"))
    assert len(group.runs) == 3 and set(group.differing) == {"views", "tta"}
    section = next(s for s in group_sections(reports) if f'id="cache-{group.key}"' in s)
    cells = {c for c in ("views=none, tta=false", "views=all, tta=false", "views=all, tta=true") if c in section}
    assert len(cells) == 3, section
    # lr with a given C and with C auto on the same cache: C differs there, and only C
    plain = next(g for g in page.groups if len(g.runs) == 3 and not g.record.cache.attrs.get("views")
                 and g.record.cache.attrs["dataset"] == "cifar10")
    assert plain.differing == ["C"]


def test_learning_curve_active_learning_and_comparison_have_sections_of_their_own(reports):
    text = (reports / "index.html").read_text()
    for heading in ("<h2>Learning curves</h2>", "<h2>Active learning</h2>"):
        assert heading in text
    assert text.index("<h2>Learning curves</h2>") < text.index("-learning-curve.png") < text.index(
        "<h2>Active learning</h2>") < text.index("-active.png")


def test_best_run_is_chosen_by_validation_accuracy_and_predict_uses_it(reports):
    from classify.commands.predict import cli as predict_cli

    best = json.loads((reports / "best.json").read_text())["caches"]
    records = {p.name: json.loads(p.read_text()) for p in reports.glob("*-run.json")}
    for cache_id, chosen in best.items():
        mine = {n: r["metrics"]["val_accuracy"] for n, r in records.items() if r["cache_id"] == cache_id}
        top = max(mine.values())
        assert chosen["run"] == min(n for n, v in mine.items() if v == top)
    photos = next(r for r in records.values() if r["cache"]["attrs"]["dataset"] == "cats-vs-dogs")["cache"]["path"]
    r = CliRunner().invoke(predict_cli, ["--run", "best", "--reports", str(reports), "--features", photos,
                                         str(PHOTOS_FIXTURE / "test"), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    want = best[next(i for i, c in best.items() if c["cache"] == photos)]["run"]
    assert f"run: {reports / want}" in r.stderr
    assert json.loads(r.stdout)["run"] == str(reports / want)


def test_validation_not_test_accuracy_picks_the_best():
    def run(name, val, test):
        return report.Run(name, RunRecord(metrics=Metrics(val_accuracy=val, accuracy=test)), {}, [])

    assert report.best_by_validation([run("a-run.json", 0.8, 0.95), run("b-run.json", 0.9, 0.5)]).name == "b-run.json"
    assert report.best_by_validation([run("b-run.json", 0.9, 0.5), run("a-run.json", 0.9, 0.1)]).name == "a-run.json"
    assert report.best_by_validation([]) is None


def test_predict_best_without_runs_of_the_cache_is_one_line(reports, tmp_path):
    from classify.commands.predict import cli as predict_cli

    empty = tmp_path / "empty"
    empty.mkdir()
    cache = next(reports.glob("*-run.json"))
    cache_path = json.loads(cache.read_text())["cache"]["path"]
    r = CliRunner().invoke(predict_cli, ["--run", "best", "--reports", str(empty), "--features", cache_path, "x.jpg"])
    assert "no run of the cache" in error_line(r, 1)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_predict_run_best(reports):
    records = [json.loads(p.read_text()) for p in reports.glob("*-run.json")]
    photos = next(r for r in records if r["cache"]["attrs"]["dataset"] == "cats-vs-dogs")["cache"]["path"]
    done = subprocess.run(["make", "-s", "predict", "RUN=best", f"OUT_DIR={reports}", f"FEATURES={photos}",
                           f"IMAGES={PHOTOS_FIXTURE / 'test'}", f"BIN={os.path.dirname(sys.executable)}",
                           "-o", ".venv/.installed-stamp"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "best validation accuracy" in done.stderr and "cat.4001.jpg" in done.stdout


# --------------------------------------------------------------------------- a real browser at 1,400 px

WIDTH_PROBE = """<script>
window.addEventListener("load", function () {
  var p = document.createElement("pre"); p.id = "probe-width";
  p.textContent = JSON.stringify({scroll: document.documentElement.scrollWidth, client: window.innerWidth});
  document.body.appendChild(p);
});
</script>"""


def page_width(exe: str, page_path: Path, window: int) -> dict:
    """{scroll, client}: the page's scroll width and the window's inner width in headless Chromium."""
    profile = page_path.parent / ".chromium-profile"
    try:
        seen, _ = chromium_probe(exe, page_path, WIDTH_PROBE, "probe-width",
                                 ["--disable-background-networking", "--disable-component-update", "--disable-sync",
                                  "--no-first-run", f"--user-data-dir={profile}", f"--window-size={window},1000"])
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return seen


def test_page_fits_a_1400_px_window_in_headless_chromium(reports, tmp_path):
    from conftest import browser

    exe = browser()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")
    # the probe can fail: a page wider than the window is seen as wider
    wide = tmp_path / "wide.html"
    wide.write_text('<!doctype html><html><body><div style="width:2000px">x</div></body></html>')
    assert page_width(exe, wide, 1400)["scroll"] > 1400
    seen = page_width(exe, reports / "index.html", 1400)
    assert seen["scroll"] <= 1400 and seen["scroll"] <= seen["client"], seen
    assert LONG.removesuffix(".h5") in (reports / "index.html").read_text()  # the long name is on the page
