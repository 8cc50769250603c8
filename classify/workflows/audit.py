"""The audit of a cache: near-duplicates and train/test leaks, likely label errors, outliers
(the command: `featurecache audit`)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np

from classify.workflows.audit_record import SUFFIX, Audit
from classify.workflows.neighbours import EXACT, K_NEIGHBOURS, outlier_scores, search
from featurecache.cache import Cache, read_cache
from featurecache.errors import UserError

THRESHOLD = 0.9      # default --threshold: chosen from known duplicates against random pairs (docs/audit.md)
OUTLIERS = 50        # outliers kept in the record, farthest first
GALLERY_PAIRS = 12
GALLERY_SUSPECTS = 24


def pair_rows(cache: Cache, found) -> list[dict]:
    """Pairs as records naming both images by split, row and source, most similar first."""
    layout = found.layout
    order = np.argsort(-found.similarity, kind="stable")
    first_split, first_row = layout.split_of(found.first[order])
    second_split, second_row = layout.split_of(found.second[order])
    out = []
    for a, i, b, j, s in zip(first_split, first_row, second_split, second_row, found.similarity[order]):
        out.append({"kind": f"{a}-{b}", "first_split": a, "first_row": int(i),
                    "first_source": str(split_data(cache, a).sources[i]), "second_split": b, "second_row": int(j),
                    "second_source": str(split_data(cache, b).sources[j]), "similarity": round(float(s), 5),
                    "exact": bool(s >= EXACT)})
    return out


def split_data(cache: Cache, split: str):
    return {"train": cache.train, "test": cache.test, "val": cache.val}[split]


def outlier_rows(cache: Cache, found, limit: int = OUTLIERS) -> list[dict]:
    scores = outlier_scores(found.knn)
    order = np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")[:limit]
    splits, rows = found.layout.split_of(order)
    names = cache.class_names
    return [{"split": s, "row": int(r), "source": str(split_data(cache, s).sources[r]),
             "label": names[split_data(cache, s).labels[r]], "score": round(float(scores[g]), 5)}
            for s, r, g in zip(splits, rows, order)]


def suspect_rows(cache: Cache, seed: int) -> tuple[list[dict], dict]:
    """Likely label errors among the training rows, most likely first, and the step's facts."""
    from classify.workflows.label_issues import find_issues

    full = read_cache(cache.path)
    y = full.train.labels
    issues = find_issues(full.train.features, y, len(cache.class_names), seed=seed)
    pred = issues.proba.argmax(axis=1)
    names = cache.class_names
    rows = [{"rank": k + 1, "row": int(i), "source": str(full.train.sources[i]), "given": names[y[i]],
             "predicted": names[pred[i]], "score": round(1.0 - float(issues.proba[i, y[i]]), 5)}
            for k, i in enumerate(issues.ranked)]
    facts = {"folds": issues.folds, "C": issues.C, "seed": seed, "model": "lr (standardised, lbfgs)",
             "out_of_fold_accuracy": round(float((pred == y).mean()), 5)}
    return rows, facts


def counts_of(cache: Cache, pairs: list[dict], suspects: list[dict] | None) -> dict:
    counts: dict[str, int] = {}
    for p in pairs:
        counts[f"pairs_{p['kind']}"] = counts.get(f"pairs_{p['kind']}", 0) + 1
    counts["pairs"] = len(pairs)
    counts["exact_pairs"] = sum(p["exact"] for p in pairs)
    leaked = {p["second_row"] for p in pairs if p["kind"] == "train-test"}
    counts["test_rows_with_train_duplicate"] = len(leaked)
    counts["suspects"] = len(suspects) if suspects is not None else 0
    return counts


