"""Writing a run's files under reports/: names, atomic writes, the run record.

Every file is first written aside (`.<name>.<pid>.tmp<suffix>` in the same
folder) and renamed into place only when all of a run's files are written,
so a run that fails part-way leaves the previous report, plot, model and
comparison row exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import numpy as np

from classify import plots, saved
from classify.config import ClassifyConfig
from classify.train import RunResult, gallery_items
from featurecache.cache import Cache
from featurecache.errors import UserError, reason

MODEL_SUFFIX = {"lr": ".h5", "rf": ".h5", "mlp": ".keras"}


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create the output folder if needed and make sure files can be written in it."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out-dir {out} ({reason(e, 60)}); pass a folder you can write to") from None
    return out


def check_name(option: str, name: str | None) -> None:
    if name is not None and (not name.strip() or Path(name).name != name or name in (".", "..")):
        raise UserError(f"{option} {name!r} must be a plain file name; choose the folder with --out-dir")


def run_paths(out_dir: Path, cache_path: Path, cfg: ClassifyConfig, model: str | None = None) -> dict[str, Path]:
    """Where each file of a run goes. Default names: <cache stem>-<model>-{curves,confusion,...}.

    --plot-name NAME names the curves PNG (".png" added if missing); the confusion matrix and gallery
    become NAME-confusion.png and NAME-gallery.png. --report-name NAME gives NAME.txt and NAME.json;
    the run record and model become NAME-run.json and NAME-model.<ext>.
    """
    model = model or cfg.model
    base = f"{cache_path.stem}-{model}"
    plot = Path(cfg.plot_name).stem if cfg.plot_name else None
    report = Path(cfg.report_name).stem if cfg.report_name and Path(cfg.report_name).suffix in (".txt", ".json") \
        else cfg.report_name
    return {
        "curves": out_dir / (f"{plot}.png" if plot else f"{base}-curves.png"),
        "confusion": out_dir / f"{plot or base}-confusion.png",
        "gallery": out_dir / f"{plot or base}-gallery.png",
        "report_txt": out_dir / f"{report or base + '-report'}.txt",
        "report_json": out_dir / f"{report or base + '-report'}.json",
        "run": out_dir / f"{report or base}-run.json",
        "model": out_dir / f"{report or base}-model{MODEL_SUFFIX[model]}",
    }


class Staged:
    """Files written aside and renamed into place together: `with Staged() as s: write(s.aside(path))`."""

    def __init__(self):
        self.pending: list[tuple[Path, Path]] = []

    def aside(self, final: Path) -> Path:
        tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")  # suffix kept: Keras wants .keras
        self.pending.append((tmp, final))
        return tmp

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for tmp, final in self.pending:
                    os.replace(tmp, final)
            except OSError as e:
                self._discard()
                raise UserError(f"could not move {tmp.name} into place as {final} ({reason(e, 60)}); check --out-dir") from None
        else:
            self._discard()

    def _discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")


def versions() -> dict:
    import h5py
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "h5py": h5py.__version__}


def run_record(cache: Cache, cfg: ClassifyConfig, result: RunResult, paths: dict[str, Path], gallery_note: str | None) -> dict:
    """Everything about a run: settings, chosen values, the cache it read, metrics, its files."""
    return {
        "format": saved.RUN_FORMAT,
        "format_version": saved.FORMAT_VERSION,
        "model": cfg.model,
        "hyperparameters": cfg.hyperparameters(),
        "chosen": result.trained.details,
        "config": cfg.to_dict(),
        "cache": {"path": str(cache.path), "attrs": cache.attrs},
        "class_names": cache.class_names,
        "metrics": result.metrics,
        "history": result.trained.history,
        "model_format": result.trained.format,
        "model_file": paths["model"].name,
        "files": {k: str(p) for k, p in paths.items() if k != "gallery" or gallery_note is None},
        "gallery": gallery_note or "written",
        "versions": versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_run(cache: Cache, cfg: ClassifyConfig, result: RunResult, paths: dict[str, Path]) -> tuple[dict, str | None]:
    """Write every file of a run, atomically as a set. Returns (run record, why no gallery or None)."""
    title = f"{cfg.model} on {cache.path.stem}"
    items, gallery_note = gallery_items(cache, result.proba)
    try:
        with Staged() as staged:
            if result.trained.history:
                plots.curves(result.trained.history, staged.aside(paths["curves"]), title)
            plots.confusion(result.confusion, cache.class_names, staged.aside(paths["confusion"]),
                            f"{title}: test accuracy {result.metrics['accuracy']:.3f}")
            if items:
                plots.gallery(items, staged.aside(paths["gallery"]), f"{title}: most confident mistakes")
            staged.aside(paths["report_txt"]).write_text(result.report_text)
            write_json(staged.aside(paths["report_json"]), result.report)
            model_tmp = staged.aside(paths["model"])
            result.trained.save(model_tmp)
            record = run_record(cache, cfg, result, paths, gallery_note)
            if not result.trained.history:
                record["files"].pop("curves")
            record["model_sha256"] = saved.sha256(model_tmp)
            write_json(staged.aside(paths["run"]), record)
    except OSError as e:
        raise UserError(f"could not write the run's files in {paths['run'].parent} ({reason(e, 60)}); "
                        "free some space or pass another --out-dir; earlier files are unchanged") from None
    return record, gallery_note
