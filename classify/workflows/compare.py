"""The comparison table of lr, rf and mlp side by side on one or more caches (`featurecache compare`).

Reads each cache given with --features (default: the one features/LATEST
names) once, trains every --model on it (default: lr, mlp, rf), and writes
under --out-dir (default reports/):

    comparison.csv   one row per run: cache, model, run id, accuracy (and clean-test accuracy once the
                     cache has an audit in --out-dir, classify.workflows.audit), macro F1, train and predict
                     time, settings, and the absolute path of the run record that produced it
    comparison.md    the same as a Markdown table
    comparison.png   bar chart of test accuracy, grouped by cache
    plus each run's own files, as `python -m classify` writes them

Rows are keyed on (cache identity, run identity) (see classify.runs.outputs): a run
with other settings adds a row, the same settings on the same cache replace
that run's row, and two caches that share a file name stay apart. Each run's
files and its row land together, under an exclusive lock on
<out-dir>/comparison.lock: compares started together each add their rows, and
a compare stopped part-way keeps the runs it finished, each with its row, and
nothing of the run it was in. It never re-extracts features.

    featurecache compare --features features/a.h5 --features features/b.h5
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import numpy as np

from classify.reporting import plots
from classify.runs.record import RunRecord
from featurecache.errors import UserError

COLUMNS = ["cache", "model", "run_id", "accuracy", "accuracy_low", "accuracy_high", "ece", "clean_accuracy", "macro_f1", "train_time_s", "predict_time_s", "n_fit", "n_test",
           "backbone", "pooling", "image_size", "weights", "cache_id", "cache_path", "hyperparameters", "seed",
           "val_fraction", "train_size", "run_record", "updated", "views", "tta"]
LABEL_SETTINGS = ("seed", "val_fraction", "train_size", "views", "tta")  # besides the hyperparameters
OLD_ROW_DEFAULTS = {"views": "all", "tta": "False"}  # what rows of tables from before these columns ran with
TABLE = "comparison"
LOCK = "comparison.lock"


def read_rows(path: Path) -> list[dict]:
    """Rows of an existing comparison CSV ([] when there is none)."""
    if not path.exists():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path} is not a readable comparison table ({e}); delete it or pass another `out_dir`") from None
    if rows and not {"cache", "model", "accuracy"} <= set(rows[0]):
        raise UserError(f"{path} is not a comparison table written by classify.workflows.compare; delete it or pass another "
                        "`out_dir`")
    return rows


def row_key(row: dict) -> tuple[str, str]:
    """(cache identity, run identity); rows of older tables, which have neither, keep a key of their own."""
    if row.get("run_id"):
        return row.get("cache_id") or "", row["run_id"]
    return "", f"{row['cache']}/{row['model']}/{row.get('hyperparameters', '')}"


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """New rows replace old ones of the same run (same cache identity, same run identity); the rest
    are kept. Sorted by cache, model, settings."""
    merged = {row_key(r): r for r in old}
    merged.update({row_key(r): r for r in new})
    return sorted(merged.values(), key=lambda r: tuple(str(r.get(k) or "") for k in (
        "cache", "cache_id", "model", "hyperparameters", "seed", "val_fraction", "train_size", "run_id")))


def labelled(rows: list[dict]) -> list[dict]:
    """Rows with display names: a cache's stem, followed by its identity where two caches share a stem;
    a model's name, followed by the settings that differ where it was run with several."""
    ids = {}
    for r in rows:
        ids.setdefault(r["cache"], set()).add(r.get("cache_id") or "")
    # compared as the CSV writes them: a fresh row (seed 0, val_fraction 0.1) equals its read-back
    # twin ("0", "0.1"), so merging the two kinds shows no setting that does not differ
    settings = [{**json.loads(c.get("hyperparameters") or "{}"),
                 **{k: c.get(k) or OLD_ROW_DEFAULTS.get(k, "") for k in LABEL_SETTINGS}}
                for c in csv.DictReader(io.StringIO(to_csv(rows)))]
    out = []
    for r, s in zip(rows, settings):
        same_model = [t for q, t in zip(rows, settings) if q["model"] == r["model"]]
        varies = [k for k in s if any(t.get(k) != s[k] for t in same_model)]
        cache = r["cache"] if len(ids[r["cache"]]) == 1 else f"{r['cache']} ({r.get('cache_id') or 'old'})"
        model = r["model"] + (" " + ", ".join(f"{k}={s[k]}" for k in varies) if varies else "")
        out.append({**r, "cache": cache, "model": model})
    return out


