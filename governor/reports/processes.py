"""``hpilot processes RUNDIR tree|apps JOB``: the process samples of ``--enable-proc-stats``.

A sample line carries a process's static facts (parent, name, command line,
creation time, affinity) the first time it is seen and its CPU times and memory
every time; here the lines are folded into one record per process (the last
sample wins for what changes, the peak is kept for memory).  ``JOB`` is a task id
(``job`` or ``job:iteration``) or a job name, which takes all its iterations.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.reports.rundata import MissingData, RunData, _read_jsonl, fmt_time


@dataclass
class Proc:
    pid: int
    task: str
    host: str
    ppid: Optional[int] = None
    name: str = "?"
    cmdline: List[str] = field(default_factory=list)
    created: Optional[float] = None
    cpus: Optional[List[int]] = None
    parent_name: Optional[str] = None
    cpu_times: Optional[List[float]] = None
    memory: Optional[Dict[str, int]] = None
    mem_percent: Optional[float] = None
    peak_rss: int = 0
    first_seen: Optional[float] = None
    last_seen: Optional[float] = None
    samples: int = 0


def load_procs(run: RunData) -> Dict[str, List[Proc]]:
    """Processes by task id."""
    paths = sorted(glob.glob(os.path.join(run.path, "procstats", "procs-*.jsonl")))
    if not paths:
        raise MissingData("no process statistics in this run (procstats/ is missing): run with "
                          "--enable-proc-stats. Still available: hpilot report RUNDIR stats|jobs|...")
    procs: Dict[Tuple[str, int, str], Proc] = {}
    for path in paths:
        for r in _read_jsonl(path, run.notes, "process sample"):
            try:
                key = (str(r["host"]), int(r["pid"]), str(r["task"]))
            except (KeyError, TypeError, ValueError):
                continue
            p = procs.get(key)
            if p is None:
                p = procs[key] = Proc(key[1], key[2], key[0])
            if "ppid" in r:
                p.ppid, p.name, p.cmdline = r.get("ppid"), str(r.get("name", "?")), list(r.get("cmdline") or [])
                p.created, p.cpus, p.parent_name = r.get("created"), r.get("cpus"), r.get("parent_name")
            p.cpu_times = r.get("cpu_times", p.cpu_times)
            p.memory = r.get("memory", p.memory)
            p.mem_percent = r.get("mem_percent", p.mem_percent)
            p.peak_rss = max(p.peak_rss, int((p.memory or {}).get("rss", 0)))
            t = r.get("t")
            p.first_seen = t if p.first_seen is None else p.first_seen
            p.last_seen = t
            p.samples += 1
    out: Dict[str, List[Proc]] = {}
    for p in procs.values():
        out.setdefault(p.task, []).append(p)
    return out


def select(by_task: Dict[str, List[Proc]], job: str) -> Dict[str, List[Proc]]:
    if job in by_task:
        return {job: by_task[job]}
    chosen = {t: ps for t, ps in by_task.items() if t.rpartition(":")[0] == job}
    if not chosen:
        known = sorted({_it_key(t)[0] for t in by_task})
        shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        raise MissingData(f"no process samples for '{job}' (a task id like job:0, or a job name); "
                          f"jobs with samples: {shown or 'none'} (a task shorter than --proc-stats-interval "
                          "may not have been sampled)")
    return dict(sorted(chosen.items(), key=lambda kv: _it_key(kv[0])))


def _it_key(task: str) -> Tuple[str, int]:
    name, _, it = task.rpartition(":")
    return (name, int(it)) if name and it.isdigit() else (task, -1)


def _roots(procs: List[Proc]) -> List[Proc]:
    pids = {p.pid for p in procs}
    return sorted((p for p in procs if p.ppid not in pids), key=lambda p: (p.created or 0.0, p.pid))


def _is_wrapper(p: Proc) -> bool:
    return p.name.startswith("hpilot-wrapper") or (bool(p.cmdline) and "hpilot-wrapper" in
                                                    os.path.basename(p.cmdline[0]))


def tree(by_task: Dict[str, List[Proc]]) -> Dict[str, Any]:
    out = []
    for task, procs in by_task.items():
        kids: Dict[Optional[int], List[Proc]] = {}
        for p in procs:
            kids.setdefault(p.ppid, []).append(p)
        roots = _roots(procs)
        t0 = roots[0].created if roots and roots[0].created is not None else None

        apps = _apps(procs)
        out.append({"task": task, "leader_pid": roots[0].pid if roots else None,
                    "application": apps[0].name if apps else None,
                    "tree": [_node(r, kids, t0) for r in roots]})
    return {"tasks": out}


def _node(p: Proc, kids: Dict[Optional[int], List[Proc]], t0: Optional[float]) -> Dict[str, Any]:
    after = p.created - t0 if p.created is not None and t0 is not None else None
    children = sorted(kids.get(p.pid, []), key=lambda c: (c.created or 0.0, c.pid))
    return {"pid": p.pid, "name": p.name, "cmdline": p.cmdline, "host": p.host,
            "created": fmt_time(p.created), "after_s": None if after is None else round(after, 2),
            "children": [_node(c, kids, t0) for c in children if c is not p]}


def render_tree(data: Dict[str, Any]) -> str:
    lines: List[str] = []

    def walk(n: Dict[str, Any], depth: int, first: bool) -> None:
        when = f"created {n['created']}" if first else f"after {n['after_s']} secs"
        lines.append(f"{'  ' * (depth + 1)}--{n['pid']}: {n['name']} ({' '.join(n['cmdline'])}) "
                     f"node({n['host']}) {when}")
        for c in n["children"]:
            walk(c, depth + 1, False)

    for t in data["tasks"]:
        lines.append(f"job {t['task']}, job process id {t['leader_pid']}, application name {t['application']}")
        for r in t["tree"]:
            walk(r, 0, True)
    return "\n".join(lines)


def _apps(procs: List[Proc]) -> List[Proc]:
    """The application processes: the leaves of the tree (what the shells, wrappers
    and launchers above them exist to start)."""
    parents = {p.ppid for p in procs}
    leaves = [p for p in procs if p.pid not in parents and not _is_wrapper(p)]
    return sorted(leaves, key=lambda p: (p.created or 0.0, p.pid))


def apps(by_task: Dict[str, List[Proc]]) -> Dict[str, Any]:
    out = []
    for task, procs in by_task.items():
        names = {p.pid: p.name for p in procs}
        for p in _apps(procs):
            out.append({"task": task, "pid": p.pid, "name": p.name, "host": p.host, "created": fmt_time(p.created),
                        "cmdline": p.cmdline, "parent": f"{p.ppid}:{names.get(p.ppid or -1, p.parent_name)}",
                        "cpu_affinity": p.cpus, "cpu_times": p.cpu_times, "memory_info": p.memory,
                        "memory_percent": p.mem_percent, "peak_rss": p.peak_rss, "samples": p.samples})
    return {"found": len(out), "processes": out}


def render_apps(data: Dict[str, Any]) -> str:
    lines = [f"found {data['found']} target processes"]
    for p in data["processes"]:
        mem = list((p["memory_info"] or {}).values())
        lines += [f"{p['pid']}:{p['name']} (task {p['task']}, node {p['host']})",
                  f"    created: {p['created']}",
                  f"    cmdline: {' '.join(p['cmdline'])}",
                  f"    parent: {p['parent']}",
                  f"    cpu affinity: {p['cpu_affinity']}",
                  f"    cpu times: {p['cpu_times']}",
                  f"    memory info: {mem}",
                  f"    memory percent: {p['memory_percent']}",
                  f"    peak rss: {p['peak_rss']} ({p['samples']} sample(s))"]
    return "\n".join(lines)
