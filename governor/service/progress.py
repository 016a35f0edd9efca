"""A live progress line (``--progress``): done by category, running, queued, rate, ETA.

It counts iterations (a plain job counts as one), redraws at most a few times a
second on stderr, and writes plain lines instead of redrawing when stderr is
not a terminal (a Slurm output file should not fill with carriage returns).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Dict, Iterable, Optional

from hpilot.governor.core import counts
from hpilot.governor.core.registry import JobRecord


def fmt_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(c: Dict[str, int], elapsed: float, width: int = 24) -> str:
    """``[####....] 120/400 done (118 succeeded, 2 failed) 8 running 272 queued  40/s  ETA 0:00:07``"""
    total = sum(c.values())
    done = counts.done(c)
    frac = done / total if total else 0.0
    filled = int(frac * width)
    bar = "#" * filled + "." * (width - filled)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 and total > done else None
    finals = {k: c[k] for k in counts.FINAL_CATEGORIES}
    return (f"[{bar}] {done}/{total} done ({counts.text(finals, 'none yet')}) "
            f"{c['running']} running {c['queued']} queued  {rate:.0f}/s  ETA {fmt_eta(eta)}")


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
        line = render(counts.of_jobs(jobs), now - self.start)
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
