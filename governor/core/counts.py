"""Honest counts: what happened to the iterations of a job, told apart for people.

Job states are QCG-PilotJob's and say too little on their own: a sweep canceled
after 12 of 40 iterations is ``CANCELED``, and QCG's ``finished``/``failed`` counts
call all 40 "finished" and 28 "failed".  Every place that shows counts (``status``,
``list``, ``info``, ``wait``, ``top``, ``jobs.report``, ``final_status``, the summary
line) uses these categories instead:

- ``succeeded``: ran and exited 0;
- ``failed``: ran and failed, or could not be started at all (a missing program,
  a request no node can hold): something for the user to fix;
- ``canceled``: was running when a cancel (or the end of the run) killed it;
- ``interrupted``: stopped by the end of the allocation (a signal, ``--stop-before``,
  a full disk), never by its own doing: the next resume runs it again;
- ``not_started``: will never run: omitted (a dependency failed) or canceled
  before it started;
- ``running`` and ``queued``: not final yet.

A canceled iteration that never started is told from one that was killed by the
transition that made it CANCELED (from QUEUED, or from EXECUTING): the registry
counts the former as it happens (:attr:`JobRecord.canceled_unstarted`), so these
counts cost O(states), never a scan of a million iterations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Mapping

from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.registry import JobRecord

# Every state, and the category it is counted in (tests check that none is missing).
CATEGORY: Dict[JobState, str] = {
    JobState.SUCCEED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELED: "canceled",
    JobState.OMITTED: "not_started",
    JobState.INTERRUPTED: "interrupted",
    JobState.EXECUTING: "running",
    JobState.SCHEDULED: "running",
    JobState.QUEUED: "queued",
}
# The order in which categories are shown; every key is always present in JSON.
ORDER = ("succeeded", "failed", "canceled", "interrupted", "not_started", "running", "queued")
FINAL_CATEGORIES = ("succeeded", "failed", "canceled", "interrupted", "not_started")
LABEL = {k: k.replace("_", " ") for k in ORDER}


def empty() -> Dict[str, int]:
    return dict.fromkeys(ORDER, 0)


def of_states(counts: Mapping[JobState, int], canceled_unstarted: int = 0) -> Dict[str, int]:
    """Categories from per-state counts (and how many CANCELED ones never started)."""
    out = empty()
    for state, n in counts.items():
        if n:
            out[CATEGORY[state]] += n
    if canceled_unstarted:
        out["canceled"] -= canceled_unstarted
        out["not_started"] += canceled_unstarted
    return out


def of_job(rec: JobRecord) -> Dict[str, int]:
    """The categories of one job's iterations (a job without iterations counts as one)."""
    return of_states(rec.counts, rec.canceled_unstarted)


def add(total: Dict[str, int], part: Mapping[str, int]) -> Dict[str, int]:
    for k, n in part.items():
        total[k] = total.get(k, 0) + n
    return total


def of_jobs(recs: Iterable[JobRecord]) -> Dict[str, int]:
    """Every iteration of these jobs, by category."""
    total = empty()
    for rec in recs:
        add(total, of_job(rec))
    return total


def done(c: Mapping[str, int]) -> int:
    """Iterations in a final category."""
    return sum(c.get(k, 0) for k in FINAL_CATEGORIES)


def text(c: Mapping[str, int], zero: str = "nothing") -> str:
    """``12 succeeded, 2 canceled, 26 not started``: the non-zero categories, in order."""
    parts = [f"{c[k]} {LABEL[k]}" for k in ORDER if c.get(k)]
    return ", ".join(parts) if parts else zero
