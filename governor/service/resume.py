"""Resume: rebuild a governor core from a run's journal, and say what it will do.

Replay applies the records in order without running anything: submits register
their jobs (with the submit-time variables they had), finished iterations keep
their results, cancels and removes happen again.  Then every job that is not
finished is linked to its dependencies as at submit time, which dispatches only
the iterations still to run and rebuilds the OMITTED states.  Iterations that
were running when the service died run again (they left no result).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from hpilot.governor.core.governor import Action, GovernorCore, JobDone
from hpilot.governor.core.jobspec import parse_job
from hpilot.governor.core.registry import Drop, Failure, JobRecord
from hpilot.governor.core.states import JobState
from hpilot.governor.service import journal

# iterations canceled one by one ("job:it"), met during the replay: job record's id -> (record, iterations)
CanceledIts = Dict[int, Tuple[JobRecord, Set[int]]]


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

    def to_json(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("run_dir", "jobs", "jobs_done", "iterations", "iterations_done",
                                              "to_run", "dropped_records", "problems")}

    def text(self) -> str:
        lines = [f"resume of {self.run_dir}:",
                 f"  jobs:       {self.jobs} ({self.jobs_done} finished)",
                 f"  iterations: {self.iterations} ({self.iterations_done} finished, {self.to_run} to run)"]
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
    """Replay ``run_dir``'s journal into ``core`` (a fresh one); returns the actions to carry out."""
    try:
        replay, records = journal.stream(os.path.join(run_dir, journal.FILE))
    except journal.JournalError as e:
        raise ResumeError(str(e)) from None
    plan = Plan(run_dir, file=replay.header.get("file"))
    out: List[Action] = []
    started: Dict[Tuple[str, int], Tuple[Optional[int], float]] = {}
    finished = _Finished(core)
    canceled_its: CanceledIts = {}
    for kind, rec in records:
        if kind == "I":
            if started:
                started.pop((rec[0], rec[1]), None)
            finished.add(rec)
        elif kind == "S":
            started[(rec[0], rec[1])] = (rec[2], rec[3])
        elif rec.get("t") == "file":
            plan.file_next = max(plan.file_next, int(rec.get("next", 0)))
        elif rec.get("t") == "stderr":  # a failed iteration's last stderr lines, before its I record
            finished.tails[(rec.get("job"), rec.get("it"))] = rec.get("tail")
        else:
            finished.settle()  # counts must be right before a remove or a drop
            _json_record(core, rec, out, canceled_its)
    finished.settle()
    plan.dropped_records, plan.problems = replay.dropped, list(replay.problems)
    plan.orphans = [(pid, t) for pid, t in started.values() if pid is not None]
    _settle(core, now, out, canceled_its)
    for r in core.registry:
        plan.jobs += 1
        plan.jobs_done += r.state.is_final
        plan.iterations += r.total
        plan.iterations_done += r.finished_count
    plan.to_run = plan.iterations - plan.iterations_done
    return out, plan


def _json_record(core: GovernorCore, rec: Dict[str, Any], out: List[Action], canceled_its: CanceledIts) -> None:
    t = rec.get("t")
    if t == "submit":
        core.rcnt = max(core.rcnt, int(rec["values"].get("rcnt", 0)))
        for raw in rec["jobs"]:
            spec, errors = parse_job(raw)
            if spec is None:  # it was accepted once; a newer parser refusing it is a bug to see
                raise ResumeError(f"journal: job {raw.get('name')!r} no longer parses: {errors[0]}")
            core._register(spec, rec["time"], [], rec["values"])
            if spec.after:
                core.dag.add((d.job, spec.name, d.iteration) for d in spec.after)
    elif t == "cancel":
        for name in rec["jobs"]:
            r = core.registry.get(name)
            if r is None:
                continue
            if "its" in rec:  # single iterations ("job:it"): those still queued at the end are canceled
                r.partial_cancel = True
                canceled_its.setdefault(id(r), (r, set()))[1].update(rec["its"])
            else:
                r.canceled = True
    elif t == "remove":
        for name in rec["jobs"]:
            if name in core.registry:
                if not core.registry.jobs[name].state.is_final:
                    core.active -= 1
                core.registry.remove(name)
                core.dag.remove(name)
    elif t == "drop":
        r = core.registry.get(rec["job"])
        if r is not None:
            its = range(*rec["its"]) if rec.get("range") else tuple(rec["its"])
            state = JobState(rec["state"])
            r.drops.append(Drop(its, state, rec["time"], rec["reason"]))
            for it in its:
                if r.it_state(it) is JobState.QUEUED:
                    r.set_it_state(it, state)


