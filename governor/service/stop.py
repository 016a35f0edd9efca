"""When a run in an allocation stops by itself: ``--stop-before`` seconds ahead of the end.

Slurm ends an allocation with SIGTERM at its time limit and SIGKILL ``KillWait`` seconds
later (30 by default).  A run that waits for that loses the tasks the signal kills and may
not finish writing its journal, reports and statistics.  So in an allocation hpilot reads
the end time from Slurm (``scontrol show job``) and stops resumably ``stop_before`` seconds
ahead, exactly as on SIGTERM; and a task whose wall time (``wt``) cannot end before then is
not started: it waits for the next allocation (partition/core.py).  The time limit is read
once, at the start (an ``scontrol update`` of it later is not seen).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

from hpilot.governor.service.config import Options
from hpilot.partition.resources import ResourceSet
from hpilot.partition.slurm import job_window

log = logging.getLogger("hpilot.service")
DEFAULT = 60.0  # seconds, unless a tenth of the time limit is less


@dataclass(frozen=True)
class Deadline:
    end: float  # the allocation's end (epoch seconds)
    stop_at: float  # when the run stops
    margin: float

    @property
    def reason(self) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.end))
        return f"interrupted before the allocation's end ({at}; --stop-before {self.margin:g}s)"


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
    d = Deadline(end, end - margin, margin)
    log.info("the allocation ends at %s: stopping at %s (--stop-before %gs)", time.ctime(end), time.ctime(d.stop_at),
             margin)
    return d
