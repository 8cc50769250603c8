"""`python -m classify.report --out-dir DIR` / `make report`: one offline page over every run in a reports folder.

Reads what is on disk in --out-dir (default reports/): every run record
(`*-run.json`, written by `python -m classify` or `classify.compare`) and the
files it names, and the figures other commands leave there (comparison chart,
learning curves, ...). Writes, atomically:

    <out-dir>/index.html   a header with the caches the runs read (data set, weights, digests);
                           the table of runs, sorted by test accuracy, each linking to its section;
                           per run: curves, confusion matrix, gallery, classification report,
                           settings and the cache identity it used; then the other figures

The page is plain HTML and CSS: no script, no CDN, no network address; every `src` and `href`
is a file name beside it (or an anchor in it), so the folder can be zipped, moved or opened
from disk. `classify`, `compare` and `learning_curve` rewrite it after each run through
`write_index`; this command rebuilds it by hand, e.g. after deleting a run's files.

    python -m classify.report --out-dir reports
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import click

from classify.audit_page import FIGURE_ENDINGS as AUDIT_FIGURES, audits_html
from featurecache.errors import UserError
from featurecache.files import locked, os_error, room_error, write_text

INDEX = "index.html"
LOCK = "index.lock"                   # one writer of index.html at a time: the last one sees every run
RUN_SUFFIX = "-run.json"
RUN_FORMAT = "featurecache-run"       # classify.saved.RUN_FORMAT (not imported: saved pulls in h5py)
FIGURES = ("curves", "confusion", "gallery")
RUN_FILE_ENDINGS = ("-curves.png", "-confusion.png", "-gallery.png")  # a run's figures, never "other figures"
CACHE_FIELDS = (  # (attribute, label) shown for each cache in the header
    ("dataset", "data set"), ("data_kind", "images"), ("data_location", "from"), ("data_fingerprint", "data digest"),
    ("backbone", "backbone"), ("weights", "weights"), ("weights_sha256", "weights SHA-256"),
    ("backbone_sha256", "backbone file SHA-256"), ("feature_layer", "feature layer"), ("pooling", "pooling"),
    ("image_size", "image size"), ("precision", "precision"), ("feature_dim", "features"), ("n_train", "train rows"),
    ("n_test", "test rows"), ("created", "extracted"),
)

__all__ = ["Run", "Page", "read_runs", "other_figures", "build_page", "render", "write_index", "cli", "main"]


@dataclass
class Run:
    """One run record found in the folder, with the files it names that are still there."""

    name: str                     # file name of the run record
    record: dict
    files: dict[str, str]         # key (curves, confusion, ...) -> file name beside the record, present ones
    missing: list[str]            # file names the record names that are gone
    report_text: str = ""

    @property
    def anchor(self) -> str:
        return "run-" + self.name[: -len(RUN_SUFFIX)]

    @property
    def accuracy(self) -> float:
        return float(self.record.get("metrics", {}).get("accuracy", float("nan")))


@dataclass
class Page:
    """Everything the page shows, as plain data."""

    folder: Path
    runs: list[Run]                                        # sorted by test accuracy, best first
    caches: dict[str, dict]                                # cache id -> {path, attrs, present}
    figures: list[tuple[str, list[str]]]                   # (PNG name, names of its CSV/MD siblings)
    skipped: list[str] = field(default_factory=list)       # *-run.json files that are not run records


def read_runs(folder: Path) -> tuple[list[Run], list[str]]:
    """Every run record in `folder`, best accuracy first, and the names of `*-run.json` files that
    are not run records. The files a record names are looked up beside it by name, so a folder that
    was moved still reads."""
    runs, skipped = [], []
    for path in sorted(folder.glob("*" + RUN_SUFFIX)):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            skipped.append(path.name)
            continue
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT or not isinstance(record.get("files"), dict):
            skipped.append(path.name)
            continue
        present, missing = {}, []
        for key, value in record["files"].items():
            name = Path(str(value)).name
            if key == "run":
                continue
            if (folder / name).is_file():
                present[key] = name
            else:
                missing.append(name)
        text = ""
        if "report_txt" in present:
            try:
                text = (folder / present["report_txt"]).read_text()
            except (OSError, UnicodeDecodeError):
                text = ""
        runs.append(Run(path.name, record, present, missing, text))
    runs.sort(key=lambda r: (-r.accuracy if r.accuracy == r.accuracy else float("inf"), r.name))
    return runs, skipped


def other_figures(folder: Path, runs: list[Run]) -> list[tuple[str, list[str]]]:
    """PNGs in the folder that belong to no run record (comparison chart, learning curves, ...), each
    with the CSV / Markdown files of the same stem. Figures named like a run's figures are left out:
    they are what is left of a run whose record was deleted."""
    claimed = {name for r in runs for name in r.files.values()}
    out = []
    for png in sorted(folder.glob("*.png")):
        if png.name in claimed or png.name.startswith(".") or png.name.endswith(RUN_FILE_ENDINGS + AUDIT_FIGURES):
            continue
        siblings = [p.name for ext in (".csv", ".md") if (p := png.with_suffix(ext)).is_file()]
        out.append((png.name, siblings))
    return out


def build_page(folder: str | os.PathLike) -> Page:
    """What the page of `folder` shows, read from disk."""
    folder = Path(os.path.abspath(folder))
    runs, skipped = read_runs(folder)
    caches: dict[str, dict] = {}
    for run in runs:
        cache = run.record.get("cache") or {}
        key = str(run.record.get("cache_id") or cache.get("path") or "?")
        if key not in caches:
            path = str(cache.get("path") or "")
            caches[key] = {"path": path, "attrs": cache.get("attrs") or {}, "present": bool(path) and Path(path).is_file()}
    return Page(folder, runs, caches, other_figures(folder, runs), skipped)


# --------------------------------------------------------------------------- HTML

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
section.run { border-top: 2px solid #ddd; margin-top: 2em; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; max-width: 48%; }
figure.gallery { max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; }
.muted { color: #777; }
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(name: str, text: str | None = None) -> str:
    """A relative link to a file beside the page."""
    return f'<a href="{esc(quote(name))}">{esc(text if text is not None else name)}</a>'


def short(value, width: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[:width] + "…"


def number(value, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return ""


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are already HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def settings_text(record: dict) -> str:
    """The model's settings and what differs between runs of one model, on one line."""
    parts = [f"{k}={v}" for k, v in (record.get("hyperparameters") or {}).items()]
    cfg = record.get("config") or {}
    parts += [f"{k}={cfg[k]}" for k in ("seed", "val_fraction", "train_size") if cfg.get(k) is not None]
    return ", ".join(parts)


