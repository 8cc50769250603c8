"""Writing a run's files under reports/: names, atomic writes, the run record.

A run's files are named after the cache, the model and a short digest of the run's identity
(`<cache stem>-<model>-<8 hex>-run.json`, ...). The run record stays at the top of the reports
folder; the run's figures, reports and model go into a folder of its own beside it, named like the
record without "-run.json" (`reports/<name>/<name>-curves.png`, ...; the record's `folder`). The
digest covers the model's settings, the seed, the validation share, the training-set size and the
cache's identity attributes (not its file name), so a run with other settings, or on another cache
that happens to share a file name, never replaces an earlier run's files; the same settings on the same cache replace only that
run. `<cache stem>-<model>-latest.json` names the latest such run (a convenience for people;
comparison tables never point at it). --plot-name / --report-name replace the default names, and the
files then lie at the top of --out-dir, named as asked (no run folder).

Every file is first written aside (`.<name>.<pid>.tmp<suffix>` in the same folder,
`featurecache.files.Staged`) and renamed into place only when all of a run's files are written,
so a run that fails or is interrupted part-way leaves the earlier files exactly as they were (and
no new run folder). Paths inside run records are absolute; readers find the files through
`RunRecord.located`, and `resolve` reads the paths other files hold (relative to the file that holds them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import json
import os
import tempfile
import unicodedata
from pathlib import Path

from classify.reporting import plots

from classify.runs import saved
from classify.runs.record import Calibration, CacheRef, Metrics, RunRecord
from classify.training.config import ClassifyConfig, has_views
from classify.training.specs import SPECS
from classify.runs.identity import digest, identity, json_default
from classify.pixel.adversarial import settings_of
from classify.training.evaluation import reliability
from classify.training.train import RunResult, gallery_items
from featurecache.cache import Cache
from featurecache.errors import SettingError
from featurecache.files import Staged, check_writable, os_error, remove_stale_temps, room_error, versions

__all__ = ["csv_text", "Staged", "check_out_dir", "check_name", "cache_id", "run_id", "digest", "run_paths", "resolve",
           "drawable_names", "Figures", "draw_run", "model_bytes", "save_model", "stage_run", "write_run", "write_json"]


def csv_text(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as CSV text with a header: `columns` (other keys ignored), or the first row's keys."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, columns or list(rows[0]), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create the output folder if needed, make sure files can be written in it, and remove the
    temporary files that killed runs left there. Returns it as an absolute path."""
    out = check_writable(Path(os.path.abspath(out_dir)), "out_dir")
    remove_stale_temps(out)
    return out


def check_name(setting: str, name: str | None) -> None:
    """A `plot_name` or `report_name` is a file name, never a path (the folder is `out_dir`)."""
    if name is not None and (not name.strip() or Path(name).name != name or name in (".", "..")):
        raise SettingError(f"{setting}={name!r} must be a plain file name; choose the folder with `out_dir`")


def cache_identity(cache: Cache) -> dict:
    """What makes a cache the cache it is (`classify.runs.identity.identity`), not its file name."""
    return identity(cache.attrs, cache.path, cache.file)


def cache_id(cache: Cache) -> str:
    """Short digest of `cache_identity`: equal for two copies of one cache, different for caches
    that merely share a file name."""
    return digest(cache_identity(cache))


def run_id(cache: Cache, cfg: ClassifyConfig, model: str | None = None) -> str:
    """Short digest of everything that decides a run's result: the cache's identity, the model and
    its hyperparameters, the seed, the validation share and the training-set size."""
    model = model or cfg.model
    hyper = cfg.hyperparameters() if model == cfg.model else {}
    # views and TTA enter the digest only when not the defaults, so earlier runs keep their names
    augment = {k: v for k, v in (("views", cfg.views), ("tta", cfg.tta), ("calibrate", cfg.calibrate))
               if v != getattr(ClassifyConfig, k)}
    # a memory budget may make the run stream (another solver): it enters the digest only when given
    if cfg.max_memory is not None:
        augment["max_memory"] = cfg.max_memory
    if cfg.exclude:   # training rows an audit flagged, left out
        augment["exclude"] = cfg.exclude
    if settings_of(cfg):   # adversarial training (none at --adv-ratio 0: plain training, the plain run's id)
        augment["adversarial"] = settings_of(cfg).record()
    return digest({"cache": cache_identity(cache), "model": model, "hyperparameters": hyper, "seed": cfg.seed,
                    "val_fraction": cfg.val_fraction, "train_size": cfg.train_size, **augment})


