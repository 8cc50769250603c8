"""Turn the measured steps into ratios, target verdicts, a table, JSON and Markdown.

Plain functions on plain dicts: `build_report(steps, ...)` returns a dict that
is written as JSON as is; `format_table` renders it for the terminal and the
Markdown file alike.
"""

from __future__ import annotations

import json
from pathlib import Path

# issue 4's targets: (key, description, threshold, direction)
TARGETS = {
    "speed_32": (">= 1.7x", 1.7),
    "speed_64": (">= 3x", 3.0),
    "peak_64": (">= 85%", 0.85),
    "end_to_end": (">= 10x", 10.0),
    "lr_accuracy": ("<= 0.5 points", 0.5),
    "memory": ("<= 1.3x", 1.3),
    "ray_64": (">= 0.8x", 0.8),  # issue 19: Ray, 2 workers, start-up excluded, vs the single process
}


def read_classify_runs(out_dir: Path) -> dict:
    """{model: {test_accuracy, train_seconds, predict_seconds}} from the comparison.csv `classify.compare`
    writes in out_dir."""
    import csv

    path = Path(out_dir) / "comparison.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["model"]: {"test_accuracy": float(r["accuracy"]), "train_seconds": float(r["train_time_s"]),
                             "predict_seconds": float(r.get("predict_time_s") or 0.0)}
                for r in csv.DictReader(f)}


def _ratio(a, b):
    return a / b if a and b else None


def _target(key: str, value, note: str = "") -> dict:
    text, threshold = TARGETS[key]
    if value is None:
        return {"target": key, "wanted": text, "value": None, "met": False, "note": note or "not measured"}
    met = value <= threshold if text.startswith("<=") else value >= threshold
    return {"target": key, "wanted": text, "value": value, "met": met, "note": note}


