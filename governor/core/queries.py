"""Answers to the read-only requests, in QCG-PilotJob's response shapes.

``listJobs``, ``jobStatus``, ``jobInfo`` (with ``withChilds``), ``resourcesInfo``
and ``status``.  They read the registry and never change it.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hpilot.governor.core import qcg
from hpilot.governor.core.qcg import ERROR, OK
from hpilot.governor.core.registry import JobRecord, fmt_time
from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.governor import GovernorCore

MAX_CHILDS = 100_000  # withChilds on a million iterations would be a 100 MB answer


def answer(core: GovernorCore, payload: Dict[str, Any], now: float) -> Dict[str, Any]:
    kind = payload["request"]
    if kind == "listJobs":
        return list_jobs(core)
    if kind == "resourcesInfo":
        return {"code": OK, "data": resources_info(core)}
    if kind == "status":
        options = payload.get("options")
        if isinstance(options, dict) and options.get("allJobsFinished"):
            return {"code": OK, "data": {"AllJobsFinished": core.active == 0}}
        return {"code": OK, "data": system_status(core, now)}
    names, err = job_names(payload)
    if err:
        return err
    params = payload.get("params")
    with_childs = bool(params.get("withChilds") if isinstance(params, dict) else payload.get("withChilds"))
    jobs: Dict[str, Any] = {}
    missing: List[str] = []
    for name in names:
        job, it = qcg.split_name(name)
        rec = core.registry.get(job)
        why = _not_found(rec, job, it)
        if why is not None or rec is None:
            why = why or qcg.unknown_job(name)
            jobs[name] = {"status": ERROR, "message": why}
            if rec is None or rec.task.iterative:  # QCG-PilotJob fails the whole request for these
                missing.append(why)
        elif kind == "jobStatus":
            jobs[name] = {"status": OK, "data": job_status(rec, name, it)}
        else:
            jobs[name] = {"status": OK, "data": job_info(rec, with_childs, name, it)}
    if missing:
        # QCG-PilotJob answers the whole request with an error (its client raises); the
        # per-job entries stay in data for hpilot's own client, which reports each name
        return qcg.error(missing[0] + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                         {"jobs": jobs})
    return {"code": OK, "data": {"jobs": jobs}}


def _not_found(rec: Optional[JobRecord], job: str, it: Optional[int]) -> Optional[str]:
    if rec is None:
        return qcg.unknown_job(job if it is None else f"{job}:{it}")
    if it is not None and (not rec.task.iterative or it not in rec.iterations()):
        return qcg.unknown_iteration(job, it, rec.iterations() if rec.task.iterative else None)
    return None


def job_names(payload: Dict[str, Any]) -> Tuple[List[str], Optional[Dict[str, Any]]]:
    """The request's ``jobNames`` (a name, or a list; a name given twice counts once), or the error answer."""
    names = payload.get("jobNames")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        kind = str(payload.get("request"))
        start = qcg.invalid(qcg.MISSING_NAMES.get(kind, f"Wrong {kind} request - missing job names"))
        return [], qcg.error(f"{start} ('jobNames' must be a non-empty list of job names)")
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


def job_status(rec: JobRecord, name: Optional[str] = None, it: Optional[int] = None) -> Dict[str, Any]:
    """``name`` as the client asked (``job`` or ``job:it``); ``it``: that iteration's state."""
    state = rec.state if it is None else rec.it_state(it)
    out: Dict[str, Any] = {"jobName": name or rec.name, "status": state.value}
    if rec.messages:
        out["messages"] = "\n".join(rec.messages)
    return out


def _iteration_counts(rec: JobRecord) -> Dict[str, int]:
    """QCG-PilotJob's shape: ``failed`` is every iteration that did not succeed (the
    honest split is in hpilot's ``overview`` answer, counts.py)."""
    c = rec.counts
    return {
        "start": rec.task.it_start,
        "stop": rec.task.it_start + rec.total,
        "total": rec.total,
        "finished": rec.finished_count,
        "failed": c[JobState.FAILED] + c[JobState.CANCELED] + c[JobState.OMITTED] + c[JobState.INTERRUPTED],
    }


def _pname(rec: JobRecord) -> str:
    """The program's name, as QCG-PilotJob gives it: ``bash`` for a script."""
    ex = rec.task.execution
    if ex.exec is None:
        return "bash"
    return posixpath.basename(ex.exec.fill({}))


def _runtime(rec: JobRecord, run) -> Dict[str, Any]:
    """QCG-PilotJob's runtime keys (``pid`` a string, ``pname``), then hpilot's own."""
    out: Dict[str, Any] = {"allocation": run.allocation, "wd": run.wd}
    if run.finished is not None:
        out["rtime"] = str(timedelta(seconds=run.finished - run.started))
        out["exit_code"] = str(run.exit_code)
        out["pid"] = str(run.pid if run.pid is not None else -1)
        out["pname"] = _pname(rec)
    elif run.pid is not None:
        out["pid"] = str(run.pid)
    if run.reason:
        out["reason"] = run.reason
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