def caches_html(page: Page) -> str:
    rows = []
    for cache_id, c in page.caches.items():
        a = c["attrs"]
        stem = Path(c["path"]).stem if c["path"] else "?"
        cells = [f"<b>{esc(stem)}</b><br><code>{esc(cache_id)}</code>"
                 + ("" if c["present"] else '<br><span class="muted">file no longer there</span>')]
        details = []
        for key, label in CACHE_FIELDS:
            if a.get(key) not in (None, ""):
                value = a[key]
                shown = short(value, 16) if key.endswith(("fingerprint", "sha256")) else value
                details.append(f"{esc(label)}: <code title=\"{esc(value)}\">{esc(shown)}</code>")
        cells.append("<br>".join(details))
        cells.append(f"<code>{esc(c['path'])}</code>")
        rows.append(cells)
    return table(["cache", "provenance", "path"], rows)


def runs_html(page: Page) -> str:
    headers = ["#", "model", "settings", "cache", "backbone", "pooling", "image size", "precision", "test accuracy",
               "clean test accuracy", "macro F1", "fit time (s)", "run"]
    rows = []
    for i, run in enumerate(page.runs, 1):
        r = run.record
        a = (r.get("cache") or {}).get("attrs") or {}
        m = r.get("metrics") or {}
        cache = Path(str((r.get("cache") or {}).get("path") or "?")).stem
        rows.append([str(i), f'<a href="#{esc(run.anchor)}">{esc(r.get("model"))}</a>', esc(settings_text(r)),
                     esc(cache), esc(a.get("backbone")), esc(a.get("pooling")), esc(a.get("image_size")),
                     esc(a.get("precision")), number(m.get("accuracy"), ".4f"), number(m.get("clean_accuracy"), ".4f"),
                     number(m.get("macro_f1"), ".4f"),
                     number(m.get("train_time_s"), ".2f"),
                     f'<a href="#{esc(run.anchor)}">{esc(r.get("run_id") or run.name)}</a> ({link(run.name, "record")})'])
    return table(headers, rows, numeric={0, 8, 9, 10, 11})


