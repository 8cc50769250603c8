"""Turn the measured steps into ratios, target verdicts, a table, JSON and Markdown.

Plain functions on plain dicts: `build_report(steps, ...)` returns a dict that
is written as JSON as is; `format_table` renders it for the terminal and the
Markdown file alike.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.decode import DecodeRow

# issue 4's targets: (key, description, threshold, direction)
TARGETS = {
    "speed_32": (">= 1.7x", 1.7),
    "speed_64": (">= 3x", 3.0),
    "peak_64": (">= 85%", 0.85),
    "end_to_end": (">= 10x", 10.0),
    "lr_accuracy": ("<= 0.5 points", 0.5),
    "memory": ("<= 1.3x", 1.3),
    "ray_64": (">= 0.8x", 0.8),  # issue 19: Ray, 2 workers, start-up excluded, vs the single process
    "end_to_end_full": (">= 12x", 12.0),  # issue 20: features + MLP vs the seed's 10 epochs, 60,000 images
    "peak_32": (">= 85%", 0.85),           # issue 20: extraction's share of the measured matmul peak
    "peak_64_full": (">= 90%", 0.90),
    "peak_224": (">= 90%", 0.90),
    "decode_2": (">= 1.7x", 1.7),          # issue 20: the 224 px photo loader, every core's workers vs 1
    "compare_subset": ("<= 12 s", 12.0),  # issue 30: the whole `featurecache compare` process on the subset cache
}


def read_classify_runs(out_dir: Path) -> dict:
    """{model: {test_accuracy, train_seconds, predict_seconds, low, high, ece}} from the comparison.csv `classify.workflows.compare`
    writes in out_dir."""
    import csv

    path = Path(out_dir) / "comparison.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["model"]: {"test_accuracy": float(r["accuracy"]), "train_seconds": float(r["train_time_s"]),
                             "predict_seconds": float(r.get("predict_time_s") or 0.0),
                             # bootstrap 95% interval and calibration error (tables older than them: None)
                             **{k: float(r[c]) if r.get(c) else None
                                for k, c in (("low", "accuracy_low"), ("high", "accuracy_high"), ("ece", "ece"))}}
                for r in csv.DictReader(f)}


def _ratio(a, b):
    return a / b if a and b else None


@dataclass
class Row:
    """One line of the table: this project against the seed style on one measure."""

    section: str
    measure: str
    seed: float | None
    seed_how: str
    ours: float | None
    ours_how: str
    ratio: float | None = None


@dataclass
class Target:
    """One of the issue's targets, with the value measured and whether it was met."""

    target: str
    wanted: str
    value: float | None
    met: bool
    note: str = ""


def _target(key: str, value, note: str = "") -> Target:
    text, threshold = TARGETS[key]
    if value is None:
        return Target(key, text, None, False, note or "not measured")
    met = value <= threshold if text.startswith("<=") else value >= threshold
    return Target(key, text, value, met, note)


@dataclass
class Steps:
    """The measured steps, with the derived numbers every section needs."""

    steps: dict
    base: int

    @property
    def peak(self) -> dict:
        return self.steps["peak"]

    @property
    def flops(self) -> dict[int, float]:
        return {int(k): v for k, v in self.peak["vgg16_flops"].items()}

    @property
    def peaks(self) -> dict[str, float]:
        return {dt: p["gflops"] for dt, p in self.peak["peak"].items()}

    def extract_ips(self, key: str) -> float:
        e = self.steps[key]
        return e["images"] / e["seconds"]

    def seed_ips(self, size: int) -> float:
        p = self.steps[f"seed_predict_{size}"]
        return p["images"] / p["predict_s"]

    def peak_for(self, precision: str) -> float:
        return self.peaks["bfloat16"] if precision == "bfloat16" else self.peaks["float32"]


def throughput_rows(m: Steps, sizes: list[int]) -> list[Row]:
    rows = []
    for s in sizes:
        ours, seed, e = m.extract_ips(f"extract_{s}"), m.seed_ips(s), m.steps[f"extract_{s}"]
        rows.append(Row("throughput", f"images/s at {s} px", seed, "float32 model.predict",
                        ours, f"extract {e['precision']}, batch {e['batch_size']}", _ratio(ours, seed)))
    f32 = m.steps.get(f"extract_{m.base}_float32")
    if f32:
        ours = m.extract_ips(f"extract_{m.base}_float32")
        rows.append(Row("throughput", f"images/s at {m.base} px, both float32", m.seed_ips(m.base),
                        "float32 model.predict", ours, f"extract float32, batch {f32['batch_size']}",
                        _ratio(ours, m.seed_ips(m.base))))
    return rows


