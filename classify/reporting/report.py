"""`featurecache report --out-dir DIR` / `make report`: one offline page over every run in a reports folder.

Reads what is on disk in --out-dir (default reports/): every run record
(`*-run.json`, written by `python -m classify` or `classify.workflows.compare`, read through
`classify.runs.record.RunRecord`) and the files it names, in the run's own folder (`<name>/`) or,
for runs written flat, beside it; and the figures other commands leave there (comparison chart,
learning curves, a run's robustness figures in its folder, ...). A `*-run.json` that is not a run
record is listed as "skipped: <name>: what is wrong" on the page and on stderr. Writes, atomically:

    <out-dir>/index.html   the runs grouped by cache (data set, backbone, image size, pooling,
                           precision; its class count), each group sorted by test accuracy, with a
                           column of the settings that differ inside the group, a thumbnail and
                           links to each run's figures, and the group's best run by validation
                           accuracy; the comparison, learning-curve, active-learning and robustness
                           figures, each kind in a section; the caches' provenance (weights,
                           digests); per run: curves, confusion matrix, gallery, classification
                           report, settings and the cache identity it used
    <out-dir>/best.json    per cache id, the run with the best validation accuracy (never the test
                           rows'): what `predict --run best` uses

The page fits a 1,400 px window: long names wrap or are cut with the whole name on hover.

The page is plain HTML and CSS: no script, no CDN, no network address; every `src` and `href`
is a path inside its folder (or an anchor in it), so the folder can be zipped, moved or opened
from disk. `classify`, `compare` and `learning_curve` rewrite it after each run through
`write_index`; this command rebuilds it by hand, e.g. after deleting a run's files.

    featurecache report --out-dir reports
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from classify.reporting.audit_page import FIGURE_ENDINGS as AUDIT_FIGURES, audits_html
from classify.runs.record import SUFFIX as RUN_SUFFIX, RunRecord, RunRecordError
from featurecache.errors import UserError
from featurecache.files import locked, os_error, room_error, write_text

INDEX = "index.html"
LOCK = "index.lock"                   # one writer of index.html at a time: the last one sees every run
FIGURES = ("curves", "confusion", "gallery", "reliability")
RUN_FILE_ENDINGS = ("-curves.png", "-confusion.png", "-gallery.png", "-reliability.png")  # a run's figures, never "other figures"
BEST = "best.json"                    # per cache id, the run with the best validation accuracy
BEST_FORMAT = "featurecache-best"
GROUP_FIELDS = ("dataset", "backbone", "image_size", "pooling", "precision")  # what a group's header names
FIGURE_SECTIONS = (  # (heading, file-name ending) of the figures other commands leave in the folder
    ("Comparison", "comparison.png"), ("Learning curves", "-learning-curve.png"), ("Active learning", "-active.png"),
    ("Robust model", "-robust-model.png"),   # classify.workflows.robust_model: its .csv and .md linked beside
)
ROBUSTNESS_MARKS = ("-robustness-", "-adversarial-")   # <run>-robustness-<id>.png, <run>-adversarial-<id>.png
CACHE_FIELDS = (  # (attribute, label) shown for each cache in the header
    ("dataset", "data set"), ("data_kind", "images"), ("data_location", "from"), ("data_fingerprint", "data digest"),
    ("backbone", "backbone"), ("weights", "weights"), ("weights_sha256", "weights SHA-256"),
    ("backbone_sha256", "backbone file SHA-256"), ("feature_layer", "feature layer"), ("pooling", "pooling"),
    ("image_size", "image size"), ("precision", "precision"), ("feature_dim", "features"), ("n_train", "train rows"),
    ("n_test", "test rows"), ("created", "extracted"),
)

__all__ = ["Run", "Group", "Page", "read_runs", "other_figures", "build_page", "group_runs", "best_by_validation",
           "best_pointers", "best_run_of", "render", "write_index"]


@dataclass
class Run:
    """One run record found in the folder, with the files it names that are still there."""

    name: str                     # file name of the run record
    record: RunRecord
    files: dict[str, str]         # key (curves, confusion, ...) -> the file's path from the page, present ones
    missing: list[str]            # file names the record names that are gone
    report_text: str = ""

    @property
    def anchor(self) -> str:
        return "run-" + self.name[: -len(RUN_SUFFIX)]

    @property
    def accuracy(self) -> float:
        return self.record.metrics.accuracy

    @property
    def cache_key(self) -> str:
        return self.record.cache_id or self.record.cache.path or "?"

    @property
    def val_accuracy(self) -> float | None:
        """Accuracy of the kept model on its validation rows (RunRecord.validation_accuracy), or None."""
        return self.record.validation_accuracy


@dataclass
class Group:
    """The runs of one cache, best test accuracy first, with what differs between them."""

    key: str                      # cache id
    runs: list[Run]
    differing: list[str]          # setting names whose values differ between the group's runs
    best: Run | None              # best validation accuracy (never the test rows'), None if no run has one

    @property
    def record(self) -> RunRecord:
        return self.runs[0].record


@dataclass
class Page:
    """Everything the page shows, as plain data."""

    folder: Path
    runs: list[Run]                                        # sorted by test accuracy, best first
    caches: dict[str, dict]                                # cache id -> {path, attrs, problem (None: there as used)}
    figures: list[tuple[str, list[str]]]                   # (PNG name, names of its CSV/MD siblings)
    skipped: list[str] = field(default_factory=list)       # "<name>: what is wrong" of *-run.json files that are not run records
    groups: list[Group] = field(default_factory=list)      # runs by cache


def read_runs(folder: Path) -> tuple[list[Run], list[str]]:
    """Every run record in `folder`, best accuracy first, and "<name>: what is wrong" for each
    `*-run.json` file that is not a run record (`RunRecord.load` checks them). The files a record names
    are looked up where `RunRecord.located` says (its run folder, or beside it for runs written flat),
    so a folder that was moved still reads."""
    runs, skipped = [], []
    for path in sorted(folder.glob("*" + RUN_SUFFIX)):
        try:
            record = RunRecord.load(path)
        except RunRecordError as e:
            skipped.append(f"{path.name}: {e.problem}")
            continue
        present, missing = {}, []
        for key in record.files:
            if key == "run":
                continue
            found = record.located(key)
            if found.is_file():
                present[key] = found.relative_to(folder).as_posix()
            else:
                missing.append(found.name)
        text = ""
        if "report_txt" in present:
            try:
                text = (folder / present["report_txt"]).read_text()
            except (OSError, UnicodeDecodeError):
                text = ""
        runs.append(Run(path.name, record, present, missing, text))
    runs.sort(key=lambda r: (-r.accuracy, r.name))
    return runs, skipped


def other_figures(folder: Path, runs: list[Run]) -> list[tuple[str, list[str]]]:
    """PNGs in the folder, or in a run's own folder, that belong to no run record (comparison chart,
    learning curves, a run's robustness figures, ...), each with the CSV / Markdown files of the same
    stem, as paths from the page. Figures named like a run's figures are left out: they are what is
    left of a run whose record was deleted."""
    claimed = {name for r in runs for name in r.files.values()}
    places = [folder] + sorted({folder / r.record.folder for r in runs if r.record.folder})
    out = []
    for png in (p for place in places for p in sorted(place.glob("*.png"))):
        name = png.relative_to(folder).as_posix()
        if name in claimed or png.name.startswith(".") or png.name.endswith(RUN_FILE_ENDINGS + AUDIT_FIGURES):
            continue
        siblings = [p.relative_to(folder).as_posix() for ext in (".csv", ".md") if (p := png.with_suffix(ext)).is_file()]
        out.append((name, siblings))
    return out


def build_page(folder: str | os.PathLike) -> Page:
    """What the page of `folder` shows, read from disk."""
    folder = Path(os.path.abspath(folder))
    runs, skipped = read_runs(folder)
    from classify.runs.identity import run_cache_problem   # here: it pulls in h5py

    caches: dict[str, dict] = {}
    for run in runs:
        cache = run.record.cache
        if run.cache_key not in caches:
            caches[run.cache_key] = {"path": cache.path, "attrs": cache.attrs, "problem": run_cache_problem(run.record)}
    return Page(folder, runs, caches, other_figures(folder, runs), skipped, group_runs(runs))


# --------------------------------------------------------------------------- groups and the best run

SETTINGS = ("seed", "val_fraction", "train_size", "views", "tta", "max_memory")  # shared settings shown when they differ


def run_settings(record: RunRecord) -> dict[str, str]:
    """Every setting of a run that can differ between runs of one cache, as JSON text: the model's
    hyperparameters, the split, views and TTA, the memory budget and the cache's precision."""
    shared = record.shared
    out = {k: json.dumps(v) for k, v in record.hyperparameters.items()}
    out.update({k: json.dumps(getattr(shared, k)) for k in SETTINGS})
    out["precision"] = json.dumps(record.cache.attrs.get("precision"))
    return out