def run_html(run: Run) -> str:
    r = run.record
    m = r.get("metrics") or {}
    cache = r.get("cache") or {}
    title = f"{r.get('model')} on {Path(str(cache.get('path') or '?')).stem}"
    out = [f'<section class="run" id="{esc(run.anchor)}">',
           f"<h3>{esc(title)} <small class=\"muted\">run {esc(r.get('run_id'))}</small></h3>",
           f"<p>test accuracy <b>{number(m.get('accuracy'), '.4f')}</b>, macro F1 {number(m.get('macro_f1'), '.4f')}; "
           + (f"clean test accuracy {number(m['clean_accuracy'], '.4f')} on {esc(m.get('clean_n_test'))} test rows with no "
              f"near-duplicate in train; " if "clean_accuracy" in m else "")
           + (f"{esc(m['excluded_rows'])} training rows left out ({esc(m.get('exclude'))}); " if "excluded_rows" in m else "")
           + f"fit on {esc(m.get('n_fit'))} rows in {number(m.get('train_time_s'), '.2f')} s, validated on "
           f"{esc(m.get('n_val'))}, tested on {esc(m.get('n_test'))} (predict {number(m.get('predict_time_s'), '.3f')} s); "
           f"written {esc(r.get('created'))}</p>"]
    for key in FIGURES:
        if key in run.files:
            name = run.files[key]
            out.append(f'<figure class="{esc(key)}"><a href="{esc(quote(name))}"><img src="{esc(quote(name))}" alt="{esc(key)}"></a>'
                       f"<figcaption>{esc(key)}</figcaption></figure>")
    if r.get("gallery") not in (None, "written"):
        out.append(f'<p class="muted">no gallery: {esc(r["gallery"])}</p>')
    settings = {**(r.get("hyperparameters") or {}),
                **{k: v for k, v in (r.get("config") or {}).items() if k in ("seed", "val_fraction", "train_size")}}
    chosen = {k: v for k, v in (r.get("chosen") or {}).items() if not isinstance(v, (list, dict))}
    rows = [[esc(k), f"<code>{esc(json.dumps(v))}</code>"] for k, v in settings.items()]
    rows += [[f"chosen: {esc(k)}", f"<code>{esc(json.dumps(v))}</code>"] for k, v in chosen.items()]
    ident = {"cache id": r.get("cache_id"), "cache": cache.get("path")}
    attrs = cache.get("attrs") or {}
    ident.update({label: attrs.get(key) for key, label in CACHE_FIELDS if attrs.get(key) not in (None, "")})
    rows += [[f"cache: {esc(k)}", f"<code>{esc(v)}</code>"] for k, v in ident.items()]
    out.append("<details open><summary>settings and cache identity</summary>" + table(["setting", "value"], rows)
               + "</details>")
    if run.report_text:
        out.append(f"<details open><summary>classification report (test rows)</summary><pre>{esc(run.report_text)}</pre></details>")
    files = [link(run.name, "run record")] + [link(name, key) for key, name in run.files.items() if key not in FIGURES]
    out.append("<p>files: " + " · ".join(files) + "</p>")
    if run.missing:
        out.append(f'<p class="muted">missing (deleted?): {esc(", ".join(run.missing))}</p>')
    out.append("</section>")
    return "\n".join(out)


def render(page: Page) -> str:
    """The page as one HTML string."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    parts = ["<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>featurecache: {esc(page.folder.name)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>featurecache runs in <code>{esc(page.folder.name)}</code></h1>",
             f'<p class="muted">{len(page.runs)} run(s), written {esc(now)} from the files in {esc(page.folder)}; '
             f"rebuild with <code>python -m classify.report --out-dir {esc(page.folder.name)}</code>.</p>"]
    parts.append("<h2>Caches</h2>")
    parts.append(caches_html(page) if page.caches else '<p class="muted">no runs yet.</p>')
    parts.append("<h2>Runs, by test accuracy</h2>")
    parts.append(runs_html(page) if page.runs else
                 '<p class="muted">no run records here: run <code>python -m classify</code> or '
                 "<code>python -m classify.compare</code>.</p>")
    parts.append(audits_html(page.folder))
    if page.figures:
        parts.append("<h2>Other figures</h2>")
        for name, siblings in page.figures:
            extra = " · ".join(link(s) for s in siblings)
            parts.append(f'<figure><a href="{esc(quote(name))}"><img src="{esc(quote(name))}" alt="{esc(name)}"></a>'
                         f"<figcaption>{esc(name)}{' · ' + extra if extra else ''}</figcaption></figure>")
    if page.runs:
        parts.append("<h2>Each run</h2>")
        parts.extend(run_html(run) for run in page.runs)
    if page.skipped:
        parts.append(f'<p class="muted">not run records, skipped: {esc(", ".join(page.skipped))}</p>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_index(out_dir: str | os.PathLike) -> Path:
    """Rebuild <out_dir>/index.html from what is on disk there, atomically, and return its path.

    Held under a lock on <out_dir>/index.lock, so of runs finishing together the last writer reads
    every run's files. A failed write (full disk, no permission) is one line and leaves the earlier
    page as it was."""
    folder = Path(os.path.abspath(out_dir))
    target = folder / INDEX
    try:
        with locked(folder / LOCK, str(target)):
            write_text(target, render(build_page(folder)))
    except OSError as e:
        raise room_error(os_error(e) or e, folder) from None
    return target


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default="reports", show_default=True,
              help="Reports folder to index (where classify and compare wrote their runs).")
def cli(out_dir: str) -> None:
    """Rebuild <out-dir>/index.html from the runs and figures in the folder: a table of runs sorted by
    test accuracy, and per run its curves, confusion matrix, gallery, report, settings and cache.
    Runs whose files were deleted drop out. Open the page in any browser; it needs no network."""
    if not Path(out_dir).is_dir():
        raise UserError(f"no reports folder at {out_dir}: run `make classify` or `make compare` first, or pass --out-dir")
    path = write_index(out_dir)
    page_runs, _ = read_runs(path.parent)
    click.echo(f"wrote {path} ({len(page_runs)} run(s)); open it in a browser: file://{quote(str(path))}")


def main() -> None:
    cli(prog_name="python -m classify.report")


if __name__ == "__main__":
    main()
