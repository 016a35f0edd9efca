"""Resume: read a run's journal, replay it into a fresh core, and say what it will do.

The journal's records become the core's replay events (``core.replay`` says what each
does) and the core validates itself afterwards.  Here is only the I/O: reading the
journal, finding the run, and killing what the dead service left running.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.core.events import (
    Action,
    ReplayCancel,
    ReplayDone,
    ReplayDrop,
    ReplayFinished,
    ReplayRemove,
    ReplaySubmit,
)
from hpilot.governor.core.governor import GovernorCore
from hpilot.governor.core.replay import ReplayError, summary
from hpilot.governor.service import journal

BATCH = 4096  # finished-iteration records per replay event


class ResumeError(ValueError):
    pass


@dataclass
class Plan:
    """What a resume will do, before doing it (``hpilot resume --dry-run``)."""

    run_dir: str
    jobs: int = 0
    jobs_done: int = 0
    iterations: int = 0
    iterations_done: int = 0
    to_run: int = 0
    dropped_records: int = 0
    problems: List[str] = field(default_factory=list)
    orphans: List[Tuple[int, float]] = field(default_factory=list)  # (pid, start) possibly still running
    file: Optional[str] = None  # the request file of the first run, and how far it was read
    file_next: int = 0
    interrupted_by: Optional[str] = None  # why a run stopped resumably, the last time one did

    def to_json(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("run_dir", "jobs", "jobs_done", "iterations", "iterations_done",
                                              "to_run", "dropped_records", "problems", "interrupted_by")}

    def text(self) -> str:
        lines = [f"resume of {self.run_dir}:",
                 f"  jobs:       {self.jobs} ({self.jobs_done} finished)",
                 f"  iterations: {self.iterations} ({self.iterations_done} finished, {self.to_run} to run)"]
        if self.interrupted_by:
            lines.append(f"  last interrupted: {self.interrupted_by}")
        if self.file:
            lines.append(f"  request file: {self.file} (read up to request {self.file_next})")
        if self.dropped_records:
            lines.append(f"  lost records: {self.dropped_records} (damaged journal tail; those iterations run again)")
            lines.extend(f"    {p}" for p in self.problems)
        return "\n".join(lines)


def find_run(path: str) -> str:
    """A run directory, or the newest run with a journal under a working directory."""
    if not os.path.isdir(path):
        raise ResumeError(f"--resume {path}: no such directory")
    for run in journal.iter_runs(path):
        return run
    raise ResumeError(f"--resume {path}: not an hpilot run directory, and no run with a journal under "
                      f"{os.path.join(path, '.hpilot')}")


def restore(core: GovernorCore, run_dir: str, now: float) -> Tuple[List[Action], Plan]:
    """Replay ``run_dir``'s journal into ``core`` (a fresh one) as the core's own replay
    events; returns the actions to carry out (the dispatch of what is left)."""
    try:
        replay, records = journal.stream(os.path.join(run_dir, journal.FILE))
    except journal.JournalError as e:
        raise ResumeError(str(e)) from None
    plan = Plan(run_dir, file=replay.header.get("file"))
    out: List[Action] = []
    started: Dict[Tuple[str, int], Tuple[Optional[int], float]] = {}
    finished: List[Tuple[Any, ...]] = []
    tails: Dict[Tuple[Any, Any], str] = {}  # (job, it) -> a failed iteration's last stderr lines

    def feed(ev: Any) -> None:
        try:
            out.extend(core.handle(ev))
        except ReplayError as e:
            raise ResumeError(str(e)) from None

    for kind, rec in records:
        if kind == "I":
            if started:
                started.pop((rec[0], rec[1]), None)
            finished.append(rec)
            if len(finished) >= BATCH:
                feed(ReplayFinished(finished, tails))
                finished, tails = [], {}
            continue
        if kind == "S":
            started[(rec[0], rec[1])] = (rec[2], rec[3])
            continue
        t = rec.get("t")
        if t == "started":  # a batch of starts: (pid, time) of each, so that a resume kills orphans
            started.update(((job, it), (pid, at)) for job, it, pid, at in journal.started_batch(rec))
            continue
        if t == "ok":  # a batch of plain successes, as the I records they stand for
            if started:
                job = rec["job"]
                for it in rec["its"]:
                    started.pop((job, it), None)
            finished.extend(journal.ok_batch(rec))
            if len(finished) >= BATCH:
                feed(ReplayFinished(finished, tails))
                finished, tails = [], {}
            continue
        if t == "file":
            plan.file_next = max(plan.file_next, int(rec.get("next", 0)))
            continue
        if rec.get("t") == "interrupt":
            plan.interrupted_by = str(rec.get("reason"))
            continue
        if rec.get("t") == "stderr":  # a failed iteration's last stderr lines, before its I record
            if isinstance(rec.get("tail"), str):
                tails[(rec.get("job"), rec.get("it"))] = rec["tail"]
            continue
        if finished:  # in order: counts must be right before a remove or a drop
            feed(ReplayFinished(finished, tails))
            finished, tails = [], {}
        ev = _event(rec)
        if ev is not None:
            feed(ev)
    if finished:
        feed(ReplayFinished(finished, tails))
    feed(ReplayDone(now))
    core.validate()
    plan.dropped_records, plan.problems = replay.dropped, list(replay.problems)
    plan.orphans = [(pid, t) for pid, t in started.values() if pid is not None]
    counts = summary(core)
    plan.jobs, plan.jobs_done = counts["jobs"], counts["jobs_done"]
    plan.iterations, plan.iterations_done = counts["iterations"], counts["iterations_done"]
    plan.to_run = plan.iterations - plan.iterations_done
    return out, plan


def _event(rec: Dict[str, Any]) -> Any:
    """A JSON journal record as the core's replay event (None: nothing for the core)."""
    t = rec.get("t")
    if t == "submit":
        return ReplaySubmit(rec["time"], rec["values"], rec["jobs"])
    if t == "cancel":
        return ReplayCancel(rec["time"], rec["jobs"], rec.get("its"))
    if t == "remove":
        return ReplayRemove(rec["time"], rec["jobs"])
    if t == "drop":
        its = range(*rec["its"]) if rec.get("range") else tuple(rec["its"])
        return ReplayDrop(rec["job"], its, rec["state"], rec["reason"], rec["time"])
    return None


def resume_plan(path: str) -> Plan:
    """What ``--resume path`` would do, without doing it (nothing runs, nothing is written)."""
    from hpilot.governor.core.governor import GovernorConfig

    run = find_run(path)
    wd = os.path.dirname(os.path.dirname(os.path.abspath(run)))
    core = GovernorCore(GovernorConfig(root_wd=wd))  # no partition: nothing is sent anywhere
    _, plan = restore(core, run, 0.0)
    return plan