def run_paths(out_dir: Path, cache: Cache, cfg: ClassifyConfig, model: str | None = None) -> dict[str, Path]:
    """Where each file of a run goes (absolute). Default names: <base>-run.json and the pointer
    <cache stem>-<model>-latest.json at the top of out_dir, and the run's folder <base>/ beside them holding
    <base>-{curves.png, confusion.png, gallery.png, reliability.png, report.txt, report.json, model.<ext>},
    where <base> is <cache stem>-<model>-<run id>.

    --plot-name NAME names the curves PNG (".png" added if missing); the confusion matrix and gallery
    become NAME-confusion.png, NAME-gallery.png and NAME-reliability.png. --report-name NAME gives NAME.txt and NAME.json;
    the run record and model become NAME-run.json and NAME-model.<ext>, and no pointer is written. Named
    files are not put in a run folder: they lie in out_dir under the names asked for.
    """
    model = model or cfg.model
    out_dir = Path(os.path.abspath(out_dir))
    stem = Path(cache.path).stem
    adv = settings_of(cfg) if model == cfg.model else None
    base = f"{stem}-{model}-{adv.name_part() + '-' if adv else ''}{run_id(cache, cfg, model)}"
    plot = Path(cfg.plot_name).stem if cfg.plot_name else None
    report = Path(cfg.report_name).stem if cfg.report_name and Path(cfg.report_name).suffix in (".txt", ".json") \
        else cfg.report_name
    folder = out_dir if plot or report else out_dir / base   # the run's own folder, for default names
    paths = {
        "curves": folder / (f"{plot}.png" if plot else f"{base}-curves.png"),
        "confusion": folder / f"{plot or base}-confusion.png",
        "gallery": folder / f"{plot or base}-gallery.png",
        "reliability": folder / f"{plot or base}-reliability.png",
        "report_txt": folder / f"{report or base + '-report'}.txt",
        "report_json": folder / f"{report or base + '-report'}.json",
        "run": out_dir / f"{report or base}-run.json",
        "model": folder / f"{report or base}-model{SPECS[model].suffix}",
    }
    if not report:
        paths["latest"] = out_dir / f"{stem}-{model}-latest.json"
    return paths


def resolve(holder: str | os.PathLike, value: str) -> Path:
    """A path read from a file (run record, comparison table): absolute as written, or relative to
    the folder of the file that holds it."""
    path = Path(value)
    return path if path.is_absolute() else Path(holder).parent / path


# --------------------------------------------------------------------------- class names in figures


@functools.lru_cache(maxsize=None)
def _default_charmap() -> frozenset:
    """Code points of DejaVu Sans, matplotlib's default font (empty if it cannot be read)."""
    from matplotlib import font_manager, ft2font

    try:
        return frozenset(ft2font.FT2Font(font_manager.findfont("DejaVu Sans")).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=None)
def _charmaps() -> tuple[tuple[str, frozenset], ...]:
    """(family, code points) of every installed font, DejaVu Sans (matplotlib's default) first.
    Last-resort fonts, whose glyphs are boxes, are left out. Read only when a name needs a character
    DejaVu Sans lacks: reading every font costs seconds where many are installed."""
    from matplotlib import font_manager, ft2font

    out, seen = [], set()
    default = font_manager.findfont("DejaVu Sans")
    fonts = sorted(font_manager.fontManager.ttflist, key=lambda f: f.fname != default)
    for font in fonts:
        if font.name in seen or "last resort" in font.name.lower():
            continue
        try:
            points = frozenset(ft2font.FT2Font(font.fname).get_charmap())
        except (OSError, RuntimeError, ValueError):
            continue
        seen.add(font.name)
        out.append((font.name, points))
    return tuple(out)