class _Finished:
    """Applies finished-iteration records in bulk: a million of them must replay in seconds,
    so the state byte is written directly (QUEUED -> final, the only change replay makes)
    and the per-state counts are added up once per job."""

    _QUEUED = JobState.QUEUED.code

    def __init__(self, core: GovernorCore) -> None:
        self.core = core
        self.codes = {s.value: s.code for s in JobState}
        self.pending: Dict[int, Tuple[JobRecord, Dict[str, int]]] = {}
        self.last: Tuple[Optional[str], Optional[JobRecord]] = (None, None)
        self.cur: Tuple[Any, ...] = (None, {}, bytearray(), {}, 0)
        self.tails: Dict[Tuple[Any, Any], Any] = {}  # (job, it) -> stderr tail, from "stderr" records

    def add(self, rec: Tuple[Any, ...]) -> None:
        job, it, state = rec[0], rec[1], rec[2]
        start = rec[4]
        if job != self.last[0]:
            self._switch(job, start)
        r, counts, states, runs, first = self.cur
        if r is None:
            return
        idx = it - first
        if not 0 <= idx < len(states) or states[idx] != self._QUEUED:
            return
        states[idx] = self.codes[state]
        counts[state] = counts.get(state, 0) + 1
        runs.add_compact(it, rec)  # an IterRun only when someone reads it
        if state == "FAILED":
            tail = self.tails.pop((job, it), None) if self.tails else None
            r.add_failure(Failure(it, rec[3], rec[8], tail if isinstance(tail, str) else None))

    def _switch(self, job: str, start: float) -> None:
        r = self.core.registry.get(job)
        self.last = (job, r)
        if r is None:
            self.cur = (None, {}, bytearray(), {}, 0)
            return
        if r.state is JobState.QUEUED:
            r.set_state(JobState.EXECUTING, start)
        counts = self.pending.setdefault(id(r), (r, {}))[1]
        self.cur = (r, counts, r.it_states, r.runs, r.task.it_start)

    def settle(self) -> None:
        for r, counts in self.pending.values():
            for state, n in counts.items():
                r.counts[JobState.QUEUED] -= n
                r.counts[JobState(state)] += n
        self.pending.clear()
        self.last = (None, None)
        self.cur = (None, {}, bytearray(), {}, 0)


def _settle(core: GovernorCore, now: float, out: List[Action], canceled_its: CanceledIts) -> None:
    """Finish what the journal finished; link the rest (dispatch, or omit)."""
    for r, its in canceled_its.values():
        if core.registry.get(r.name) is not r:
            continue
        queued = tuple(sorted(it for it in its if r.it_state(it) is JobState.QUEUED))
        for it in queued:
            r.set_it_state(it, JobState.CANCELED)
        if queued:
            r.drops.append(Drop(queued, JobState.CANCELED, now, "canceled by the user (before the resume)"))
    for r in list(core.registry):
        if r.canceled and not r.all_final:
            queued = tuple(r.queued_iterations())
            for it in queued:
                r.set_it_state(it, JobState.CANCELED)
            r.drops.append(Drop(queued, JobState.CANCELED, now, "canceled by the user (before the resume)"))
        if r.all_final and not r.state.is_final:
            final = r.summary_state()
            span = r.runs.span()
            last = now if span is None else (span[1] if span[1] is not None else span[0])
            r.set_state(final, last)
            core.active -= 1
            out.append(JobDone(r))
    for r in sorted(core.registry, key=lambda j: j.order):
        if not r.state.is_final and not r.dispatched:
            core._link(r, now, out)


def resume_plan(path: str) -> Plan:
    """What ``--resume path`` would do, without doing it (nothing runs, nothing is written)."""
    from hpilot.governor.core.governor import GovernorConfig, PartitionView
    from hpilot.partition.resources import ResourceSet

    run = find_run(path)
    wd = os.path.dirname(os.path.dirname(os.path.abspath(run)))
    core = GovernorCore(GovernorConfig(root_wd=wd), [PartitionView("dry-run", ResourceSet((), False, "none"))])
    _, plan = restore(core, run, 0.0)
    return plan


def kill_orphans(orphans: List[Tuple[int, float]]) -> int:
    """Kill the process groups the dead service left running; a pid that was reused is left alone."""
    import signal

    import psutil

    killed = 0
    for pid, started in orphans:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() > started + 1.0:  # a newer process got this pid
                continue
            os.killpg(pid, signal.SIGKILL)
            killed += 1
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return killed

