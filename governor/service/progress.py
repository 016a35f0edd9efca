"""A live progress line for ``--show-progress``: done, failed, running, queued, rate, ETA.

It counts iterations (a plain job counts as one), redraws at most a few times a
second on stderr, and writes plain lines instead of redrawing when stderr is
not a terminal (a Slurm output file should not fill with carriage returns).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, Iterable, Optional

from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState


@dataclass
class Tally:
    total: int = 0
    succeeded: int = 0
    failed: int = 0  # failed, canceled or omitted
    running: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def queued(self) -> int:
        return self.total - self.done - self.running


def tally(jobs: Iterable[JobRecord]) -> Tally:
    t = Tally()
    for rec in jobs:
        c = rec.counts
        t.total += rec.total
        t.succeeded += c[JobState.SUCCEED]
        t.failed += c[JobState.FAILED] + c[JobState.CANCELED] + c[JobState.OMITTED]
        t.running += c[JobState.EXECUTING] + c[JobState.SCHEDULED]
    return t


def fmt_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(t: Tally, elapsed: float, width: int = 24) -> str:
    frac = t.done / t.total if t.total else 0.0
    filled = int(frac * width)
    bar = "#" * filled + "." * (width - filled)
    rate = t.done / elapsed if elapsed > 0 else 0.0
    eta = (t.total - t.done) / rate if rate > 0 and t.total > t.done else None
    return (f"[{bar}] {t.done}/{t.total} done ({t.succeeded} ok, {t.failed} failed) "
            f"{t.running} running {t.queued} queued  {rate:.0f}/s  ETA {fmt_eta(eta)}")


class Progress:
    def __init__(self, stream: Optional[IO[str]] = None, interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else 5.0
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def due_in(self) -> float:
        return max(0.0, self._last + self.interval - time.monotonic())

    def update(self, jobs: Iterable[JobRecord], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        line = render(tally(jobs), now - self.start)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self, jobs: Iterable[JobRecord]) -> None:
        self.update(jobs, force=True)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