def drawable_names(names: list[str]) -> tuple[list[str], list[str], str | None]:
    """Class names as figures can draw them: (labels, font families, note or None).

    Names are NFC-normalised. When DejaVu Sans lacks some of their characters (CJK scripts), an
    installed font that has them is added as a fallback family; when no font has them, those
    characters are drawn as escapes (\\u732b) rather than as empty boxes, and the note says so."""
    names = [unicodedata.normalize("NFC", str(n)) for n in names]
    default = _default_charmap()
    if not default or all(c.isspace() or ord(c) in default for n in names for c in n):
        return names, [], None
    fonts = _charmaps()
    if not fonts:
        return names, [], None
    default = fonts[0][1]
    missing = {c for n in names for c in n if not c.isspace() and ord(c) not in default}
    if not missing:
        return names, [], None
    for family, points in fonts[1:]:
        if all(ord(c) in points for c in missing):
            return names, [fonts[0][0], family], None
    covered = set().union(*(p for _, p in fonts))
    lost = {c for c in missing if ord(c) not in covered}
    labels = ["".join(c.encode("unicode_escape").decode() if c in lost else c for c in n) for n in names]
    sample = sorted(lost)[:5]
    note = (f"{len(lost)} character(s) of the class names ({', '.join(sample)}{', ...' if len(lost) > 5 else ''}) "
            "are in no installed font, so figures show them as escapes (\\uXXXX); install a font that covers "
            "them (e.g. Noto Sans CJK) to draw them")
    return labels, [], note


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, default=json_default, allow_nan=False) + "\n")


