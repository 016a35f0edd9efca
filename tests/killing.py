"""Kill a run at some moment, then count: every execution of every iteration, from marker files.

Each task sleeps, then appends ``<task> <time> <pid>`` to ``marks`` as the very last thing it
does: a line is an execution that ran to its end, also one that ended after the kill.  The
guarantee checked (README, "When the allocation ends: resume"):

- no process of the run is left one second after the kill (``HPILOT_TEST_TAG`` in the
  environment finds them all: managers, guards, agents, tasks and what tasks started);
- an iteration the journal had recorded as finished at the kill never runs again;
- every iteration ends at least once, and at most twice; twice only when its first end came
  in the last second before the kill (it ended, but hpilot had not recorded it yet) or
  within the second after (before the guard's kill reached it): that end was never seen,
  so the resume runs it again.  No third run, ever.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set

from hpilot.governor.service import journal

UNSEEN = 1.0  # an end this close before the kill may not have been recorded yet
BOUND = 1.0  # ... nor one this close after it (the guard's bound)


def mark(seconds: str, it: bool = True) -> str:
    """A task's script: sleep, then mark its end (``${it}`` only for iterative jobs)."""
    name = "${jname}:${it}" if it else "${jname}"
    return f'sleep {seconds}; echo "{name} $(date +%s.%N) $$" >> marks'


def tag_env() -> Dict[str, str]:
    """An environment whose tag every process of the run inherits."""
    return dict(os.environ, HPILOT_TEST_TAG=uuid.uuid4().hex)


def run_processes(tag: str, exclude: Optional[Set[int]] = None) -> List[int]:
    """Live (not zombie) processes whose environment carries this run's tag."""
    needle = f"HPILOT_TEST_TAG={tag}".encode()
    skip = {os.getpid(), *(exclude or set())}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as s:
                if s.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        found.append(int(name))
    return found


def describe(pids: List[int]) -> str:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmd[:120]}")
        except OSError:
            continue
    return "; ".join(out)


def journal_of(wd: Path) -> Path:
    return (wd / ".hpilot" / "latest").resolve() / "journal"


def finished_in_journal(wd: Path) -> Dict[str, int]:
    """How many times each task is recorded finished in the run's journal (``I`` records and
    batches of successes alike)."""
    path = journal_of(wd)
    if not path.exists():
        return {}
    out: Dict[str, int] = defaultdict(int)
    for rec in journal.finished(journal.read(str(path)).records):
        out[f"{rec[0]}:{rec[1]}"] += 1
    return dict(out)


def journal_has(wd: Path, what: bytes) -> bool:
    path = journal_of(wd) if (wd / ".hpilot" / "latest").exists() else None
    return path is not None and path.exists() and what in path.read_bytes()


@dataclass
class Executions:
    ends: Dict[str, List[float]] = field(default_factory=dict)

    @classmethod
    def read(cls, wd: Path, names: Dict[str, str]) -> Executions:
        """``names``: a non-iterative job's name -> its task key (``job:0``)."""
        ends: Dict[str, List[float]] = defaultdict(list)
        path = wd / "marks"
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    ends[names.get(parts[0], parts[0])].append(float(parts[1]))
        return cls({k: sorted(v) for k, v in ends.items()})

    def check(self, expected: Set[str], seen_done: Set[str], killed_at: Optional[float]) -> int:
        """The guarantee above; returns how many iterations ran twice (each within the window)."""
        missing = expected - set(self.ends)
        assert not missing, f"never ran to its end: {sorted(missing)[:10]}"
        extra = set(self.ends) - expected
        assert not extra, f"unknown tasks marked: {sorted(extra)[:10]}"
        twice = 0
        for task, ends in self.ends.items():
            if task in seen_done:
                assert len(ends) == 1, f"{task} was recorded finished before the kill and ran again: {ends}"
            assert len(ends) <= 2, f"{task} ran {len(ends)} times: {ends}"
            if len(ends) == 2:
                assert killed_at is not None, f"{task} ran twice without any kill: {ends}"
                assert killed_at - UNSEEN <= ends[0] <= killed_at + BOUND, (
                    f"{task} ran twice, its first end {ends[0] - killed_at:+.3f}s from the kill (only an end "
                    f"hpilot could not have seen may repeat)")
                twice += 1
        return twice


def kill_time() -> float:
    return time.time()
