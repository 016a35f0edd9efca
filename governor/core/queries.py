"""Answers to the read-only requests, in QCG-PilotJob's response shapes.

``listJobs``, ``jobStatus``, ``jobInfo`` (with ``withChilds``), ``resourcesInfo``
and ``status``.  They read the registry and never change it.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hpilot.governor.core.registry import JobRecord, fmt_time
from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore

OK, ERROR = 0, -1
MAX_CHILDS = 100_000  # withChilds on a million iterations would be a 100 MB answer


def answer(core: GovernorCore, payload: Dict[str, Any], now: float) -> Dict[str, Any]:
    kind = payload["request"]
    if kind == "listJobs":
        return list_jobs(core)
    if kind == "resourcesInfo":
        return {"code": OK, "data": resources_info(core)}
    if kind == "status":
        return {"code": OK, "data": system_status(core, now)}
    names, err = job_names(payload)
    if err:
        return err
    with_childs = bool(payload.get("params", {}).get("withChilds") if isinstance(payload.get("params"), dict)
                       else payload.get("withChilds"))
    jobs: Dict[str, Any] = {}
    for name in names:
        rec = core.registry.get(name)
        if rec is None:
            jobs[name] = {"status": ERROR, "message": f"job {name!r} does not exist"}
        elif kind == "jobStatus":
            jobs[name] = {"status": OK, "data": job_status(rec)}
        else:
            jobs[name] = {"status": OK, "data": job_info(rec, with_childs)}
    return {"code": OK, "data": {"jobs": jobs}}


def job_names(payload: Dict[str, Any]) -> Tuple[List[str], Optional[Dict[str, Any]]]:
    """The request's ``jobNames`` (a name, or a list; a name given twice counts once), or the error answer."""
    names = payload.get("jobNames")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        kind = payload.get("request")
        return [], {"code": ERROR, "message": f"{kind}: 'jobNames' must be a non-empty list of job names"}
    return list(dict.fromkeys(names)), None


def list_jobs(core: GovernorCore) -> Dict[str, Any]:
    jobs: Dict[str, Any] = {}
    position = 0
    for rec in core.registry:
        entry: Dict[str, Any] = {"status": rec.state.value}
        if rec.state is JobState.QUEUED:
            entry["inQueue"] = position
            position += 1
        if rec.messages:
            entry["messages"] = rec.messages[0]
        if rec.task.iterative:
            entry["iterations"] = _iteration_counts(rec)
        jobs[rec.name] = entry
    return {"code": OK, "data": {"length": len(jobs), "jobs": jobs}}


def job_status(rec: JobRecord) -> Dict[str, Any]:
    out: Dict[str, Any] = {"jobName": rec.name, "status": rec.state.value}
    if rec.messages:
        out["messages"] = "\n".join(rec.messages)
    return out


def _iteration_counts(rec: JobRecord) -> Dict[str, int]:
    c = rec.counts
    return {
        "start": rec.task.it_start,
        "stop": rec.task.it_start + rec.total,
        "total": rec.total,
        "finished": rec.finished_count,
        "failed": c[JobState.FAILED] + c[JobState.CANCELED] + c[JobState.OMITTED],
    }


def _runtime(run) -> Dict[str, Any]:
    out: Dict[str, Any] = {"allocation": run.allocation, "wd": run.wd}
    if run.finished is not None:
        out["rtime"] = str(timedelta(seconds=run.finished - run.started))
        out["exit_code"] = str(run.exit_code)
    if run.reason:
        out["reason"] = run.reason
    if run.pid is not None:
        out["pid"] = run.pid
    if run.attempts > 1:
        out["attempts"] = run.attempts
    if run.partition is not None:
        out["partition"] = run.partition
    return out


def failures(rec: JobRecord) -> List[Dict[str, Any]]:
    """hpilot's addition to jobInfo: the first failed iterations, each with its exit code, the
    reason when it did not end by itself, and its last stderr lines when its output was streamed."""
    out = []
    for f in rec.failures:
        entry: Dict[str, Any] = {"exit_code": f.exit_code}
        if rec.task.iterative:
            entry = {"iteration": f.iteration, **entry}
        if f.reason:
            entry["reason"] = f.reason
        if f.stderr:
            entry["stderr"] = f.stderr
        out.append(entry)
    return out


def job_info(rec: JobRecord, with_childs: bool) -> Dict[str, Any]:
    out = job_status(rec)
    out["history"] = rec.history_text()
    if rec.failures:
        out["failures"] = failures(rec)
    if not rec.task.iterative:
        run = rec.runs.get(0)
        if run is not None:
            out["runtime"] = _runtime(run)
        return out
    out["iterations"] = _iteration_counts(rec)
    rt = rec.runtime
    if rt is not None:
        out["runtime"] = {"rtime": str(timedelta(seconds=rt))}
    if with_childs:
        out["childs"] = _childs(rec)
    return out


def _childs(rec: JobRecord) -> List[Dict[str, Any]]:
    childs = []
    for it in rec.iterations()[:MAX_CHILDS]:
        child: Dict[str, Any] = {"iteration": it, "state": rec.it_state(it).value}
        run = rec.runs.get(it)
        if run is not None:
            child["runtime"] = _runtime(run)
        child["history"] = "".join(f"\n{fmt_time(ts)}: {st.value}" for st, ts in rec.it_history(it))
        childs.append(child)
    return childs


def resources_info(core: GovernorCore) -> Dict[str, Any]:
    total = sum(p.resources.total_cores for p in core.partitions.values())
    used = sum(p.used_cores for p in core.partitions.values())
    nodes = sum(len(p.resources.nodes) for p in core.partitions.values())
    out: Dict[str, Any] = {"total_nodes": nodes, "total_cores": total, "used_cores": used,
                           "free_cores": total - used}
    if core.router is not None:  # governor mode: each partition, and its routing counters
        stats = {s["name"]: s for s in core.router.stats()}
        out["partitions"] = [dict(stats.get(p.name, {}), name=p.name, total_cores=p.resources.total_cores,
                                  used_cores=p.used_cores, nodes=[n.name for n in p.resources.nodes])
                             for p in core.partitions.values()]
        out["lost_partitions"] = dict(core.router.gone)
    return out


def system_status(core: GovernorCore, now: float) -> Dict[str, Any]:
    counts = core.registry.counts()
    return {
        "System": {
            "Uptime": str(timedelta(seconds=int(now - core.started))),
            "Host": socket.gethostname(),
            "Started": fmt_time(core.started),
            "Zmqaddress": core.cfg.address,
            "Pubaddress": core.cfg.pub_address,
        },
        "Resources": resources_info(core),
        "JobStats": {
            "TotalJobs": len(core.registry),
            "InScheduleJobs": counts[JobState.QUEUED] + counts[JobState.SCHEDULED],
            "ExecutingJobs": counts[JobState.EXECUTING],
            "FailedJobs": counts[JobState.FAILED] + counts[JobState.OMITTED],
            "FinishedJobs": counts[JobState.SUCCEED] + counts[JobState.CANCELED],
        },
    }