def compute_rows(m: Steps, sizes: list[int]) -> list[Row]:
    rows, flops, peaks = [], m.flops, m.peaks
    for s in sizes:
        e = m.steps[f"extract_{s}"]
        g_seed, g_ours = m.seed_ips(s) * flops[s] / 1e9, m.extract_ips(f"extract_{s}") * flops[s] / 1e9
        rows.append(Row("compute", f"GFLOP/s at {s} px ({flops[s] / 1e9:.3f} GFLOP/image)",
                        g_seed, f"{g_seed / peaks['float32']:.0%} of float32 peak",
                        g_ours, f"{g_ours / m.peak_for(e['precision']):.0%} of {e['precision']} peak",
                        _ratio(g_ours, g_seed)))
    rows.append(Row("compute", "measured matmul peak GFLOP/s",
                    peaks["float32"], f"float32, n={m.peak['peak']['float32']['n']}",
                    peaks["bfloat16"], f"bfloat16, n={m.peak['peak']['bfloat16']['n']}",
                    _ratio(peaks["bfloat16"], peaks["float32"])))
    return rows


def memory_rows(m: Steps, sizes: list[int], memory_sizes: list[int]) -> tuple[list[Row], list[Target]]:
    rows, targets = [], []
    for s in sizes:
        p, e = m.steps[f"seed_predict_{s}"], m.steps[f"extract_{s}"]
        rows.append(Row("memory", f"peak RSS MB, all {p['images']:,} images at {s} px",
                        p["peak_rss_mb"], f"float32 array {p['array_mb']:.0f} MB",
                        e["peak_rss_mb"], "extract, batch by batch", _ratio(p["peak_rss_mb"], e["peak_rss_mb"])))
    m0, m1 = (m.steps.get(f"memory_extract_{s}") for s in memory_sizes[:2])
    if m0 and m1:
        growth = _ratio(m1["peak_rss_mb"], m0["peak_rss_mb"])
        rows.append(Row("memory", f"extract peak RSS MB, {m0['images']:,} images, "
                                  f"{memory_sizes[1]} px vs {memory_sizes[0]} px",
                        m0["peak_rss_mb"], f"{memory_sizes[0]} px (batch {m0['batch_size']})",
                        m1["peak_rss_mb"], f"{memory_sizes[1]} px (batch {m1['batch_size']})", growth))
        targets.append(_target("memory", growth, f"{m1['peak_rss_mb']:.0f} MB at {memory_sizes[1]} px vs "
                                                 f"{m0['peak_rss_mb']:.0f} MB at {memory_sizes[0]} px"))
    return rows, targets