def differing_settings(runs: list[Run]) -> list[str]:
    """Names of the settings whose values differ between runs that have them (C between lr runs,
    views between runs of any model, ...), in the order first seen."""
    values: dict[str, set] = {}
    for run in runs:
        for k, v in run_settings(run.record).items():
            values.setdefault(k, set()).add(v)
    return [k for k, vs in values.items() if len(vs) > 1]


def best_by_validation(runs: list[Run]) -> Run | None:
    """The run with the best validation accuracy (ties: the first by name), or None. The test
    rows never choose: they stay an unbiased estimate of the chosen run."""
    scored = [r for r in runs if r.val_accuracy is not None]
    return max(sorted(scored, key=lambda r: r.name), key=lambda r: r.val_accuracy, default=None)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs by cache (its identity), each group sorted as `runs` is (best test accuracy first);
    groups ordered by data set, backbone, image size and pooling."""
    by_cache: dict[str, list[Run]] = {}
    for run in runs:
        by_cache.setdefault(run.cache_key, []).append(run)
    groups = [Group(k, rs, differing_settings(rs), best_by_validation(rs)) for k, rs in by_cache.items()]
    return sorted(groups, key=lambda g: tuple(str(g.record.cache.attrs.get(k) or "") for k in GROUP_FIELDS) + (g.key,))


def best_pointers(groups: list[Group]) -> dict:
    """What best.json holds: per cache id, the run with the best validation accuracy."""
    out = {}
    for g in groups:
        if g.best is not None:
            r = g.best.record
            out[g.key] = {"cache": r.cache.path, "run": g.best.name, "run_id": r.run_id, "model": r.model,
                          "val_accuracy": g.best.val_accuracy, "test_accuracy": r.metrics.accuracy}
    return {"format": BEST_FORMAT, "chosen_by": "validation accuracy", "caches": out}


def best_run_of(folder: str | os.PathLike, cache_path: str | os.PathLike) -> Path:
    """The run record, in reports folder `folder`, with the best validation accuracy among the runs of
    the cache at `cache_path` (matched by the cache's identity, not its file name). Reads the records
    themselves, so a folder written before best.json existed works too."""
    from classify.runs.outputs import cache_id
    from featurecache.cache import read_cache

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"no reports folder at {folder}: run classify first, or pass another reports folder")
    key = cache_id(read_cache(cache_path, features=False))
    best = best_by_validation([r for r in read_runs(folder)[0] if r.cache_key == key])
    if best is None:
        raise UserError(f"no run of the cache {cache_path} (id {key}) with a validation accuracy in {folder}: "
                        "run classify on it first, or pass another cache or reports folder")
    return folder / best.name


# --------------------------------------------------------------------------- HTML

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1320px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre { font: 12px/1.4 ui-monospace, monospace; overflow-wrap: anywhere; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; white-space: pre-wrap; }
section.group { margin: 1em 0 2em; }
section.run { border-top: 2px solid #ddd; margin-top: 2em; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; max-width: 48%; }
figure.gallery, figure.wide { max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; overflow-wrap: anywhere; }
img.thumb { width: 96px; height: auto; border: 1px solid #ddd; display: block; }
.name { display: inline-block; max-width: 18em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
        vertical-align: bottom; }
.best { color: #1a7f37; font-weight: 600; }
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


def cache_note(problem: str) -> str:
    """What the page says of a cache that is not at its path as the runs used it."""
    if problem == "gone":
        return "file no longer there"
    return f"the file at this path is not this cache now: {problem}"


def caches_html(page: Page) -> str:
    rows = []
    for cache_id, c in page.caches.items():
        a = c["attrs"]
        stem = Path(c["path"]).stem if c["path"] else "?"
        cells = [f"<b>{esc(stem)}</b><br><code>{esc(cache_id)}</code>"
                 + ("" if c["problem"] is None else f'<br><span class="muted">{esc(cache_note(c["problem"]))}</span>')]
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


def interval(record: RunRecord) -> tuple[float, float] | None:
    """A run's bootstrap 95% interval of its test accuracy, or None (records older than intervals)."""
    return record.metrics.accuracy_ci


def standings(runs: list[Run]) -> dict[str, str]:
    """Run name -> how it stands against the most accurate run on the same cache, by their bootstrap
    intervals: runs whose intervals overlap are called neither better nor worse."""
    top: dict[str, Run] = {}
    for run in runs:   # sorted best first
        top.setdefault(run.record.cache_id, run)
    out = {}
    for run in runs:
        best = top[run.record.cache_id]
        mine, theirs = interval(run.record), interval(best.record)
        if mine is None or theirs is None:
            out[run.name] = "no interval"
        elif run is best:
            rivals = [r for r in runs if r is not run and r.record.cache_id == run.record.cache_id]
            tied = sum(1 for r in rivals if interval(r.record) and interval(r.record)[1] >= mine[0])
            out[run.name] = (f"top; not better than {tied} other run(s): intervals overlap" if tied
                             else "top" + ("; better than the rest: no interval overlaps" if rivals else ""))
        elif mine[1] >= theirs[0]:
            out[run.name] = "not worse than the top: intervals overlap"
        else:
            out[run.name] = "worse than the top: intervals apart"
    return out


def interval_words(record: RunRecord) -> str:
    """ " (95% interval a-b, ECE e; calibrated at T = t from ECE e0)" for the run's paragraph."""
    ci, m, cal = interval(record), record.metrics, record.calibration
    parts = [f"95% interval {ci[0]:.3f}&ndash;{ci[1]:.3f}"] if ci else []
    if m.ece is not None:
        parts.append(f"ECE {m.ece:.3f}")
    if cal is not None:
        parts.append(f"calibrated at T = {cal.temperature:.2f} from ECE {number(cal.ece_before, '.3f')}")
    return f" ({'; '.join(parts)})" if parts else ""


def truncated(text) -> str:
    """A long name cut to fit its column, the whole name on hover."""
    return f'<span class="name" title="{esc(text)}">{esc(text)}</span>'


def setting_value(text: str) -> str:
    value = json.loads(text)
    return value if isinstance(value, str) else text


def group_header(group: Group) -> str:
    """The cache in one line: data set, backbone, image size, pooling, precision, class count."""
    r = group.record
    a = r.cache.attrs
    n = len(r.class_names)
    stem = Path(r.cache.path or "?").stem
    facts = " · ".join(esc(v) for v in (a.get("dataset"), a.get("backbone"),
                                        f"{a.get('image_size')} px" if a.get("image_size") else None,
                                        a.get("pooling"), a.get("precision")) if v)
    return (f'<h3 id="cache-{esc(group.key)}">{facts or esc(stem)} <small class="muted">— {n} classes, '
            f"{len(group.runs)} run(s), cache {truncated(stem)} <code>{esc(group.key)}</code></small></h3>")


def best_line(group: Group) -> str:
    if group.best is None:
        return '<p class="muted">no run here records a validation accuracy, so none is marked best.</p>'
    path = group.best.record.cache.path or "CACHE"
    return (f'<p><span class="best">best by validation accuracy</span> '
            f'({number(group.best.val_accuracy, ".4f")}): <a href="#{esc(group.best.anchor)}">'
            f'{esc(group.best.record.model)} {esc(group.best.record.run_id)}</a>; predict with it: '
            f'<code>make predict RUN=best FEATURES={esc(path)} IMAGES=...</code></p>')


def thumbnail(run: Run) -> str:
    """A small picture of the run's curves (or confusion matrix) linking to it, and links to each figure."""
    shown = next((run.files[k] for k in ("curves", "confusion") if k in run.files), None)
    links = " ".join(link(run.files[k], k) for k in FIGURES if k in run.files)
    if shown is None:
        return links
    return (f'<a href="{esc(quote(shown))}"><img class="thumb" src="{esc(quote(shown))}" alt="{esc(shown)}" '
            f'loading="lazy"></a><small>{links}</small>')


def group_table(group: Group) -> str:
    """One row per run of the group, best test accuracy first: what differs, validation and test scores."""
    headers = ["#", "figures", "model", "settings that differ", "val accuracy", "test accuracy", "95% interval",
               "against the group's top run", "ECE", "clean test accuracy", "macro F1", "fit time (s)", "run"]
    rows = []
    standing = standings(group.runs)
    for i, run in enumerate(group.runs, 1):
        r, m = run.record, run.record.metrics
        settings = run_settings(r)
        differs = ", ".join(f"{k}={setting_value(settings[k])}" for k in group.differing if k in settings)
        best = ' <span class="best" title="best validation accuracy of this cache">best</span>' \
            if run is group.best else ""
        rows.append([str(i), thumbnail(run), f'<a href="#{esc(run.anchor)}">{esc(r.model)}</a>',
                     esc(differs) or '<span class="muted">—</span>', number(run.val_accuracy, ".4f"),
                     number(m.accuracy, ".4f"),
                     f"{ci[0]:.3f}&ndash;{ci[1]:.3f}" if (ci := interval(r)) else "", esc(standing[run.name]),
                     number(m.ece, ".3f"), number(m.clean_accuracy, ".4f"), number(m.macro_f1, ".4f"),
                     number(m.train_time_s, ".2f"),
                     f'<a href="#{esc(run.anchor)}">{esc(r.run_id or run.name)}</a> '
                     f'({link(run.name, "record")}){best}'])
    return table(headers, rows, numeric={0, 4, 5, 6, 8, 9, 10, 11})


def groups_html(page: Page) -> str:
    return "\n".join(f'<section class="group">{group_header(g)}{best_line(g)}{group_table(g)}</section>'
                      for g in page.groups)


def figure_sections(figures: list[tuple[str, list[str]]]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """The figures other commands left, by kind: comparison, learning curves, active learning,
    robustness, then any other; kinds with no figure are left out."""
    sections = [(heading, [f for f in figures if f[0].endswith(ending)]) for heading, ending in FIGURE_SECTIONS]
    sections.append(("Robustness", [f for f in figures if any(m in f[0] for m in ROBUSTNESS_MARKS)]))
    placed = {f[0] for _, fs in sections for f in fs}
    sections.append(("Other figures", [f for f in figures if f[0] not in placed]))
    return [(h, fs) for h, fs in sections if fs]


def figure_html(name: str, siblings: list[str]) -> str:
    extra = " · ".join(link(s) for s in siblings)
    return (f'<figure><a href="{esc(quote(name))}"><img src="{esc(quote(name))}" alt="{esc(name)}" loading="lazy"></a>'
            f"<figcaption>{esc(name)}{' · ' + extra if extra else ''}</figcaption></figure>")


def scores_html(r: RunRecord) -> str:
    """The run's paragraph: test scores, clean-test accuracy, rows left out, row counts, timings."""
    m = r.metrics
    return (f"<p>test accuracy <b>{number(m.accuracy, '.4f')}</b>{interval_words(r)}, macro F1 {number(m.macro_f1, '.4f')}; "
            + (f"clean test accuracy {number(m.clean_accuracy, '.4f')} on {esc(m.clean_n_test)} test rows with no "
               f"near-duplicate in train; " if m.clean_accuracy is not None else "")
            + (f"{esc(m.excluded_rows)} training rows left out ({esc(m.exclude)}); " if m.excluded_rows is not None else "")
            + f"fit on {esc(m.n_fit)} rows in {number(m.train_time_s, '.2f')} s, validated on "
            f"{esc(m.n_val)}, tested on {esc(m.n_test)} (predict {number(m.predict_time_s, '.3f')} s); "
            f"written {esc(r.created)}</p>")


def settings_rows(r: RunRecord) -> list[list[str]]:
    """The run's settings, what training chose, and the identity of its cache, as table rows."""
    shared = r.shared
    settings = {**r.hyperparameters, **{k: getattr(shared, k) for k in ("seed", "val_fraction", "train_size")}}
    chosen = {k: v for k, v in r.chosen.items() if not isinstance(v, (list, dict))}
    rows = [[esc(k), f"<code>{esc(json.dumps(v))}</code>"] for k, v in settings.items()]
    rows += [[f"chosen: {esc(k)}", f"<code>{esc(json.dumps(v))}</code>"] for k, v in chosen.items()]
    ident = {"cache id": r.cache_id, "cache": r.cache.path}
    attrs = r.cache.attrs
    ident.update({label: attrs.get(key) for key, label in CACHE_FIELDS if attrs.get(key) not in (None, "")})
    return rows + [[f"cache: {esc(k)}", f"<code>{esc(v)}</code>"] for k, v in ident.items()]


def run_html(run: Run) -> str:
    r = run.record
    title = f"{r.model} on {Path(r.cache.path or '?').stem}"
    out = [f'<section class="run" id="{esc(run.anchor)}">',
           f"<h3>{esc(title)} <small class=\"muted\">run {esc(r.run_id)}</small></h3>", scores_html(r)]
    for key in FIGURES:
        if key in run.files:
            name = run.files[key]
            out.append(f'<figure class="{esc(key)}"><a href="{esc(quote(name))}"><img src="{esc(quote(name))}" alt="{esc(key)}"></a>'
                       f"<figcaption>{esc(key)}</figcaption></figure>")
    if r.gallery not in (None, "written"):
        out.append(f'<p class="muted">no gallery: {esc(r.gallery)}</p>')
    out.append("<details open><summary>settings and cache identity</summary>" + table(["setting", "value"], settings_rows(r))
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
             f"rebuild with <code>featurecache report --out-dir {esc(page.folder.name)}</code>.</p>"]
    parts.append("<h2>Runs, by cache</h2>")
    parts.append(groups_html(page) if page.runs else
                 '<p class="muted">no run records here: run <code>python -m classify</code> or '
                 "<code>featurecache compare</code>.</p>")
    parts.append(audits_html(page.folder))
    for heading, figures in figure_sections(page.figures):
        parts.append(f"<h2>{esc(heading)}</h2>")
        parts.extend(figure_html(name, siblings) for name, siblings in figures)
    parts.append("<h2>Caches</h2>")
    parts.append(caches_html(page) if page.caches else '<p class="muted">no runs yet.</p>')
    if page.runs:
        parts.append("<h2>Each run</h2>")
        parts.extend(run_html(run) for group in page.groups for run in group.runs)
    if page.skipped:
        parts.append('<p class="muted">not run records, skipped:</p><ul class="muted">'
                     + "".join(f"<li>skipped: {esc(s)}</li>" for s in page.skipped) + "</ul>")
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
            page = build_page(folder)
            write_text(target, render(page))
            if page.groups:
                write_text(folder / BEST, json.dumps(best_pointers(page.groups), indent=1, allow_nan=False) + "\n")
    except OSError as e:
        raise room_error(os_error(e) or e, folder) from None
    return target
