"""When a run in an allocation stops by itself: ``--stop-before`` seconds ahead of the end.

Slurm ends an allocation with SIGTERM at its time limit and SIGKILL ``KillWait`` seconds
later (30 by default).  A run that waits for that loses the tasks the signal kills and may
not finish writing its journal, reports and statistics.  So in an allocation hpilot reads
the end time from Slurm (``scontrol show job``) and stops resumably ``stop_before`` seconds
ahead, exactly as on SIGTERM; and a task whose wall time (``wt``) cannot end before then is
not started: it waits for the next allocation (partition/core.py).

The end moves: Slurm adds the time a job was suspended (``scontrol suspend``, a preemption by
suspension) to its end, and ``scontrol update TimeLimit=`` changes it.  Read once, a suspended
run would stop early by as long as it was suspended (hours, for a preemption).  So the end is
read again before the run stops for it (service.py), and by a partition manager when it saw the
job pause and while it holds work back for it (partition/manager.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from hpilot.governor.service.config import Options
from hpilot.partition.resources import ResourceSet
from hpilot.partition.slurm import job_window

if TYPE_CHECKING:
    from hpilot.partition.runner import PartitionRunner

log = logging.getLogger("hpilot.service")
DEFAULT = 60.0  # seconds, unless a tenth of the time limit is less


@dataclass(frozen=True)
class Deadline:
    end: float  # the allocation's end (epoch seconds)
    stop_at: float  # when the run stops
    margin: float
    job: str = ""  # the Slurm job whose end it is

    def reread(self) -> Deadline:
        """This deadline as Slurm has the job's end now (itself when unchanged or unknown)."""
        window = job_window(self.job) if self.job else None
        if window is None or window[1] == self.end:
            return self
        moved = Deadline(window[1], window[1] - self.margin, self.margin, self.job)
        log.warning("the allocation's end moved from %s to %s (a suspension, or a new time limit): stopping at %s",
                    time.ctime(self.end), time.ctime(moved.end), time.ctime(moved.stop_at))
        return moved

    @property
    def reason(self) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.end))
        return f"interrupted before the allocation's end ({at}; --stop-before {self.margin:g}s)"


class EndWatch:
    """A partition manager's deadline, read again when it asks (partition/manager.py): the
    stop time it should place work by now."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self) -> float:
        self.deadline = self.deadline.reread()
        return self.deadline.stop_at


class AllocationEnd:
    """The service's side: whether the run stops now, and why.  ``inproc``: the single
    manager's partition, whose work may all be held back for the deadline."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.inproc: Optional[PartitionRunner] = None

    def why_stop(self, now: float, routed: bool) -> Optional[str]:
        """The reason to stop at ``now``, or None.  ``routed``: work waits in the governor.
        The end is read again first: when it moved, the run goes on (and the partition places
        what it held back by the new one before the next pass asks again)."""
        d, inproc = self.deadline, self.inproc
        if now >= d.stop_at:
            reason = d.reason
        elif (inproc is not None and not inproc.busy and inproc.launcher.running == 0 and inproc.core.held_back
                and inproc.core.held_back == inproc.core.queued_iterations and not routed):
            reason = (f"{d.reason}: the {inproc.core.held_back} iteration(s) left cannot end before then "
                      "(their wall time)")
        else:
            return None
        moved = d.reread()
        if moved is d:
            return reason
        self.deadline = moved
        if inproc is not None:
            inproc.set_deadline(moved.stop_at)
        return None


def margin_for(opts: Options, limit: float) -> float:
    if opts.stop_before is not None:
        return opts.stop_before
    return min(DEFAULT, max(0.0, limit / 10.0))


def allocation_deadline(opts: Options, resources: ResourceSet) -> Optional[Deadline]:
    """The run's deadline in a Slurm allocation with a time limit; None elsewhere."""
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")
    if resources.source != "slurm" or not job or opts.slurm_resources_file:
        return None
    window = job_window(job)
    if window is None:
        return None
    start, end = window
    margin = margin_for(opts, end - start)
    d = Deadline(end, end - margin, margin, job)
    log.info("the allocation ends at %s: stopping at %s (--stop-before %gs)", time.ctime(end), time.ctime(d.stop_at),
             margin)
    return d