def end_to_end_rows(m: Steps, epochs: int, full: bool = False, quick: bool = False) -> tuple[list[Row], list[Target]]:
    """Whole commands on both sides, as a user runs them (process start, TensorFlow import, data loading
    and everything written included), then the compute alone. `full`: the seed ran only some of its
    epochs, so only each classifier's row and the seed's accuracy (`scale_rows` has the ratio)."""
    train, clf, ext, base = m.steps[f"seed_train_{m.base}"], m.steps.get("classify_auto"), m.steps[f"extract_{m.base}"], m.base
    rows, ratio = [], None
    if clf and not full:
        ours_wall = ext["wall_s"] + clf["wall_s"]
        ratio = _ratio(train["wall_s"], ours_wall)
        rows.append(Row("end to end", f"wall s at {base} px, whole commands, to trained classifiers",
                        train["wall_s"], f"seed script: load, build, {epochs} epochs, evaluate", ours_wall,
                        f"extract {ext['wall_s']:.1f} s + compare LR/RF/MLP {clf['wall_s']:.1f} s", ratio))
        seed_compute = train["fit_s"] + train["evaluate_s"]
        models = clf["models"].values()
        ours_compute = ext["seconds"] + sum(x.get("train_seconds", 0) + x.get("predict_seconds", 0) for x in models)
        rows.append(Row("end to end", f"compute s at {base} px, in process", seed_compute,
                        f"{epochs} epochs fit + evaluate", ours_compute,
                        f"extract {ext['seconds']:.1f} s + training and scoring {ours_compute - ext['seconds']:.1f} s",
                        _ratio(seed_compute, ours_compute)))
    if clf:
        for model, x in sorted(clf["models"].items()):
            rows.append(Row("end to end", f"{model} train s / test accuracy", None, "",
                            x.get("train_seconds"), _pct(x.get("test_accuracy"))))
    rows.append(Row("end to end", "seed head test accuracy (random backbone)", train["test_accuracy"] * 100,
                    f"after {epochs} epochs", None, ""))
    if full:   # the target compares with the seed's whole run; here it ran only some of its epochs
        return rows, []
    targets = [_target("end_to_end", ratio, "whole commands on both sides, start-up and outputs included")]
    if not quick:   # a quick run's cache is not the subset's
        walls = [clf["wall_s"], *m.steps.get("compare_again", {}).get("wall_s", [])] if clf else []
        targets.append(_target("compare_subset", statistics.median(walls) if walls else None,
                               f"median of {len(walls)} runs of `featurecache compare` (LR, RF, MLP, every run's files) "
                               f"on the {ext['images']:,}-image cache at {base} px, each one process: "
                               + ", ".join(f"{w:.1f} s" for w in walls) if walls else ""))
    return rows, targets


def scale_rows(steps: dict, base: int, epochs: int, to_epochs: int = 10) -> tuple[list[Row], list[Target]]:
    """`--scale full`: the seed style's `to_epochs` extrapolated from the `epochs` it ran (its whole
    run plus the epochs not run at the pace of those that were), features + MLP against it, and
    each step's peak memory."""
    rows, ratio = [], None
    train = steps.get(f"seed_train_{base}")
    seed_wall = None
    if train:
        seed_wall = train["wall_s"] + train["fit_s"] / epochs * (to_epochs - epochs)
        rows.append(Row("full scale", f"seed style, {to_epochs} epochs (extrapolated from {epochs}), wall s", seed_wall,
                        f"{epochs} epochs run ({train['wall_s']:.1f} s), {to_epochs - epochs} more at "
                        f"{train['fit_s'] / epochs:.1f} s each", None, ""))
    ext, mlp = steps.get(f"extract_{base}"), steps.get("classify_mlp")
    if ext and mlp:
        ours = ext["wall_s"] + mlp["wall_s"]
        ratio = _ratio(seed_wall, ours)
        rows.append(Row("full scale", f"end to end at {base} px: features + MLP, wall s", seed_wall,
                        f"{to_epochs} epochs, extrapolated", ours,
                        f"extract {ext['wall_s']:.1f} s + classify --model mlp {mlp['wall_s']:.1f} s", ratio))
    compare = steps.get("classify_auto")
    if compare:
        rows.append(Row("full scale", "classify.workflows.compare (LR, RF, MLP on one load), wall s", None, "", compare["wall_s"],
                        ", ".join(f"{k} {v['train_seconds']:.1f} s" for k, v in sorted(compare.get("models", {}).items()))))
    for tag, step in steps.items():
        if isinstance(step, dict) and step.get("peak_rss_mb") is not None:
            seed_side = tag.startswith("seed_")
            rows.append(Row("full scale", f"peak memory, {tag} (MiB)", step["peak_rss_mb"] if seed_side else None,
                            "", None if seed_side else step["peak_rss_mb"], f"{step['wall_s']:.1f} s wall"))
    note = f"seed's {to_epochs} epochs extrapolated from {epochs}"
    if ext and seed_wall:
        note += (f"; with a classifier that took no time at all the ratio would be {seed_wall / ext['wall_s']:.1f}x, "
                 "the bound that extraction's speed on this machine sets")
    return rows, [_target("end_to_end_full", ratio, note)]


