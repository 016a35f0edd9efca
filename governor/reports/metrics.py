"""The figures of ``hpilot report``: each function returns a plain dict (``--json``
prints it as is) and :func:`render` turns one into the aligned text people read.

Definitions follow QCG-PilotJob's ``qcg-pm-report`` (manual ch. 14) where it has
one; the choices it leaves open are written next to the code that makes them.
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.reports.rundata import RunData, Task, fmt_time


def _r(x: Optional[float], nd: int = 6) -> Optional[float]:
    return None if x is None else round(x, nd)


def _span(run: RunData) -> Optional[float]:
    if run.started is None or run.finished is None:
        return None
    return max(0.0, run.finished - run.started)


def stats(run: RunData) -> Dict[str, Any]:
    """The run as a whole.  Init overhead: service start -> first task start; finish
    overhead: last task end -> service end (the wrapper's times when present)."""
    fs = run.final_status or {}
    states: Dict[str, int] = {}
    for j in run.jobs.values():
        states[j.state] = states.get(j.state, 0) + 1
    if not states and fs.get("jobs"):
        states = dict(fs["jobs"])
    total_jobs = fs.get("total_jobs", sum(states.values()))
    its = fs.get("iterations") or {}
    begins = [t.begin for t in run.tasks if t.begin is not None]
    ends = [t.finish for t in run.tasks if t.finish is not None]
    if not begins:  # no per-task records: the jobs' EXECUTING and end times
        begins = [b for j in run.jobs.values() if (b := j.time_of("EXECUTING")) is not None]
        ends = [e for j in run.jobs.values() if j.time_of("EXECUTING") is not None and (e := j.finished)]
    runtime = _span(run)
    init = (min(begins) - run.started) if begins and run.started is not None else None
    fin = (run.finished - max(ends)) if ends and run.finished is not None else None
    total = init + fin if init is not None and fin is not None else None
    cores = run.total_cores or None
    return {
        "run_dir": run.path,
        "total_jobs": total_jobs,
        "failed_jobs": states.get("FAILED", 0),
        "job_states": states,
        "total_tasks": its.get("total", len(run.tasks) if run.task_source == "rtstats" else None),
        "failed_tasks": its.get("failed", sum(1 for t in run.tasks if t.exit_code not in (0, None))
                                if run.task_source == "rtstats" else None),
        # honest counts (final_status of hpilot >= issue #15; older runs have only total/succeeded/failed)
        "task_counts": {k: v for k, v in its.items() if k != "total"} or None,
        "total_cores": cores,
        "total_nodes": len(run.nodes) or None,
        "service_started": fmt_time(run.started),
        "service_finished": fmt_time(run.finished),
        "service_runtime_s": _r(runtime, 3),
        "init_overhead_s": _r(init, 3),
        "finish_overhead_s": _r(fin, 3),
        "total_overhead_s": _r(total, 3),
        "overhead_ratio_pct": _r(100.0 * total / runtime, 2) if total is not None and runtime else None,
        "overhead_core_hours": _r(total * cores / 3600.0, 4) if total is not None and cores else None,
        "timing_source": "wrapper" if run.has_wrapper else run.task_source if run.tasks else "jobs.report",
    }


def _dist(values: List[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"total": None, "mean": None, "median": None, "p95": None, "max": None}
    s = sorted(values)
    return {"total": _r(sum(s)), "mean": _r(sum(s) / len(s)), "median": _r(statistics.median(s)),
            "p95": _r(s[min(len(s) - 1, int(0.95 * len(s)))]), "max": _r(s[-1])}


def _start_overhead(t: Task) -> Optional[float]:
    if t.start_mono is not None and t.spawn_mono is not None:
        return t.start_mono - t.spawn_mono  # one node's monotonic clock: exact
    return None if t.start is None or t.spawn is None else t.start - t.spawn


def _finish_overhead(t: Task) -> Optional[float]:
    if t.end_mono is not None and t.stop_mono is not None:
        return t.end_mono - t.stop_mono
    return None if t.end is None or t.stop is None else t.end - t.stop


def launch_stats(run: RunData) -> Dict[str, Any]:
    """Start overhead: the launcher about to spawn -> the wrapper starting the task;
    finish overhead: the task's end seen by the wrapper -> seen by the launcher."""
    run.require("launch-stats", run.has_wrapper and run.has_launch,
                "needs the wrapper's and the launcher's records (rtstats/): run with --enable-rt-stats. "
                "Still available: stats, jobs, rusage, efficiency, gantt")
    both = [t for t in run.tasks if t.wrapped and t.launched]
    starts = [x for t in both if (x := _start_overhead(t)) is not None]
    fins = [x for t in both if (x := _finish_overhead(t)) is not None]
    real = [t.stop - t.start for t in both if t.stop is not None and t.start is not None]
    seen = [t.end - t.spawn for t in both if t.end is not None and t.spawn is not None]
    s, f = _dist(starts), _dist(fins)
    avg_real = sum(real) / len(real) if real else None
    avg_total = (s["mean"] or 0.0) + (f["mean"] or 0.0) if both else None
    return {
        "start_overhead_s": s,
        "finish_overhead_s": f,
        "total_start_and_finish_overhead_s": _r((s["total"] or 0.0) + (f["total"] or 0.0)),
        "average_job_total_overhead_s": _r(avg_total),
        "average_real_run_time_s": _r(avg_real),
        "average_hpilot_run_time_s": _r(sum(seen) / len(seen)) if seen else None,
        "overhead_per_runtime_pct": _r(100.0 * avg_total / avg_real, 2) if avg_total is not None and avg_real else None,
        "tasks": len(both),
        "tasks_without_wrapper_record": sum(1 for t in run.tasks if t.launched and not t.wrapped),
    }


def _busy_by_core(run: RunData) -> Dict[Tuple[str, int], List[Tuple[float, float]]]:
    busy: Dict[Tuple[str, int], List[Tuple[float, float]]] = {}
    for t in run.tasks:
        b, e = t.begin, t.finish
        if b is None or e is None:
            continue
        for node, rows in t.lanes.items():
            for r in rows:
                busy.setdefault((node, r), []).append((b, e))
    return busy


def _need_tasks(run: RunData, what: str) -> None:
    run.require(what, bool(run.tasks), "no per-task records (no rtstats/ and no job with an allocation in "
                "jobs.report); run with --enable-rt-stats. Still available: stats, jobs")


def rusage(run: RunData, details: bool = False) -> Dict[str, Any]:
    """Core utilisation: a core's busy time (tasks running on it) over the service's
    run time, averaged over the cores that ran anything; plus the tasks' own CPU
    time and memory from the wrapper's rusage."""
    _need_tasks(run, "rusage")
    span = _span(run)
    run.require("rusage", bool(span), "the service's start and finish are unknown (no final_status, no service.log)")
    assert span is not None
    busy = _busy_by_core(run)
    per = {k: sum(e - b for b, e in v) for k, v in busy.items()}
    util = [100.0 * v / span for v in per.values()]
    out: Dict[str, Any] = {
        "used_cores": len(per),
        "total_cores": run.total_cores,
        "average_core_utilization_pct": _r(sum(util) / len(util), 2) if util else None,
        "service_runtime_s": _r(span, 3),
    }
    wrapped = [t for t in run.tasks if t.utime is not None]
    if wrapped:
        out["cpu_user_s"] = _r(sum(t.utime or 0.0 for t in wrapped))
        out["cpu_system_s"] = _r(sum(t.stime or 0.0 for t in wrapped))
        out["max_rss_kb"] = max(t.maxrss_kb or 0 for t in wrapped)
    if details:
        nodes: Dict[str, List[Dict[str, Any]]] = {}
        for name, cores in run.nodes:
            rows = []
            for i, core in enumerate(cores):
                used = per.get((name, i), 0.0)
                rows.append({"core": core, "utilization_pct": _r(100.0 * used / span, 2),
                             "unused_s": _r(span - used, 4)})
            nodes[name] = rows
        out["nodes"] = nodes
    return out


def efficiency(run: RunData) -> Dict[str, Any]:
    """Busy time over each used core's active window (its first task's start to its
    last task's end): idle time before a core's first task and after its last one is
    the scheduling plan's (nothing left to run there), not the pilot's overhead, so
    it is left out; gaps between tasks on a core count against it."""
    _need_tasks(run, "efficiency")
    busy = _busy_by_core(run)
    effs = []
    for spans in busy.values():
        window = max(e for _, e in spans) - min(b for b, _ in spans)
        used = sum(e - b for b, e in spans)
        effs.append(100.0 * used / window if window > 0 else 100.0)
    return {"used_cores": len(busy), "average_core_efficiency_pct": _r(sum(effs) / len(effs), 2) if effs else None}


def jobs_listing(run: RunData) -> Dict[str, Any]:
    run.require("jobs", bool(run.jobs), "jobs.report is missing or empty. Still available: stats"
                + (", gantt, rusage" if run.tasks else ""))
    rows = []
    for j in run.jobs.values():
        b, e = j.time_of("EXECUTING"), j.finished
        rows.append({"name": j.name, "state": j.state, "started": fmt_time(b), "finished": fmt_time(e),
                     "runtime_s": _r(e - b, 6) if b is not None and e is not None else None,
                     "allocation": j.allocation, "exit_code": j.exit_code, "iterations": j.iterations,
                     "counts": j.counts, "messages": j.messages})
    return {"jobs": rows}


def tasks_listing(run: RunData) -> Dict[str, Any]:
    _need_tasks(run, "text")
    rows = []
    for t in run.tasks:
        rows.append({"task": t.task_id, "nodes": ",".join(f"{n}[{':'.join(map(str, t.lanes.get(n, [])))}]"
                                                          for n, _ in t.placement),
                     "cores": t.ncores, "start": fmt_time(t.begin), "stop": fmt_time(t.finish),
                     "runtime_s": _r(t.finish - t.begin) if t.begin is not None and t.finish is not None else None,
                     "exit_code": t.exit_code, "reason": t.reason,
                     "start_overhead_s": _r(_start_overhead(t)), "finish_overhead_s": _r(_finish_overhead(t))})
    return {"source": run.task_source, "tasks": rows}


# ---- text ----


def render(data: Dict[str, Any], width: int = 34) -> str:
    """Nested dicts as indented ``key: value`` lines (what a person reads)."""
    lines: List[str] = []

    def walk(d: Dict[str, Any], indent: int) -> None:
        for k, v in d.items():
            label = k.replace("_", " ")
            if isinstance(v, dict):
                lines.append(f"{' ' * indent}{label}:")
                walk(v, indent + 4)
            else:
                shown = "-" if v is None else v
                lines.append(f"{' ' * indent}{label:>{max(1, width - indent)}}: {shown}")

    walk(data, 0)
    return "\n".join(lines)


def render_rusage(data: Dict[str, Any]) -> str:
    head = {k: v for k, v in data.items() if k != "nodes"}
    lines = [render(head)]
    for node, rows in (data.get("nodes") or {}).items():
        lines.append(node)
        for r in rows:
            lines.append(f" {r['core']:<4}: {r['utilization_pct']:5.1f}%, unused {r['unused_s']:.4f} s")
    return "\n".join(lines)


def render_table(rows: List[Dict[str, Any]], cols: List[str]) -> str:
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in out)