def build_report(steps: dict, sizes: list[int], base: int, memory_sizes: list[int], epochs: int, quick: bool) -> dict:
    peak = steps["peak"]
    flops = {int(k): v for k, v in peak["vgg16_flops"].items()}
    peaks = {dt: p["gflops"] for dt, p in peak["peak"].items()}
    rows, targets, notes = [], [], []

    def extract_ips(s):
        e = steps[s]
        return e["images"] / e["seconds"]

    def seed_ips(s):
        p = steps[f"seed_predict_{s}"]
        return p["images"] / p["predict_s"]

    def peak_for(precision):
        return peaks["bfloat16"] if precision == "bfloat16" else peaks["float32"]

    for s in sizes:
        ours, seed = extract_ips(f"extract_{s}"), seed_ips(s)
        e = steps[f"extract_{s}"]
        rows.append({"section": "throughput", "measure": f"images/s at {s} px",
                     "seed": seed, "seed_how": "float32 model.predict",
                     "ours": ours, "ours_how": f"extract {e['precision']}, batch {e['batch_size']}",
                     "ratio": _ratio(ours, seed)})
    f32 = steps.get(f"extract_{base}_float32")
    if f32:
        ours = extract_ips(f"extract_{base}_float32")
        rows.append({"section": "throughput", "measure": f"images/s at {base} px, both float32",
                     "seed": seed_ips(base), "seed_how": "float32 model.predict",
                     "ours": ours, "ours_how": f"extract float32, batch {f32['batch_size']}",
                     "ratio": _ratio(ours, seed_ips(base))})
    for s in sizes:
        e = steps[f"extract_{s}"]
        g_seed, g_ours = seed_ips(s) * flops[s] / 1e9, extract_ips(f"extract_{s}") * flops[s] / 1e9
        rows.append({"section": "compute", "measure": f"GFLOP/s at {s} px ({flops[s] / 1e9:.3f} GFLOP/image)",
                     "seed": g_seed, "seed_how": f"{g_seed / peaks['float32']:.0%} of float32 peak",
                     "ours": g_ours, "ours_how": f"{g_ours / peak_for(e['precision']):.0%} of {e['precision']} peak",
                     "ratio": _ratio(g_ours, g_seed)})
    rows.append({"section": "compute", "measure": "measured matmul peak GFLOP/s",
                 "seed": peaks["float32"], "seed_how": f"float32, n={peak['peak']['float32']['n']}",
                 "ours": peaks["bfloat16"], "ours_how": f"bfloat16, n={peak['peak']['bfloat16']['n']}",
                 "ratio": _ratio(peaks["bfloat16"], peaks["float32"])})
    for s in sizes:
        p, e = steps[f"seed_predict_{s}"], steps[f"extract_{s}"]
        rows.append({"section": "memory", "measure": f"peak RSS MB, all {p['images']:,} images at {s} px",
                     "seed": p["peak_rss_mb"], "seed_how": f"float32 array {p['array_mb']:.0f} MB",
                     "ours": e["peak_rss_mb"], "ours_how": "extract, batch by batch",
                     "ratio": _ratio(p["peak_rss_mb"], e["peak_rss_mb"])})
    m0, m1 = (steps.get(f"memory_extract_{s}") for s in memory_sizes[:2])
    if m0 and m1:
        rows.append({"section": "memory", "measure": f"extract peak RSS MB, {m0['images']:,} images, "
                                                     f"{memory_sizes[1]} px vs {memory_sizes[0]} px",
                     "seed": m0["peak_rss_mb"], "seed_how": f"{memory_sizes[0]} px (batch {m0['batch_size']})",
                     "ours": m1["peak_rss_mb"], "ours_how": f"{memory_sizes[1]} px (batch {m1['batch_size']})",
                     "ratio": _ratio(m1["peak_rss_mb"], m0["peak_rss_mb"])})
        targets.append(_target("memory", _ratio(m1["peak_rss_mb"], m0["peak_rss_mb"]),
                               f"{m1['peak_rss_mb']:.0f} MB at {memory_sizes[1]} px vs {m0['peak_rss_mb']:.0f} MB "
                               f"at {memory_sizes[0]} px"))

    train = steps[f"seed_train_{base}"]
    clf = steps.get("classify_auto")
    ext = steps[f"extract_{base}"]
    if clf:
        # whole commands on both sides, as a user runs them: process start, TensorFlow import, data
        # loading and everything written (our plots, reports and saved models) included
        ours_wall = ext["wall_s"] + clf["wall_s"]
        rows.append({"section": "end to end", "measure": f"wall s at {base} px, whole commands, to trained classifiers",
                     "seed": train["wall_s"], "seed_how": f"seed script: load, build, {epochs} epochs, evaluate",
                     "ours": ours_wall, "ours_how": f"extract {ext['wall_s']:.1f} s + compare LR/RF/MLP {clf['wall_s']:.1f} s",
                     "ratio": _ratio(train["wall_s"], ours_wall)})
        # the compute alone: the seed's fit + evaluate against extraction (model build and cache
        # write included) plus each classifier's training and test predictions
        seed_compute = train["fit_s"] + train["evaluate_s"]
        models = clf["models"].values()
        ours_compute = ext["seconds"] + sum(m.get("train_seconds", 0) + m.get("predict_seconds", 0) for m in models)
        rows.append({"section": "end to end", "measure": f"compute s at {base} px, in process",
                     "seed": seed_compute, "seed_how": f"{epochs} epochs fit + evaluate",
                     "ours": ours_compute, "ours_how": f"extract {ext['seconds']:.1f} s + training and scoring "
                                                      f"{ours_compute - ext['seconds']:.1f} s",
                     "ratio": _ratio(seed_compute, ours_compute)})
        for model, m in sorted(clf["models"].items()):
            rows.append({"section": "end to end", "measure": f"{model} train s / test accuracy",
                         "seed": None, "seed_how": "",
                         "ours": m.get("train_seconds"), "ours_how": _pct(m.get("test_accuracy")), "ratio": None})
    rows.append({"section": "end to end", "measure": "seed head test accuracy (random backbone)",
                 "seed": train["test_accuracy"] * 100, "seed_how": f"after {epochs} epochs", "ours": None,
                 "ours_how": "", "ratio": None})
    targets.insert(0, _target("end_to_end", _ratio(train["wall_s"], ours_wall) if clf else None,
                              "whole commands on both sides, start-up and outputs included"))

    lr_bf = (clf or {}).get("models", {}).get("lr", {}).get("test_accuracy")
    lr_f32 = (steps.get("classify_lr_float32") or {}).get("models", {}).get("lr", {}).get("test_accuracy")
    if lr_bf is not None and lr_f32 is not None:
        # accuracies are whole test images out of n: 0.387 - 0.382 must count as 0.5 points, not 0.5000000000000004
        diff = round(abs(lr_bf - lr_f32) * 100, 9)
        rows.append({"section": "accuracy", "measure": f"LR test accuracy, {base} px cache",
                     "seed": lr_f32 * 100, "seed_how": "float32 cache", "ours": lr_bf * 100,
                     "ours_how": f"{ext['precision']} cache", "ratio": None})
        targets.insert(0, _target("lr_accuracy", diff, f"{lr_bf:.2%} ({ext['precision']}) vs {lr_f32:.2%} (float32)"))
    else:
        targets.insert(0, _target("lr_accuracy", None, "classify did not run"))

    ray_step = next((k for k in steps if k.startswith("extract_ray_")), None)
    if ray_step:
        r, size = steps[ray_step], int(ray_step.rsplit("_", 1)[1])
        single = steps[f"extract_{size}"]
        single_ips = single["images"] / single["loop_s"]   # the loop only: model built, cache not yet written
        ray_ips = r["steady_images"] / r["steady_s"] if r["steady_s"] else None
        rows.append({"section": "distributed", "measure": f"images/s at {size} px, start-up excluded",
                     "seed": single_ips, "seed_how": "extract, one process",
                     "ours": ray_ips, "ours_how": f"Ray Data, {r['workers']} workers; start-up "
                                                  f"{r['ray_init_s']:.1f} s ray.init + {r['first_batch_s']:.1f} s "
                                                  "actors to first batch",
                     "ratio": _ratio(ray_ips, single_ips)})
        if size == 64:
            targets.append(_target("ray_64", _ratio(ray_ips, single_ips),
                                   f"Ray start-up {r['ray_init_s'] + r['first_batch_s']:.1f} s not counted"))

    s64 = 64 if 64 in sizes else None
    tgt = [_target("speed_32", _ratio(extract_ips("extract_32"), seed_ips(32)) if 32 in sizes else None)]
    if s64:
        e = steps["extract_64"]
        need = TARGETS["speed_64"][1] * seed_ips(64) * flops[64] / 1e9  # GFLOP/s the 3x target needs
        tgt.append(_target("speed_64", _ratio(extract_ips("extract_64"), seed_ips(64)),
                           f"3x needs {need:.0f} GFLOP/s, {need / peak_for(e['precision']):.0%} of the measured "
                           f"{e['precision']} matmul peak"))
        frac = extract_ips("extract_64") * flops[64] / 1e9 / peak_for(e["precision"])
        tgt.append(_target("peak_64", frac, f"{e['precision']} at 64 px vs the {e['precision']} matmul peak"))
        if frac > 1:
            notes.append("oneDNN's VGG16 convolutions run faster than TensorFlow's own large matmul, so the "
                         "measured matmul peak is a lower bound on the hardware's; above 100% means at that bound")
    else:
        tgt += [_target("speed_64", None), _target("peak_64", None)]
    targets = tgt + targets
    if quick:
        notes.append("--quick: a smoke run on a few images; the figures are not meaningful")
    loads = [v.get("load_before") for v in steps.values() if isinstance(v, dict) and "load_before" in v]
    if loads and max(loads) > 0.5 * (peak.get("cores") or 1):
        notes.append(f"other work was running: load average before steps ranged {min(loads):.1f}-{max(loads):.1f} "
                     f"on {peak.get('cores')} cores; ratios within one run are what count")
    return {
        "machine": {k: peak.get(k) for k in ("cpu", "cores", "cpu_bf16", "cpu_amx", "gpu_capability", "tensorflow")},
        "peak_gflops": peaks, "vgg16_flops_per_image": flops,
        "rows": rows, "targets": targets, "notes": notes, "steps": steps,
    }


