"""A partition's reports as batches: the governor's cost grows with batches, not iterations.

A partition sends one loop pass's starts of a job as one :class:`IterationsStarted` and
its plain successes (exit 0, no reason) as one :class:`IterationsSucceeded`, in columns, and
the iterations that did both within the pass as one :class:`IterationsRan`.
Here each batch is applied in one pass over its columns: the state bytes and the run
columns are written in a tight loop, the counts, the accounting, the journal record and
the job's own state once per batch.  Everything that is not plain (a failure, a cancel, a
start that failed, an iteration something waits on) is an exception handled one by one,
as before: dependants are released per iteration only where some wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from hpilot.governor.core import records
from hpilot.governor.core.events import Action, Record, StateEvent
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import IterationsRan, IterationsStarted, IterationsSucceeded

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore, PartitionView


def started(core: GovernorCore, rec: JobRecord, view: PartitionView, msg: IterationsStarted,
            out: List[Action]) -> None:
    its = msg.iterations
    if not its:
        return
    view.used_cores += msg.cores
    rec.start_many(its)
    rec.runs.start_many(its, msg.allocations, msg.wds, msg.scheduled, msg.started, msg.pids,
                        None if view.local else view.name)
    if core.journaling:
        out.append(Record(records.json_record({"t": "started", "job": rec.name, "its": list(its),
                                               "pids": list(msg.pids), "at": list(msg.started)})))
    if core.emit_events and rec.task.iterative:
        out.extend(StateEvent({"event": "iteration", "job": rec.name, "iteration": it, "state": "EXECUTING",
                               "time": t}) for it, t in zip(its, msg.started))
    if rec.state is JobState.QUEUED:
        core.set_job_state(rec, JobState.EXECUTING, min(msg.started), out)


def succeeded(core: GovernorCore, part: str, rec: JobRecord, view: PartitionView, msg: IterationsSucceeded,
              out: List[Action]) -> None:
    applied = rec.succeed_many(msg.iterations)
    if not applied:
        return
    now = max(msg.finished)
    if len(applied) == len(msg.iterations):
        starts, ends, allocs, wds = msg.started, msg.finished, msg.allocations, msg.wds
    else:  # some were final already (a repeated report): only the others count
        done = set(applied)
        keep = [i for i, it in enumerate(msg.iterations) if it in done]
        starts = tuple(msg.started[i] for i in keep)
        ends = tuple(msg.finished[i] for i in keep)
        allocs = tuple(msg.allocations[i] for i in keep)
        wds = tuple(msg.wds[i] for i in keep)
    view.used_cores -= msg.cores * len(applied) // len(msg.iterations)
    rec.runs.finish_many(applied, ends, starts, allocs, wds)
    if core.journaling:
        out.append(Record(records.json_record({"t": "ok", "job": rec.name, "its": list(applied), "a": list(allocs),
                                               "w": list(wds), "b": list(starts), "e": list(ends)})))
    if core.emit_events and rec.task.iterative:
        out.extend(StateEvent({"event": "iteration", "job": rec.name, "iteration": it, "state": "SUCCEED",
                               "time": t}) for it, t in zip(applied, ends))
    core.iterations_succeeded(rec, applied, now, out)
    core.apply(core.router.finished(part, rec, applied, now, first=min(starts)), now, out)


def ran(core: GovernorCore, part: str, rec: JobRecord, view: PartitionView, msg: IterationsRan,
        out: List[Action]) -> None:
    """Started and succeeded within one pass: the same as the two batches, one after the other."""
    started(core, rec, view, msg.as_started(), out)
    succeeded(core, part, rec, view, msg.as_succeeded(), out)
