"""Resume: the journal's records, replayed as events through the core's own methods.

Replay changes nothing but the core's own state, in the order the records were
written: submits register their jobs (with the submit-time variables they had),
finished iterations keep their results, cancels, drops and removes happen again.
:class:`ReplayDone` then finishes what the journal finished and links every other job
to its dependencies exactly as a submit does, which dispatches only what is left and
rebuilds the OMITTED states.  Iterations that were running when the service died run
again (they left no result), and so do those an earlier run's end INTERRUPTED (a signal,
the allocation's end): their drop records are counted, never applied.  The core validates itself after a replay
(``GovernorCore.validate``), so a journal can never leave it inconsistent.

Finished-iteration records come in batches (:class:`ReplayFinished`) and are applied
per job in bulk: a million of them must replay in seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Set, Tuple

from hpilot.governor.core.events import (
    Action,
    ReplayCancel,
    ReplayDone,
    ReplayDrop,
    Replayed,
    ReplayFinished,
    ReplayRemove,
    ReplaySubmit,
)
from hpilot.governor.core.jobspec import parse_job
from hpilot.governor.core.registry import Drop, Failure, JobRecord
from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore

EVENTS = (ReplaySubmit, ReplayCancel, ReplayRemove, ReplayDrop, ReplayFinished, ReplayDone)


class ReplayError(ValueError):
    """A journal record the core cannot take (e.g. a job that no longer parses)."""


def apply(core: GovernorCore, ev: Replayed, out: List[Action]) -> None:
    if isinstance(ev, ReplayFinished):
        _finished(core, ev.records, ev.tails)
    elif isinstance(ev, ReplaySubmit):
        _submit(core, ev)
    elif isinstance(ev, ReplayCancel):
        for name in ev.jobs:
            rec = core.registry.get(name)
            if rec is None:
                continue
            if ev.iterations is None:
                rec.canceled = True
            else:  # single iterations ("job:it"): those still queued at the end are canceled
                rec.partial_cancel = True
                _canceled_its(core).setdefault(id(rec), (rec, set()))[1].update(ev.iterations)
    elif isinstance(ev, ReplayRemove):
        for name in ev.jobs:
            rec = core.registry.get(name)
            if rec is not None:
                core.forget(rec)
    elif isinstance(ev, ReplayDrop):
        rec = core.registry.get(ev.job)
        if ev.state == JobState.INTERRUPTED.value:  # the end of an earlier run: they run again
            core.replay_interrupted += len(ev.iterations)
        elif rec is not None:
            state = JobState(ev.state)
            rec.drops.append(Drop(ev.iterations, state, ev.time, ev.reason))
            for it in ev.iterations:
                if rec.it_state(it) is JobState.QUEUED:
                    rec.set_it_state(it, state)
    elif isinstance(ev, ReplayDone):
        _done(core, ev.now, out)


def _submit(core: GovernorCore, ev: ReplaySubmit) -> None:
    core.rcnt = max(core.rcnt, int(ev.values.get("rcnt", 0)))
    for raw in ev.jobs:
        spec, errors = parse_job(raw)
        if spec is None:  # it was accepted once; a newer parser refusing it is a bug to see
            raise ReplayError(f"journal: job {raw.get('name')!r} no longer parses: {errors[0]}")
        core.register(spec, ev.time, [], ev.values)


def _finished(core: GovernorCore, records: Sequence[Tuple[Any, ...]], tails: Dict[Tuple[Any, Any], str]) -> None:
    """Each record is (job, iteration, state, exit code, start, end, allocation, wd, reason).
    Consecutive records of one job are applied together (the journal writes them so)."""
    batch: List[Tuple[Any, ...]] = []
    job = None
    for r in records:
        if r[0] != job:
            _job_finished(core, job, batch, tails)
            job, batch = r[0], []
        batch.append(r)
    _job_finished(core, job, batch, tails)


def _job_finished(core: GovernorCore, job: Any, batch: List[Tuple[Any, ...]],
                  tails: Dict[Tuple[Any, Any], str]) -> None:
    rec = core.registry.get(job) if job is not None else None
    if rec is None or not batch:
        return
    if rec.state is JobState.QUEUED:
        rec.set_state(JobState.EXECUTING, batch[0][4])
    for r in rec.restore_finished(batch):
        rec.runs.add_compact(r[1], r)  # an IterRun only when someone reads it
        if r[2] == "FAILED":
            rec.add_failure(Failure(r[1], r[3], r[8], tails.get((job, r[1]))))


def _canceled_its(core: GovernorCore) -> Dict[int, Tuple[JobRecord, Set[int]]]:
    """Iterations canceled one by one met during this replay: job record's id -> (record, its)."""
    return core.replay_canceled_its


def _done(core: GovernorCore, now: float, out: List[Action]) -> None:
    """Finish what the journal finished; link the rest (dispatch, or omit)."""
    for rec, its in _canceled_its(core).values():
        if core.registry.get(rec.name) is not rec:
            continue
        queued = tuple(sorted(it for it in its if rec.it_state(it) is JobState.QUEUED))
        for it in queued:
            rec.set_it_state(it, JobState.CANCELED)
        if queued:
            rec.drops.append(Drop(queued, JobState.CANCELED, now, "canceled by the user (before the resume)"))
    _canceled_its(core).clear()
    for rec in list(core.registry):
        if rec.canceled and not rec.all_final:
            queued = tuple(rec.queued_iterations())
            for it in queued:
                rec.set_it_state(it, JobState.CANCELED)
            rec.drops.append(Drop(queued, JobState.CANCELED, now, "canceled by the user (before the resume)"))
        if rec.all_final and not rec.state.is_final:
            core.finalize(rec, _last_activity(rec, now), out)
    for rec in sorted(core.registry, key=lambda j: j.order):
        if not rec.state.is_final and not rec.dispatched:
            core.link(rec, now, out)


def _last_activity(rec: JobRecord, now: float) -> float:
    span = rec.runs.span()
    if span is None:
        return now
    return span[1] if span[1] is not None else span[0]


def summary(core: GovernorCore) -> Dict[str, int]:
    """Counts for the resume plan: jobs and iterations, and how many are finished."""
    jobs = done = its = its_done = 0
    for rec in core.registry:
        jobs += 1
        done += rec.state.is_final
        its += rec.total
        its_done += rec.finished_count
    return {"jobs": jobs, "jobs_done": done, "iterations": its, "iterations_done": its_done}

