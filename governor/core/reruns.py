"""Iterations that end without a result of their own, and run again.

A partition reports an iteration ``lost`` when its node was lost under it (its agent died
or could not be reached, after the node's tasks were surely dead: launcher/pool.py) or
when it could not be started on a node that was then taken out of service: neither is the
task's doing, so it runs again elsewhere, ``retry.lost`` times at most (1 by default).
A job may also ask for re-runs of its own failures (a non-zero exit, its wall time):
``"hpilot": {"retry": {"failed": 2}}``.  The counts are the Router's (fencing.Retries).

A re-run is not journaled: the iteration's start is (an ``S`` record), and its end only
when it is final, so a resume runs it again as it would any iteration that was running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from hpilot.governor.core.events import Action
from hpilot.governor.core.registry import JobRecord
from hpilot.partition.messages import IterationFinished

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore, PartitionView


def again(core: GovernorCore, rec: JobRecord, view: PartitionView, part: str, msg: IterationFinished,
          out: List[Action]) -> bool:
    """If this end calls for a re-run (and the job has re-runs left), re-queue it; True if so."""
    if msg.ok or msg.canceled or rec.canceled:
        return False
    it = msg.iteration
    task = rec.task.task_name(it)
    retries = core.router.retries
    if msg.lost:
        if not retries.again_lost(rec, (it,))[0]:
            return False  # FAILED, with its reason
        why = f"{msg.reason}; runs again ({retries.lost[(id(rec), it)]} of {rec.spec.retry_lost})"
    elif rec.spec.retry_failed and retries.again_failed(rec, it):
        what = msg.reason or f"exit code {msg.exit_code}"
        why = f"{what}; runs again ({retries.failed[(id(rec), it)]} of {rec.spec.retry_failed})"
    else:
        return False
    core._message(rec, f"{task}: {why}")
    if rec.runs.finish(it, msg.finished, msg.exit_code, why) is not None:
        view.used_cores -= msg.cores
    core.apply(core.router.rerun(part, rec, it, why, msg.finished), msg.finished, out)
    return True