def accuracy_rows(m: Steps) -> tuple[list[Row], list[Target]]:
    clf, ext = m.steps.get("classify_auto"), m.steps[f"extract_{m.base}"]
    lr_bf = (clf or {}).get("models", {}).get("lr", {}).get("test_accuracy")
    lr_f32 = (m.steps.get("classify_lr_float32") or {}).get("models", {}).get("lr", {}).get("test_accuracy")
    if lr_bf is None or lr_f32 is None:
        return [], [_target("lr_accuracy", None, "classify did not run")]
    # accuracies are whole test images out of n: 0.387 - 0.382 must count as 0.5 points, not 0.5000000000000004
    diff = round(abs(lr_bf - lr_f32) * 100, 9)
    row = Row("accuracy", f"LR test accuracy, {m.base} px cache", lr_f32 * 100, "float32 cache", lr_bf * 100,
              f"{ext['precision']} cache")
    return [row], [_target("lr_accuracy", diff, f"{lr_bf:.2%} ({ext['precision']}) vs {lr_f32:.2%} (float32)")]


def distributed_rows(m: Steps) -> tuple[list[Row], list[Target]]:
    ray_step = next((k for k in m.steps if k.startswith("extract_ray_")), None)
    if not ray_step:
        return [], []
    r, size = m.steps[ray_step], int(ray_step.rsplit("_", 1)[1])
    single = m.steps[f"extract_{size}"]
    single_ips = single["images"] / single["loop_s"]   # the loop only: model built, cache not yet written
    ray_ips = r["steady_images"] / r["steady_s"] if r["steady_s"] else None
    row = Row("distributed", f"images/s at {size} px, start-up excluded", single_ips, "extract, one process",
              ray_ips, f"Ray Data, {r['workers']} workers; start-up {r['ray_init_s']:.1f} s ray.init + "
                       f"{r['first_batch_s']:.1f} s actors to first batch", _ratio(ray_ips, single_ips))
    targets = [_target("ray_64", _ratio(ray_ips, single_ips),
                       f"Ray start-up {r['ray_init_s'] + r['first_batch_s']:.1f} s not counted")] if size == 64 else []
    return [row], targets


def speed_targets(m: Steps, sizes: list[int]) -> tuple[list[Target], list[str]]:
    targets = [_target("speed_32", _ratio(m.extract_ips("extract_32"), m.seed_ips(32)) if 32 in sizes else None)]
    if 64 not in sizes:
        return targets + [_target("speed_64", None), _target("peak_64", None)], []
    e, flops = m.steps["extract_64"], m.flops
    need = TARGETS["speed_64"][1] * m.seed_ips(64) * flops[64] / 1e9  # GFLOP/s the 3x target needs
    targets.append(_target("speed_64", _ratio(m.extract_ips("extract_64"), m.seed_ips(64)),
                           f"3x needs {need:.0f} GFLOP/s, {need / m.peak_for(e['precision']):.0%} of the measured "
                           f"{e['precision']} matmul peak"))
    frac = m.extract_ips("extract_64") * flops[64] / 1e9 / m.peak_for(e["precision"])
    targets.append(_target("peak_64", frac, f"{e['precision']} at 64 px vs the {e['precision']} matmul peak"))
    notes = ["oneDNN's VGG16 convolutions run faster than TensorFlow's own large matmul, so the measured matmul "
             "peak is a lower bound on the hardware's; above 100% means at that bound"] if frac > 1 else []
    return targets, notes


def full_scale_targets(m: Steps, sizes: list[int]) -> tuple[list[Row], list[Target]]:
    """--scale full: extraction's share of the measured matmul peak at each size (the loop's rate: model
    built, cache not yet written), and the photo loader with every core's decode workers against one."""
    rows, targets = [], []
    for s in sizes:
        e, key = m.steps[f"extract_{s}"], {32: "peak_32", 64: "peak_64_full", 224: "peak_224"}.get(s)
        share = e["images"] / e["loop_s"] * m.flops[s] / 1e9 / m.peak_for(e["precision"]) if e.get("loop_s") else None
        if key:
            targets.append(_target(key, share, f"{e['precision']}, {e['images']:,} images, batch {e['batch_size']}"))
    d = m.steps.get("decode_224")
    if d:
        one, *more = sorted((DecodeRow(**r) for r in d["rows"]), key=lambda r: r.workers)
        last = more[-1] if more else one
        ratio = _ratio(last.rate, one.rate)
        rows.append(Row("loader", f"photo loader alone, images/s at {d['size']} px (best of passes)", one.rate,
                        "1 decode worker", last.rate, f"{last.workers} decode workers", ratio))
        note = f"{last.workers} workers, {one.images} photos a pass"
        if d.get("processes"):
            ceiling = DecodeRow(**d["processes"])
            top = _ratio(ceiling.rate, one.rate)
            rows.append(Row("loader", f"the machine's ceiling: {ceiling.workers} processes decoding at once, "
                                      "images/s", one.rate, "1 process", ceiling.rate, "no shared GIL", top))
            note += f"; {ceiling.workers} separate processes reach {top:.2f}x on this machine"
        targets.append(_target("decode_2", ratio if last.workers >= 2 else None, note))
    return rows, targets