def run_record(cache: Cache, cfg: ClassifyConfig, result: RunResult, paths: dict[str, Path],
               gallery_note: str | None) -> RunRecord:
    """Everything about a run: its identity, settings, chosen values, the cache it read, metrics, its files."""
    files = {k: str(p) for k, p in paths.items() if k != "latest" and (k != "gallery" or gallery_note is None)}
    if not result.trained.history:
        files.pop("curves")
    folder = paths["model"].parent
    return RunRecord(
        run_id=run_id(cache, cfg),
        cache_id=cache_id(cache),
        model=cfg.model,
        hyperparameters=cfg.hyperparameters(),
        chosen=result.trained.details,
        settings=cfg.settings(has_views(cache.attrs)),  # the summary: what applied to this run
        config=cfg.to_dict(),                           # the full effective configuration
        cache=CacheRef(os.path.abspath(cache.path), cache.attrs),
        class_names=list(cache.class_names),
        metrics=Metrics.from_json(json.loads(json.dumps(result.metrics, default=json_default)), "metrics"),
        # --calibrate: the temperature predict applies, and the test rows' calibration error before it
        calibration=Calibration(**result.calibration) if result.calibration else None,
        # --adversarial: its settings and what the regenerations did (None: plain training)
        adversarial=result.trained.details.get("adversarial"),
        fit_images=result.metrics["fit_images"],
        fit_rows=result.metrics["fit_rows"],
        val_images=result.rows.val.tolist(),
        history=result.trained.history,
        model_format=result.trained.format,
        model_file=paths["model"].name,
        files=files,
        folder="" if folder == paths["run"].parent else folder.name,
        gallery=gallery_note or "written",
        versions=versions(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        path=paths["run"],
    )


def reliability_title(title: str, result: RunResult) -> str:
    ece = f"ECE {result.metrics['ece']:.3f}"
    if result.calibration:   # the fresh result's own dict: {"temperature", "ece_before"}
        ece = (f"ECE {result.calibration['ece_before']:.3f} -> {result.metrics['ece']:.3f} "
               f"(T = {result.calibration['temperature']:.2f})")
    return f"{title}: {ece}"


@dataclasses.dataclass
class Figures:
    """A run's figures as PNG bytes, keyed like its paths ("curves", "confusion", ...), drawn before
    its files are written: compare draws the runs it trains ahead where they train (a worker process
    or a thread, classify.workflows.ahead), and the main thread only writes the bytes."""

    png: dict[str, bytes]
    gallery_note: str | None   # why there is no gallery, or None
    names_note: str | None     # how class names that no font draws were written, or None


def draw_run(cache: Cache, cfg: ClassifyConfig, result: RunResult) -> Figures:
    """Draw a run's figures into memory (nothing is written). One thread draws at a time
    (`plots.DRAWING`): class names in other scripts switch matplotlib's font families while it draws."""
    import matplotlib

    title = f"{cfg.model} on {cache.path.stem}"
    items, gallery_note = gallery_items(cache, result.proba)
    labels, families, names_note = drawable_names(cache.class_names)
    (title,), _, _ = drawable_names([title])
    label_of = dict(zip(cache.class_names, labels))
    items = [{**item, "true": label_of[item["true"]], "predicted": label_of[item["predicted"]]} for item in items]
    png = {}
    with plots.DRAWING, matplotlib.rc_context({"font.family": families} if families else {}):
        if result.trained.history:
            png["curves"] = plots.png(plots.curves_figure(result.trained.history, title))
        png["confusion"] = plots.png(plots.confusion_figure(
            result.confusion, labels, f"{title}: test accuracy {result.metrics['accuracy']:.3f}"))
        if items:
            png["gallery"] = plots.png(plots.gallery_figure(
                items, f"{title}: most confident mistakes", side_px=plots.gallery_side(cache.attrs.get("image_size"))))
        png["reliability"] = plots.png(plots.reliability_figure(
            reliability(cache.test.labels, result.proba), reliability_title(title, result)))
    return Figures(png, gallery_note, names_note)


def stage_run(staged: Staged, cache: Cache, cfg: ClassifyConfig, result: RunResult,
              paths: dict[str, Path], figures: Figures | None = None) -> tuple[RunRecord, str | None]:
    """Write every file of a run aside in `staged` (renamed into place when it commits; a run folder
    it makes is removed again if it does not), its figures drawn now unless `figures` holds them
    (`draw_run`). Returns (run record, why no gallery or None)."""
    remove_stale_temps(paths["model"].parent)   # what a killed run left in this run's folder
    if figures is None:
        figures = draw_run(cache, cfg, result)
    for key, data in figures.png.items():
        staged.aside(paths[key]).write_bytes(data)
    names_note = figures.names_note
    staged.aside(paths["report_txt"]).write_text(result.report_text + (f"\nnote: {names_note}\n" if names_note else ""))
    write_json(staged.aside(paths["report_json"]), result.report)
    model_tmp = staged.aside(paths["model"])
    save_model(result.trained, model_tmp)
    record = run_record(cache, cfg, result, paths, figures.gallery_note)
    record.class_names_note = names_note
    record.model_sha256 = saved.sha256(model_tmp)
    staged.aside(paths["run"]).write_text(record.json())
    if "latest" in paths:
        write_json(staged.aside(paths["latest"]), {"run": paths["run"].name, "run_id": record.run_id})
    return record, figures.gallery_note


def model_bytes(trained, suffix: str) -> bytes:
    """The model file `save_model` writes, as bytes: an HDF5 model built in memory, another kind
    written to a temporary folder and read back."""
    if suffix == ".h5":
        buffer = io.BytesIO()
        trained.save(buffer)  # h5py.File writes to a file-like object as well as to a path
        return buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="featurecache-model-") as tmp:
        path = Path(tmp) / f"model{suffix}"
        trained.save(path)
        return path.read_bytes()


def save_model(trained, path: Path) -> None:
    """Save a fitted model. HDF5 models are built in memory and written with one plain write: HDF5
    that runs out of room part-way fails in its destructors (tracebacks, even a crash at exit), while
    a plain write fails with one OSError (ENOSPC, EFBIG) that becomes one line."""
    if path.suffix == ".h5":
        path.write_bytes(model_bytes(trained, ".h5"))
    else:
        trained.save(path)


def write_error(e: BaseException, folder: Path) -> Exception | None:
    """A failed write (full disk, file-size limit, no permission) as one line, or None for other errors."""
    os_err = os_error(e)
    return None if os_err is None else room_error(os_err, folder)


def write_run(cache: Cache, cfg: ClassifyConfig, result: RunResult, paths: dict[str, Path]) -> tuple[RunRecord, str | None]:
    """Write every file of a run, atomically as a set. Returns (run record, why no gallery or None)."""
    try:
        with Staged() as staged:
            return stage_run(staged, cache, cfg, result, paths)
    except (OSError, RuntimeError) as e:
        error = write_error(e, paths["run"].parent)
        if error is None:
            raise
        raise error from None