def run_audit(path: Path, threshold: float, k: int = K_NEIGHBOURS, seed: int = 0, labels: bool = True) -> Audit:
    """Audit one cache: pairs, outliers and (with `labels`) label suspects, as an `Audit` (nothing written)."""
    from classify.runs.outputs import cache_id

    cache = read_cache(path, features=False)   # labels and sources; features are read a block at a time
    # wall and CPU seconds: on a machine shared with other work the CPU time says more
    start, cpu = time.perf_counter(), time.process_time()
    found = search(path, threshold, k)
    timings = {"duplicates_and_outliers_s": round(time.perf_counter() - start, 3),
               "duplicates_and_outliers_cpu_s": round(time.process_time() - cpu, 3)}
    pairs = pair_rows(cache, found)
    outliers = outlier_rows(cache, found)
    suspects, facts = None, {}
    if labels:
        start, cpu = time.perf_counter(), time.process_time()
        suspects, facts = suspect_rows(cache, seed)
        timings.update(label_issues_s=round(time.perf_counter() - start, 3),
                       label_issues_cpu_s=round(time.process_time() - cpu, 3))
    splits = {name: int(n) for name, (_, n) in found.layout.spans.items()}
    settings = {"threshold": threshold, "k_neighbours": k, "seed": seed, "labels": labels, "label_step": facts}
    return Audit(str(Path(path).resolve()), cache_id(cache), float(threshold), splits,
                 counts_of(cache, pairs, suspects), pairs, suspects or [], outliers, settings, timings,
                 dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def audit_paths(out_dir: Path, cache_file: Path) -> dict[str, Path]:
    base = out_dir / (Path(cache_file).stem + SUFFIX[: -len(".json")])
    return {"audit": Path(f"{base}.json"), "pairs": Path(f"{base}-pairs.csv"), "suspects": Path(f"{base}-suspects.csv"),
            "duplicates_png": Path(f"{base}-duplicates.png"), "labels_png": Path(f"{base}-labels.png")}


def gallery_notes(cache: Cache, audit: Audit, paths: dict, staged) -> dict[str, str]:
    """Draw both galleries aside in `staged`; returns why a gallery was not drawn, per figure."""
    from classify.reporting import audit_plots
    from featurecache.images import source_image

    kind, location = cache.attrs.get("data_kind"), cache.attrs.get("data_location")
    if not kind or not location:
        why = "the cache does not record where its images came from"
        return {"duplicates_png": why, "labels_png": why}
    notes = {}
    try:
        picture = lambda source: source_image(kind, location, source, size=96)  # noqa: E731
        leaks = [p for p in audit.pairs if p["kind"] == "train-test"]
        shown = (leaks + [p for p in audit.pairs if p["kind"] != "train-test"])[:GALLERY_PAIRS]
        if shown:
            items = [{"first": picture(p["first_source"]), "second": picture(p["second_source"]), **p} for p in shown]
            audit_plots.pairs_gallery(items, staged.aside(paths["duplicates_png"]),
                                      f"near-duplicates (cosine >= {audit.threshold:g}), leaks first")
        else:
            notes["duplicates_png"] = "no pair at the threshold"
        if audit.suspects:
            items = [{"image": picture(s["source"]), **s} for s in audit.suspects[:GALLERY_SUSPECTS]]
            audit_plots.suspects_gallery(items, staged.aside(paths["labels_png"]),
                                         "suspected label errors, most likely first (score: 1 - p(given))")
        else:
            notes["labels_png"] = "no suspected label error" if audit.settings.get("labels") else "label step skipped"
    except (UserError, OSError, ValueError) as e:
        why = f"the images behind the cache are not readable at {location} ({str(e)[:80]})"
        return {"duplicates_png": why, "labels_png": why}
    return notes


def write_audit(cache: Cache, audit: Audit, out_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the record, both CSVs and the galleries together (atomically as a set)."""
    from classify.runs.outputs import csv_text
    from featurecache.files import Staged

    paths = audit_paths(out_dir, cache.path)
    pair_columns = ["kind", "first_source", "second_source", "similarity", "exact", "first_split", "first_row",
                    "second_split", "second_row"]
    suspect_columns = ["rank", "source", "given", "predicted", "score", "row"]
    with Staged() as staged:
        notes = gallery_notes(cache, audit, paths, staged)
        audit.settings["galleries"] = notes or "written"
        audit.save(staged.aside(paths["audit"]))
        staged.aside(paths["pairs"]).write_text(csv_text(audit.pairs, pair_columns) if audit.pairs
                                                else ",".join(pair_columns) + "\n")
        staged.aside(paths["suspects"]).write_text(csv_text(audit.suspects, suspect_columns) if audit.suspects
                                                   else ",".join(suspect_columns) + "\n")
    return {k: p for k, p in paths.items() if k not in notes}, notes


def summary(audit: Audit) -> list[str]:
    c = audit.counts
    kinds = ", ".join(f"{k[len('pairs_'):]} {v:,}" for k, v in sorted(c.items()) if k.startswith("pairs_"))
    lines = [f"near-duplicates at cosine >= {audit.threshold:g}: {c['pairs']:,} pair(s) ({kinds or 'none'}; "
             f"{c['exact_pairs']:,} exact); {c['test_rows_with_train_duplicate']:,} of {audit.splits.get('test', 0):,} "
             "test rows have a near-duplicate in train"]
    if audit.settings.get("labels"):
        lines.append(f"label errors: {c['suspects']:,} suspect(s) among {audit.splits['train']:,} training rows "
                     f"(out-of-fold LR accuracy {audit.settings['label_step']['out_of_fold_accuracy']:.4f})")
    if audit.outliers:
        o = audit.outliers[0]
        lines.append(f"outliers: farthest {o['split']} image {o['source']} (mean cosine distance "
                     f"{o['score']:.3f} to its {audit.settings['k_neighbours']} nearest training images)")
    lines.append("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in audit.timings.items()))
    return lines
