"""The end of a run that is not the end of its work: a signal, the allocation's end, a full disk.

A pilot job always dies: its allocation reaches its time limit (Slurm sends SIGTERM, or the
signal of ``#SBATCH --signal``), someone runs ``scancel``, hpilot's own ``--stop-before``
comes, or a disk fills.  None of these is a cancel (only ``cancelJob`` cancels) and none is
the tasks' failure: the run stops *resumably*.  :func:`interrupt` is the core's side of it:

- nothing new is sent: what waits in the Router, jobs still waiting for their dependencies
  and iterations held for their own predecessors end INTERRUPTED at once;
- every partition gets :class:`Shutdown`: it drops what it holds queued and kills what runs
  (its whole process group, SIGKILL after the grace); those reports come back as
  INTERRUPTED too (:func:`from_partition` says which);
- the journal gets a ``drop`` record with state INTERRUPTED for each, which a replay
  ignores (:mod:`replay`): the next resume runs them again.  Dependants of an interrupted
  job are interrupted, never OMITTED: nothing they wait for has failed.

INTERRUPTED is final for this run only; ``final_status``, the report and the last line count
them ("interrupted by SIGTERM: N iterations left to resume").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from hpilot.governor.core import records
from hpilot.governor.core.decisions import Impossible
from hpilot.governor.core.events import Action, FinishService, Interrupt, Record, SendToPartition
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import IterationFinished, IterationsDropped, Shutdown

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore, PartitionView

INTERRUPTED = JobState.INTERRUPTED


def interrupt(core: GovernorCore, ev: Interrupt, out: List[Action]) -> None:
    if core.interrupted is not None:
        return
    reason, now = ev.reason, ev.now
    core.interrupted = reason
    core.finishing = True
    if core.journaling:
        out.append(Record(records.json_record({"t": "interrupt", "time": now, "reason": reason})))
    for rec in list(core.registry):
        if rec.state.is_final:
            continue
        held = core.each.take_held(rec)  # iterations waiting for their own predecessors
        if held:
            core._drop(rec, held, INTERRUPTED, reason, now, out)
        if not rec.dispatched and not rec.state.is_final:  # waiting for its dependencies
            core._drop(rec, rec.pending(), INTERRUPTED, reason, now, out)
    core.apply(core.router.drop_unsent(reason, INTERRUPTED, now), now, out)
    for rec, its in core.router.fences.drop_all():  # held by lost partitions: left to the resume
        core.apply([Impossible(rec, tuple(its), INTERRUPTED, reason)], now, out)
    for name in core.partitions:
        out.append(SendToPartition(name, Shutdown(reason, now)))
    out.append(FinishService(reason))


def ends_interrupted(core: GovernorCore, msg: object) -> bool:
    """Whether a partition's report is one of the run's stop: an iteration it killed, or
    dropped unstarted, because of the Shutdown :func:`interrupt` sent."""
    if core.interrupted is None:
        return False
    if isinstance(msg, IterationFinished):
        return not msg.ok and (msg.canceled or msg.lost)
    if isinstance(msg, IterationsDropped):
        return msg.canceled
    return False


def killed(core: GovernorCore, rec: JobRecord, view: PartitionView, part: str, msg: IterationFinished,
           out: List[Action]) -> None:
    """An iteration that was running when the run stopped: its run ends (times kept), the
    iteration is INTERRUPTED, to run again on resume."""
    reason = core.interrupted or "interrupted"
    if rec.runs.finish(msg.iteration, msg.finished, msg.exit_code, reason) is not None:
        view.used_cores -= msg.cores
    core._requeue(rec, (msg.iteration,), reason)
    core._drop(rec, (msg.iteration,), INTERRUPTED, reason, msg.finished, out)
    core.apply(core.router.finished(part, rec, (msg.iteration,), msg.finished), msg.finished, out)


def left_to_resume(core: GovernorCore) -> int:
    """Iterations a resume will run: every one that did not end for good."""
    done = (JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED)
    return sum(rec.total - sum(rec.counts[s] for s in done) for rec in core.registry)