def _pct(x):
    return f"{x:.1%}" if isinstance(x, (int, float)) else ""


def _num(x):
    if x is None:
        return ""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _value(key: str, v) -> str:
    if v is None:
        return "n/a"
    if key == "peak_64":
        return f"{v:.0%}"
    if key == "lr_accuracy":
        return f"{v:.2f} points"
    return f"{v:.2f}x"


def format_table(report: dict) -> str:
    """A Markdown table (readable in a terminal too), then one line per target: met/missed."""
    m = report["machine"]
    bf16 = ("yes, AMX" if m.get("cpu_amx") else "yes, AVX-512") if m["cpu_bf16"] else "no"
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, bf16 {bf16}, TensorFlow {m['tensorflow']}", "",
             "ratio: how many times this project beats the seed style (higher is better), except the "
             "128-vs-32 px row, which is how much extract's memory grows (lower is better).", "",
             "| measure | seed style | | this project | | ratio |", "|---|---:|---|---:|---|---:|"]
    for r in report["rows"]:
        ratio = f"**{r['ratio']:.2f}x**" if r["ratio"] else ""
        lines.append(f"| {r['measure']} | {_num(r['seed'])} | {r['seed_how']} | {_num(r['ours'])} | {r['ours_how']} | {ratio} |")
    lines += ["", "targets:"]
    for t in report["targets"]:
        verdict = "met" if t["met"] else "missed"
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"- {t['target']}: {_value(t['target'], t['value'])}, wanted {t['wanted']}: **{verdict}**{note}")
    for n in report["notes"]:
        lines.append(f"- note: {n}")
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str, allow_nan=False))
    header = f"# make bench\n\n`{report.get('command', 'python -m bench')}` ({report.get('created', '')})\n\n"
    paths["md"].write_text(header + format_table(report) + "\n")
    return paths