def to_csv(rows: list[dict]) -> str:
    from classify.runs.outputs import csv_text

    return csv_text(rows, COLUMNS)


def interval_text(row: dict) -> str:
    """The row's bootstrap 95% interval as "[low, high]" ("" for rows of older tables)."""
    if not row.get("accuracy_low"):
        return ""
    return f"[{float(row['accuracy_low']):.3f}, {float(row['accuracy_high']):.3f}]"


def seed_spread(rows: list[dict]) -> dict[int, str]:
    """Row index -> "mean ± std (n seeds)" of the test accuracy over the rows that differ only in
    their seed (same cache, model, settings), where there are several."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        key = tuple(str(r.get(k) or "") for k in ("cache_id", "cache", "model", "hyperparameters", "val_fraction", "train_size"))
        groups.setdefault(key, []).append(i)
    out = {}
    for members in groups.values():
        if len(members) > 1:
            acc = np.array([float(rows[i]["accuracy"]) for i in members])
            for i in members:
                out[i] = f"{acc.mean():.4f} ± {acc.std(ddof=1):.4f} ({len(members)} seeds)"
    return out


def to_markdown(rows: list[dict]) -> str:
    lines = ["| cache | model | run | test accuracy | 95% interval | over seeds | ECE | clean test accuracy | macro F1 | train time (s) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    spread = seed_spread(rows)
    for i, r in enumerate(labelled(rows)):
        ece = f"{float(r['ece']):.3f}" if r.get("ece") else ""
        lines.append(f"| {r['cache']} | {r['model']} | {r.get('run_id') or ''} | {float(r['accuracy']):.4f} "
                     f"| {interval_text(r)} | {spread.get(i, '')} | {ece} | {r.get('clean_accuracy') or ''} "
                     f"| {float(r['macro_f1']):.4f} | {float(r['train_time_s']):.2f} |")
    return "\n".join(lines) + "\n"


def row_for(cache, cfg, metrics: dict, record: RunRecord) -> dict:
    """The table row of one run: its numbers are the run record's, and it points at that record."""
    a = cache.attrs
    return {
        "cache": cache.path.stem, "model": cfg.model, "run_id": record.run_id,
        "accuracy": f"{metrics['accuracy']:.4f}", "accuracy_low": f"{metrics['accuracy_ci'][0]:.4f}",
        "accuracy_high": f"{metrics['accuracy_ci'][1]:.4f}", "ece": f"{metrics['ece']:.4f}", "macro_f1": f"{metrics['macro_f1']:.4f}",
        # accuracy on the test rows with no near-duplicate in train, once the cache has an audit here
        "clean_accuracy": f"{metrics['clean_accuracy']:.4f}" if "clean_accuracy" in metrics else "",
        "train_time_s": f"{metrics['train_time_s']:.2f}", "predict_time_s": f"{metrics['predict_time_s']:.3f}",
        "n_fit": metrics["n_fit"], "n_test": metrics["n_test"],
        "backbone": a.get("backbone"), "pooling": a.get("pooling"), "image_size": a.get("image_size"),
        "weights": a.get("weights"), "cache_id": record.cache_id, "cache_path": record.cache.path,
        "hyperparameters": json.dumps(cfg.hyperparameters(), allow_nan=False), "seed": cfg.seed, "val_fraction": cfg.val_fraction,
        "train_size": "" if cfg.train_size is None else cfg.train_size, "views": cfg.views, "tta": cfg.tta,
        "run_record": record.files["run"],
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def stage_table(staged, table: dict[str, Path], rows: list[dict]) -> None:
    """The comparison's CSV, Markdown and PNG, written aside in `staged`."""
    staged.aside(table["csv"]).write_text(to_csv(rows))
    staged.aside(table["md"]).write_text(to_markdown(rows))
    plots.comparison(labelled(rows), staged.aside(table["png"]))
