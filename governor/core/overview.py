"""The ``overview`` request: one compact answer with what a dashboard shows.

``hpilot top`` and ``hpilot status`` ask for it (an hpilot extension; QCG clients never
send it).  Its cost grows with the number of jobs and of *running* iterations, never
with the iterations of a sweep: a governor holding 100,000 iterations answers from its
per-state counters, and the cores in use per node come from the runs that are
executing (at most one per core).

The answer: totals by category (:mod:`counts`), the first ``limit`` jobs (those not
finished first, in submission order, then the most recently finished) or the jobs
named in ``jobs``, each partition's and node's cores in use, and the jobs with
failures with their last messages (the reasons).  QCG-PilotJob's requests keep their
own answers unchanged; the honest counts are here.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hpilot.governor.core import counts
from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore
    from hpilot.governor.core.registry import JobRecord

OK, ERROR = 0, -1
DEFAULT_LIMIT = 50
MAX_LIMIT = 100_000
_EXECUTING = JobState.EXECUTING.code


def answer(core: GovernorCore, payload: Dict[str, Any], now: float) -> Dict[str, Any]:
    limit = payload.get("limit", DEFAULT_LIMIT)
    failures = payload.get("failures", 10)
    for key, value in (("limit", limit), ("failures", failures)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return {"code": ERROR, "message": f"overview: '{key}' must be a whole number >= 0, not {value!r}"}
    names = payload.get("jobs")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        return {"code": ERROR, "message": "overview: 'jobs' must be a list of job names"}
    return {"code": OK, "data": overview(core, now, min(limit, MAX_LIMIT), min(failures, 1000), names)}


def overview(core: GovernorCore, now: float, limit: int = DEFAULT_LIMIT, failures: int = 10,
             names: Optional[List[str]] = None) -> Dict[str, Any]:
    """The whole run; with ``names``, "list" holds those jobs (in that order) and "unknown" the
    names that are not jobs."""
    totals = counts.empty()
    by_state: Counter = Counter()
    active: List[JobRecord] = []
    ended: List[JobRecord] = []
    failed: List[JobRecord] = []
    running: List[JobRecord] = []
    for rec in core.registry:
        c = counts.of_job(rec)
        counts.add(totals, c)
        by_state[rec.state.value] += 1
        (ended if rec.state.is_final else active).append(rec)
        if c["failed"]:
            failed.append(rec)
        if rec.counts[JobState.EXECUTING]:
            running.append(rec)
    ended.sort(key=lambda r: r.history[-1][1], reverse=True)
    shown = (active + ended)[:limit]
    unknown: List[str] = []
    if names is not None:
        found = [(n, core.registry.get(n)) for n in dict.fromkeys(names)]
        shown = [r for _, r in found if r is not None]
        unknown = [n for n, r in found if r is None]
    return {
        "time": now,
        "started": core.started,
        "finishing": core.finishing,
        "jobs": {"total": len(core.registry), "active": len(active), "states": dict(by_state)},
        "iterations": totals,
        "list": [_job(r) for r in shown],
        "resources": _resources(core, running),
        "failures": [_failure(r) for r in failed[-failures:]] if failures else [],
        "unknown": unknown,
    }


def _job(rec: JobRecord) -> Dict[str, Any]:
    out: Dict[str, Any] = {"name": rec.name, "state": rec.state.value, "total": rec.total,
                           "counts": counts.of_job(rec), "submitted": rec.submitted}
    if rec.state.is_final:
        out["ended"] = rec.history[-1][1]
    if rec.messages:
        out["message"] = rec.messages[0]
    return out


def _failure(rec: JobRecord) -> Dict[str, Any]:
    return {"job": rec.name, "failed": counts.of_job(rec)["failed"], "messages": rec.messages[-3:]}


def _resources(core: GovernorCore, running: List[JobRecord]) -> Dict[str, Any]:
    used = _cores_per_node(running)
    parts = []
    stats = {s["name"]: s for s in core.router.stats()} if core.router is not None else {}
    for p in core.partitions.values():
        s = stats.get(p.name, {})
        parts.append({
            "name": p.name, "total_cores": p.resources.total_cores, "used_cores": p.used_cores,
            "held": s.get("outstanding"), "done": s.get("done"), "joined": s.get("joined"),
            "draining": bool(s.get("draining")),
            "nodes": [{"name": n.name, "cores": n.total_cores, "used": used.get(n.name, 0),
                       **({"down": p.down[n.name]} if n.name in p.down else {})}
                      for n in p.resources.nodes],
        })
    total = sum(p.resources.total_cores for p in core.partitions.values())
    in_use = sum(p.used_cores for p in core.partitions.values())
    out: Dict[str, Any] = {"total_cores": total, "used_cores": in_use, "partitions": parts}
    if core.router is not None:
        out["lost_partitions"] = dict(core.router.gone)
    return out


def _cores_per_node(running: List[JobRecord]) -> Dict[str, int]:
    """Cores in use per node, from the allocations of the executing iterations."""
    per_alloc: Counter = Counter()
    for rec in running:
        states, start, want = rec.it_states, rec.task.it_start, rec.counts[JobState.EXECUTING]
        idx = states.find(_EXECUTING)
        while idx >= 0 and want:
            run = rec.runs.get(start + idx)
            if run is not None:
                per_alloc[run.allocation] += 1
            want -= 1
            idx = states.find(_EXECUTING, idx + 1)
    used: Dict[str, int] = {}
    for alloc, n in per_alloc.items():
        for node, ncores in _parse_allocation(alloc):
            used[node] = used.get(node, 0) + n * ncores
    return used


def _parse_allocation(alloc: Optional[str]) -> List[tuple]:
    """``n1[0:1],n2[4]`` -> [("n1", 2), ("n2", 1)] (QCG-PilotJob's allocation text)."""
    out = []
    for part in (alloc or "").split("],"):
        node, sep, cores = part.rstrip("]").partition("[")
        if node and sep:
            out.append((node, len(cores.split(":")) if cores else 0))
    return out