def build_report(steps: dict, sizes: list[int], base: int, memory_sizes: list[int], epochs: int, quick: bool,
                 full: str | None = None) -> dict:
    """Every section's rows, every target's verdict, and notes on how the run went; plain data for JSON.
    `full`: the synthetic set's description when the run was `--scale full` (its rows are added)."""
    m = Steps(steps, base)
    # --scale full: extract and the seed's predict ran on different image counts; scale_rows gives each step's memory
    memory, memory_targets = memory_rows(m, sizes, memory_sizes) if not full else ([], [])
    e2e, e2e_targets = end_to_end_rows(m, epochs, bool(full), quick)
    accuracy, accuracy_targets = accuracy_rows(m) if not full else ([], [])
    distributed, ray_targets = distributed_rows(m)
    speed, notes = speed_targets(m, sizes)
    rows = throughput_rows(m, sizes) + compute_rows(m, sizes) + memory + e2e + accuracy + distributed
    targets = speed + accuracy_targets + e2e_targets + memory_targets + ray_targets
    if full:
        scale, scale_targets = scale_rows(steps, base, epochs)
        loader, full_targets = full_scale_targets(m, sizes)
        rows += scale + loader
        targets += scale_targets + full_targets
        notes.append(f"--scale full: the data set is {full}; the seed style ran {epochs} epochs and its 10 are "
                     "extrapolated; throughput at sizes after the first is measured on part of the set; the Ray, "
                     "float32 and memory-growth comparisons are the subset bench's (`make bench`)")
    if quick:
        notes.append("--quick: a smoke run on a few images; the figures are not meaningful")
    others = [v["others_cpu"] for v in steps.values() if isinstance(v, dict) and v.get("others_cpu") is not None]
    if others and max(others) > 0.1:
        notes.append(f"other work was running: it used {min(others):.0%}-{max(others):.0%} of the machine's cores "
                     "during the steps; ratios within one run are what count")
    elif not others:
        loads = [v.get("load_before") for v in steps.values() if isinstance(v, dict) and "load_before" in v]
        cores = m.peak.get("cores") or 1
        if loads and max(loads) > 0.5 * cores:
            notes.append(f"load average before steps ranged {min(loads):.1f}-{max(loads):.1f} on {cores} cores "
                         "(it counts the step before too); ratios within one run are what count")
    return {
        "machine": {k: m.peak.get(k) for k in ("cpu", "cores", "cpu_bf16", "cpu_amx", "gpu_capability", "tensorflow")},
        "peak_gflops": m.peaks, "vgg16_flops_per_image": m.flops,
        "rows": [asdict(r) for r in rows], "targets": [asdict(t) for t in targets], "notes": notes, "steps": steps,
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
    if key.startswith("peak_"):
        return f"{v:.0%}"
    if key == "lr_accuracy":
        return f"{v:.2f} points"
    if TARGETS[key][0].endswith(" s"):
        return f"{v:.1f} s"
    return f"{v:.2f}x"


def format_table(report: dict) -> str:
    """A Markdown table (readable in a terminal too), then one line per target: met/missed."""
    m = report["machine"]
    bf16 = ("yes, AMX" if m.get("cpu_amx") else "yes, AVX-512") if m["cpu_bf16"] else "no"
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, bf16 {bf16}, TensorFlow {m['tensorflow']}", "",
             "ratio: how many times this project beats the seed style (higher is better), except the "
             "128-vs-32 px row, where there is one, which is how much extract's memory grows (lower is better).", "",
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
