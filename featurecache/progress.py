"""Progress of a long step, on a terminal and in a log alike.

    with progress("extract train", total=50_000, unit="img") as p:
        for batch in batches:
            ...
            p.update(len(batch))

On a terminal (stderr is a TTY) this is tqdm's bar. Anywhere else (nohup, Slurm, CI, a pipe)
tqdm would print nothing until the end, so the step prints one plain line about every 10% of the
work or every 30 s, whichever comes first, with the rate and the time left:

    extract train: 1,500/3,000 img (50%), 412 img/s, 4 s left

and a last line when it ends. A step inside another (the MLP fits of an active-learning run) is
silent: the outer step reports. Every long step (extract, merge, MLP training, attacks, active
learning) reports through this one helper.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

EVERY_FRACTION = 0.1   # a plain line at least every 10% of the work ...
EVERY_SECONDS = 30.0   # ... or every 30 s, whichever comes first

__all__ = ["Progress", "progress", "duration"]


def duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 1 h 02 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """A step of `total` units, `initial` of them done before (a resumed run). Use `progress()`."""

    open_steps = 0  # steps now reporting; one begun inside another stays silent

    def __init__(self, desc: str, total: int, unit: str = "img", initial: int = 0, stream: TextIO | None = None,
                 every_fraction: float = EVERY_FRACTION, every_seconds: float = EVERY_SECONDS,
                 terminal: bool | None = None):
        self.desc, self.total, self.unit, self.done, self.initial = desc, max(int(total), 0), unit, initial, initial
        self.stream = stream or sys.stderr
        self.every_units = max(1, int(self.total * every_fraction))
        self.every_seconds = every_seconds
        self.started = self.last_time = time.monotonic()
        self.last_done = initial
        self.closed = False
        self.silent = Progress.open_steps > 0
        Progress.open_steps += 1
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = None
        if not self.silent and (terminal if terminal is not None else is_tty):
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, desc=desc, unit=unit, file=self.stream,
                            dynamic_ncols=True, mininterval=0.5)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if self.silent:
            return
        now = time.monotonic()
        if self.done - self.last_done >= self.every_units or now - self.last_time >= self.every_seconds:
            self.last_done, self.last_time = self.done, now
            self._line(now)

    def _line(self, now: float, end: bool = False) -> None:
        elapsed = now - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        speed = f"{rate:,.0f} {self.unit}/s" if rate >= 10 else f"{rate:.2g} {self.unit}/s"
        if end:
            tail = f"done in {duration(elapsed)}"
        elif rate > 0 and self.total:
            tail = f"{duration((self.total - self.done) / rate)} left"
        else:
            tail = "time left unknown"
        print(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}{share}, {speed}, {tail}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        Progress.open_steps -= 1
        if self.bar is not None:
            self.bar.close()
        elif not self.silent:
            self._line(time.monotonic(), end=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(desc: str, total: int, unit: str = "img", initial: int = 0, **kwargs) -> Progress:
    """A `Progress` on stderr: tqdm's bar on a terminal, plain lines elsewhere."""
    return Progress(desc, total, unit, initial, **kwargs)
