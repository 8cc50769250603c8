"""The audit record (`<cache stem>-audit.json`): its one owner, and what runs take from it.

`featurecache audit` writes it; `classify` reads it to report accuracy on the clean test rows
(those with no near-duplicate in train) and to leave flagged training rows out (`--exclude`).

    pairs      near-duplicate pairs: each image's split, row and source, their cosine similarity, the
               kind of pair (train-train, test-test, train-test, ...), whether the features are the same
    suspects   likely label errors among the training rows, most likely first: source, given and
               predicted label, score (1 - out-of-fold probability of the given label)
    outliers   the rows farthest from their nearest training rows, farthest first
    threshold, counts per split and per kind of pair, the settings and timings of the audit
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from featurecache.errors import SettingError, UserError

FORMAT = "featurecache-audit"
FORMAT_VERSION = 1
SUFFIX = "-audit.json"
EXCLUDE_KINDS = ("duplicates", "label-issues")


@dataclass
class Audit:
    cache_path: str
    cache_id: str                  # classify.runs.outputs.cache_id of the audited cache
    threshold: float
    splits: dict[str, int]         # split -> rows
    counts: dict[str, int]         # pairs per kind, leaked test rows, suspects, ...
    pairs: list[dict]
    suspects: list[dict]
    outliers: list[dict]
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    created: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Audit":
        """Read and check an audit record; anything else is one UserError naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"no audit at {path}: run `featurecache audit` first (or pass its audit.json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path} is not a readable audit ({str(e)[:80]}); run `featurecache audit` again") from None
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not names >= set(data):
            raise UserError(f"{path} is not an audit written by classify.workflows.audit; pass the -audit.json it wrote")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{path} was written by a newer featurecache (audit format {data['format_version']}); upgrade")
        try:
            audit = cls(**data)
        except TypeError as e:
            raise UserError(f"{path} lacks parts of an audit ({e}); run `featurecache audit` again") from None
        if not all(isinstance(p, dict) and {"first_split", "first_row", "second_split", "second_row"} <= set(p)
                   for p in audit.pairs) or not all(isinstance(s, dict) and "row" in s for s in audit.suspects):
            raise UserError(f"{path} holds malformed pairs or suspects; run `featurecache audit` again")
        return audit

    def leaked_test_rows(self) -> np.ndarray:
        """Test rows with a near-duplicate in train, ascending."""
        rows = {p["second_row"] if p["second_split"] == "test" else p["first_row"]
                for p in self.pairs if {p["first_split"], p["second_split"]} == {"train", "test"}}
        return np.asarray(sorted(rows), dtype=np.int64)

    def flagged_train_rows(self, kind: str) -> np.ndarray:
        """Training rows to leave out: `duplicates` (every training image with a near-duplicate in test,
        and the second image of each pair within train, so one copy stays) or `label-issues` (suspects)."""
        if kind == "label-issues":
            return np.asarray(sorted({int(s["row"]) for s in self.suspects}), dtype=np.int64)
        rows = set()
        for p in self.pairs:
            kinds = (p["first_split"], p["second_split"])
            if kinds == ("train", "train"):
                rows.add(int(p["second_row"]))
            elif "train" in kinds and "test" in kinds:
                rows.add(int(p["first_row"] if p["first_split"] == "train" else p["second_row"]))
        return np.asarray(sorted(rows), dtype=np.int64)


def parse_exclude(spec: str) -> tuple[Path, tuple[str, ...]]:
    """`PATH:duplicates`, `PATH:label-issues` or `PATH:duplicates,label-issues` -> (path, kinds)."""
    path, sep, kinds = spec.rpartition(":")
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not sep or not path or not chosen or not set(chosen) <= set(EXCLUDE_KINDS):
        raise SettingError(f"exclude={spec!r} must be AUDIT.json:KIND with KIND one of {', '.join(EXCLUDE_KINDS)} "
                        "(or both, comma-separated), e.g. reports/x-audit.json:duplicates")
    return Path(path), chosen


def check_exclude(spec: str) -> None:
    """`exclude`'s form and file, before anything is trained."""
    path, _ = parse_exclude(spec)
    Audit.load(path)


def check_for(audit: Audit, path: Path, cache_id: str, cache_path) -> None:
    if audit.cache_id != cache_id:
        raise UserError(f"{path} is the audit of another cache ({audit.cache_path}), not {cache_path}; "
                        f"run `featurecache audit --features {cache_path}` and pass its audit")


def excluded_rows(spec: str, cache_id: str, cache_path) -> np.ndarray:
    """Training rows `--exclude spec` leaves out, checked to come from this cache's audit."""
    path, kinds = parse_exclude(spec)
    audit = Audit.load(path)
    check_for(audit, path, cache_id, cache_path)
    return np.unique(np.concatenate([audit.flagged_train_rows(k) for k in kinds]))


def find_audit(folder: str | Path, cache_id: str) -> tuple[Path, Audit] | None:
    """The newest audit of this cache in `folder` (None when there is none); unreadable records are skipped."""
    found = []
    for path in Path(folder).glob("*" + SUFFIX):
        try:
            audit = Audit.load(path)
        except UserError:
            continue
        if audit.cache_id == cache_id:
            found.append((audit.created, str(path), audit))
    if not found:
        return None
    _, path, audit = max(found, key=lambda f: (f[0], f[1]))
    return Path(path), audit


def clean_metrics(audit_path: Path, audit: Audit, y_true: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy on the test rows with no near-duplicate in train, for a run's metrics."""
    leaked = audit.leaked_test_rows()
    leaked = leaked[leaked < len(y_true)]
    keep = np.ones(len(y_true), dtype=bool)
    keep[leaked] = False
    accuracy = float((pred[keep] == y_true[keep]).mean()) if keep.any() else float("nan")
    return {"clean_accuracy": accuracy, "clean_n_test": int(keep.sum()), "audit": str(audit_path),
            "audit_threshold": audit.threshold}


# --------------------------------------------------------------------------- what a classify run takes from it


def training_rows(cache, cfg):
    """`classify.training.data.split_rows` over the training rows `cfg.exclude` leaves in (all of them without it)."""
    from classify.training.data import Rows, split_rows
    from classify.runs.outputs import cache_id

    groups = cache.train.groups   # the source image of each row, where the cache records it: split by those
    if not cfg.exclude:
        return split_rows(cache.train.labels, cfg.val_fraction, cfg.seed, cfg.train_size, groups)
    drop = excluded_rows(cfg.exclude, cache_id(cache), cache.path)
    keep = np.setdiff1d(np.arange(len(cache.train.labels)), drop)   # (n_kept,) ascending
    rows = split_rows(cache.train.labels[keep], cfg.val_fraction, cfg.seed, cfg.train_size,
                      None if groups is None else groups[keep])
    return Rows(keep[rows.fit], keep[rows.val], rows.split_by)


def audit_metrics(cache, cfg, proba: np.ndarray) -> dict:
    """For a run's metrics: the rows --exclude left out, and, when the run's --out-dir holds an audit of
    this cache, the accuracy on the test rows with no near-duplicate in train."""
    from classify.runs.outputs import cache_id

    out = {}
    ident = cache_id(cache)
    if cfg.exclude:
        out.update(exclude=cfg.exclude, excluded_rows=int(len(excluded_rows(cfg.exclude, ident, cache.path))))
    found = find_audit(cfg.out_dir, ident)
    if found is not None:
        out.update(clean_metrics(found[0], found[1], cache.test.labels, proba.argmax(axis=1)))
    return out