def job_info(rec: JobRecord, with_childs: bool, name: Optional[str] = None,
             it: Optional[int] = None) -> Dict[str, Any]:
    out = job_status(rec, name, it)
    if it is None and rec.failures:
        out["failures"] = failures(rec)
    if it is not None or not rec.task.iterative:
        run = rec.runs.get(0 if it is None else it)
        if run is not None:
            out["runtime"] = _runtime(rec, run)
        out["history"] = rec.history_text() if it is None else _it_history(rec, it)
        return out
    out["history"] = rec.history_text()
    out["iterations"] = _iteration_counts(rec)
    rt = rec.runtime
    if rt is not None:
        out["runtime"] = {"rtime": str(timedelta(seconds=rt))}
    if with_childs:
        out["childs"] = _childs(rec)
    return out


def _it_history(rec: JobRecord, it: int) -> str:
    return "".join(f"\n{fmt_time(ts)}: {st.value}" for st, ts in rec.it_history(it))


def _childs(rec: JobRecord) -> List[Dict[str, Any]]:
    childs = []
    for it in rec.iterations()[:MAX_CHILDS]:
        child: Dict[str, Any] = {"iteration": it, "state": rec.it_state(it).value}
        run = rec.runs.get(it)
        if run is not None:
            child["runtime"] = _runtime(rec, run)
        child["history"] = _it_history(rec, it)
        childs.append(child)
    return childs


def resources_info(core: GovernorCore) -> Dict[str, Any]:
    total = sum(p.resources.total_cores for p in core.partitions.values())
    used = sum(p.used_cores for p in core.partitions.values())
    nodes = sum(len(p.resources.nodes) for p in core.partitions.values())
    down = {node: why for p in core.partitions.values() for node, why in p.down.items()}
    down_cores = sum(n.total_cores for p in core.partitions.values() for n in p.resources.nodes if n.name in p.down)
    out: Dict[str, Any] = {"total_nodes": nodes, "total_cores": total, "used_cores": used,
                           "free_cores": max(0, total - used - down_cores)}
    if down:  # hpilot's: nodes out of service, and why (their agent died, tasks cannot start there)
        out["down_nodes"] = down
    if core.router.gone or any(not p.local for p in core.partitions.values()):  # each partition, and its counters
        stats = {s["name"]: s for s in core.router.stats()}
        out["partitions"] = [dict(stats.get(p.name, {}), name=p.name, total_cores=p.resources.total_cores,
                                  used_cores=p.used_cores, nodes=[n.name for n in p.resources.nodes])
                             for p in core.partitions.values()]
        out["lost_partitions"] = dict(core.router.gone)
    return out


def system_status(core: GovernorCore, now: float) -> Dict[str, Any]:
    """QCG-PilotJob's ``status`` answer (its keys, its counting of states), plus hpilot's
    ``Pubaddress`` and the resources' own keys."""
    counts = core.registry.counts()
    its: Counter = Counter()
    for rec in core.registry:
        its.update(rec.counts if rec.task.iterative else {rec.state: 1})
    res = resources_info(core)
    resources = {"TotalNodes": res["total_nodes"], "TotalCores": res["total_cores"],
                 "UsedCores": res["used_cores"], "FreeCores": res["free_cores"], **res}
    return {
        "System": {
            "InstanceId": core.cfg.instance_id,
            "Started": fmt_time(core.started),
            "Generated": fmt_time(now),
            "Uptime": str(timedelta(seconds=max(0.0, now - core.started))),
            "Zmqaddress": core.cfg.address,
            "Ifaces": ["ZMQ"] if core.cfg.address else [],
            "StatusPublisher": core.cfg.pub_address,
            "Pubaddress": core.cfg.pub_address,
            "Host": core.host.hostname(),
            "Wd": core.cfg.root_wd,
            **core.host.process_facts(),
        },
        "Resources": resources,
        "JobStats": _stats(counts, len(core.registry), "Jobs"),
        "IterationStats": _stats(its, sum(its.values()), "Iterations"),
    }


def _stats(c: Counter, total: int, what: str) -> Dict[str, int]:
    return {
        f"Total{what}": total,
        f"InSchedule{what}": c[JobState.QUEUED] + c[JobState.SCHEDULED] + c[JobState.INTERRUPTED],
        f"Failed{what}": c[JobState.FAILED] + c[JobState.OMITTED],
        f"Finished{what}": c[JobState.SUCCEED] + c[JobState.CANCELED],
        f"Executing{what}": c[JobState.EXECUTING],
    }
