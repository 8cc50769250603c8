"""Run one bench step in a fresh process; its wall time and peak resident memory are its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


class StepFailed(RuntimeError):
    pass


def peak_rss_mb() -> float:
    """This process' own peak resident memory (VmHWM), in MiB.

    Not `ru_maxrss`: on Linux a child's ru_maxrss starts from its parent's resident size at
    fork (the forked address space is counted before exec replaces it), so a small job
    started by a big process would report the big one's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def busy_cpu_s() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat: all but idle and
    iowait), or None where there is no /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def others_share(busy_before: float | None, busy_after: float | None, own_cpu_s: float, wall_s: float) -> float | None:
    """Share of the machine's cores that work other than the step used while it ran: the machine's busy
    CPU time less the step's own, over wall time x cores. 0 on a quiet machine; 0.5 on 2 cores is one
    core's worth of other work. Unlike the load average, it does not count the step before."""
    if busy_before is None or busy_after is None or wall_s <= 0:
        return None
    return max(0.0, (busy_after - busy_before - own_cpu_s) / (wall_s * (os.cpu_count() or 1)))


def run_step(argv: list[str], log: Path, json_out: Path | None = None, env: dict | None = None) -> dict:
    """Run `argv` with output to `log`; returns {wall_s, peak_rss_mb, others_cpu, load_before, load_after,
    **json_out} (others_cpu: see `others_share`).

    peak_rss_mb is what the step measured itself (`peak_rss_mb()`, written to its JSON as
    self_peak_rss_mb); without it, wait4's ru_maxrss, an upper bound (see `peak_rss_mb`).
    """
    load_before, busy_before = os.getloadavg()[0], busy_cpu_s()
    t = time.perf_counter()
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children so far)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    others = others_share(busy_before, busy_cpu_s(), usage.ru_utime + usage.ru_stime, wall)
    if p.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise StepFailed(f"{' '.join(argv[2:5])} ... failed (exit {p.returncode}); log {log}:\n" + "\n".join(tail))
    result = json.loads(json_out.read_text()) if json_out else {}
    rss = result.get("self_peak_rss_mb", usage.ru_maxrss / 1024)
    return {**result, "wall_s": wall, "peak_rss_mb": rss, "others_cpu": None if others is None else round(others, 3),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def job(name: str, args: list[str], workdir: Path, tag: str) -> dict:
    """`python -m bench.jobs NAME ARGS --json workdir/TAG.json`."""
    out = workdir / f"{tag}.json"
    return run_step([sys.executable, "-m", "bench.jobs", name, *args, "--json", str(out)],
                    workdir / f"{tag}.log", out)
