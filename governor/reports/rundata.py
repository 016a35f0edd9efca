"""Loading a run directory into plain records, and saying what is missing.

A run directory may be complete, cut short (the service was killed: no
``final_status``, a half-written last line), from an older hpilot (no ``rtstats/``,
fewer fields), or made without ``--enable-rt-stats``.  Loading never fails on those:
each gap becomes a line in :attr:`RunData.notes` saying what is missing and what can
still be shown, and each command checks what it needs with :meth:`RunData.require`.
Only a directory that is not a run at all raises :class:`RunDirError`.
"""

from __future__ import annotations

import glob
import heapq
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

AUX = ".hpilot"
RUN_FILES = ("service.log", "jobs.report", "final_status")
FORMAT_VERSION = 1
DONE_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


class RunDirError(Exception):
    """Not usable at all (missing, not a run directory); the message says why."""


class MissingData(Exception):
    """A command needs data this run does not have; the message says what can still be shown."""


@dataclass
class Job:
    name: str
    state: str
    history: List[Tuple[str, float]] = field(default_factory=list)
    allocation: Optional[str] = None
    exit_code: Optional[int] = None
    iterations: Optional[Dict[str, Any]] = None
    messages: List[str] = field(default_factory=list)
    counts: Optional[Dict[str, int]] = None  # succeeded, failed, canceled, ... (older runs: None)

    def time_of(self, state: str) -> Optional[float]:
        for st, ts in self.history:
            if st == state:
                return ts
        return None

    @property
    def finished(self) -> Optional[float]:
        for st, ts in reversed(self.history):
            if st in DONE_STATES:
                return ts
        return None


@dataclass
class Task:
    """One iteration as it ran; times are epoch seconds (``*_mono``: the node's monotonic clock)."""

    task_id: str
    placement: List[Tuple[str, int]] = field(default_factory=list)  # (node, cores) per node
    cpus: Optional[List[int]] = None  # real core ids on the first node, when bound
    spawn: Optional[float] = None  # the launcher, just before it started the wrapper
    end: Optional[float] = None  # the launcher saw the exit
    spawn_mono: Optional[float] = None
    end_mono: Optional[float] = None
    start: Optional[float] = None  # the wrapper, just before it started the task
    stop: Optional[float] = None  # the wrapper saw the task end
    start_mono: Optional[float] = None
    stop_mono: Optional[float] = None
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    signal: int = 0
    utime: Optional[float] = None
    stime: Optional[float] = None
    maxrss_kb: Optional[int] = None
    host: Optional[str] = None
    lanes: Dict[str, List[int]] = field(default_factory=dict)  # node -> row indices (filled by assign_lanes)

    @property
    def job(self) -> str:
        name, _, it = self.task_id.rpartition(":")
        return name if name and it.isdigit() else self.task_id

    @property
    def begin(self) -> Optional[float]:
        return self.start if self.start is not None else self.spawn

    @property
    def finish(self) -> Optional[float]:
        return self.stop if self.stop is not None else self.end

    @property
    def ncores(self) -> int:
        return sum(n for _, n in self.placement) or 1

    @property
    def wrapped(self) -> bool:
        return self.start is not None

    @property
    def launched(self) -> bool:
        return self.spawn is not None


@dataclass
class Spans:
    """The journal's tasks as columns: what the binned plots read (``cores``, ``throughput``, the
    density view), without a :class:`Task` object each (100,000 of them cost a second)."""

    task_id: List[str] = field(default_factory=list)
    job: List[str] = field(default_factory=list)
    begin: List[float] = field(default_factory=list)
    finish: List[float] = field(default_factory=list)
    placement: List[List[Tuple[str, int]]] = field(default_factory=list)
    cpus: List[Optional[List[int]]] = field(default_factory=list)
    exit_code: List[Optional[int]] = field(default_factory=list)
    reason: List[Optional[str]] = field(default_factory=list)


@dataclass
class RunData:
    path: str
    final_status: Optional[Dict[str, Any]] = None
    jobs: Dict[str, Job] = field(default_factory=dict)
    tasks: List[Task] = field(default_factory=list)
    started: Optional[float] = None
    finished: Optional[float] = None
    nodes: List[Tuple[str, List[int]]] = field(default_factory=list)  # name, core ids
    notes: List[str] = field(default_factory=list)
    task_source: str = "none"  # rtstats | journal | jobs.report | none
    partitions: Dict[str, List[str]] = field(default_factory=dict)  # governor mode: partition -> its nodes
    has_wrapper: bool = False
    has_launch: bool = False
    lanes_done: bool = False  # Task.lanes filled (assign_lanes): only the per-core views need them
    spans: Optional[Spans] = None  # the journal's tasks as columns (tasks then made on demand: ensure_tasks)

    @property
    def total_cores(self) -> int:
        return sum(len(c) for _, c in self.nodes)

    @property
    def task_count(self) -> int:
        return len(self.tasks) if self.tasks or self.spans is None else len(self.spans.begin)

    def intervals(self) -> Iterator[Tuple[str, Optional[float], Optional[float], List[Tuple[str, int]]]]:
        """(job, begin, finish, placement) of every task, from the columns when there are some."""
        if self.spans is not None and not self.tasks:
            s = self.spans
            return zip(s.job, s.begin, s.finish, s.placement)
        return ((t.job, t.begin, t.finish, t.placement) for t in self.tasks)

    def require(self, what: str, ok: bool, why: str) -> None:
        """Raise :class:`MissingData` for ``what`` unless ``ok``; ``why`` says what is missing."""
        if not ok:
            raise MissingData(f"{what}: {why}")


# ---- finding the run directory ----


def resolve(arg: str) -> str:
    """A run directory, or a working directory whose newest run (``.hpilot/latest``) is used."""
    path = os.path.abspath(arg)
    if not os.path.exists(path):
        raise RunDirError(f"{arg}: no such directory")
    if not os.path.isdir(path):
        raise RunDirError(f"{arg}: not a directory (give a run directory or the working directory of a run)")
    if any(os.path.exists(os.path.join(path, f)) for f in RUN_FILES):
        return path
    for aux in (os.path.join(path, AUX), path):
        latest = os.path.join(aux, "latest")
        if os.path.isdir(latest):
            return os.path.realpath(latest)
        runs = sorted(d for d in glob.glob(os.path.join(aux, "*")) if os.path.isdir(d)
                      and any(os.path.exists(os.path.join(d, f)) for f in RUN_FILES))
        if runs:
            return runs[-1]
    if glob.glob(os.path.join(path, ".qcgpjm-service-*")):
        raise RunDirError(f"{arg}: a QCG-PilotJob working directory, not an hpilot one "
                          "(use qcg-pm-report for it, or rerun the requests with hpilot)")
    raise RunDirError(f"{arg}: not an hpilot run directory (no service.log, jobs.report or final_status, "
                      f"and no {AUX}/ with runs inside)")


# ---- parsing ----


def parse_time(text: str) -> Optional[float]:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` (jobs.report) or ``... HH:MM:SS,mmm`` (service.log), local time."""
    text = text.strip().replace(",", ".")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return None


def fmt_time(ts: Optional[float]) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")


_HEADER = re.compile(r"^(\S.*) \(([A-Z_]+)\)$")
_HIST = re.compile(r"([A-Z_]+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)")
_ITERS = re.compile(r"iterations: (\d+) \((\d+)\.\.(-?\d+)\), (\d+) finished, (\d+) not succeeded")


def _job_from_json(e: Dict[str, Any]) -> Job:
    hist = [(h["state"], t) for h in e.get("history", []) if (t := parse_time(h.get("time", ""))) is not None]
    rt = e.get("runtime") or {}
    code = rt.get("exit_code")
    return Job(name=str(e["name"]), state=str(e.get("state", "?")), history=hist,
               allocation=rt.get("allocation"), exit_code=int(code) if code not in (None, "") else None,
               iterations=e.get("iterations"), messages=list(e.get("messages", [])), counts=e.get("counts"))


def _jobs_from_text(lines: List[str]) -> List[Job]:
    jobs: List[Job] = []
    for line in lines:
        m = _HEADER.match(line.rstrip("\n"))
        if m:
            jobs.append(Job(m.group(1), m.group(2)))
            continue
        if not jobs or not line.startswith("    "):
            continue
        j, body = jobs[-1], line.strip()
        if body.startswith("history:"):
            j.history = [(st, t) for st, ts in _HIST.findall(body) if (t := parse_time(ts)) is not None]
        elif body.startswith("allocation:"):
            j.allocation = body.split()[1]
        elif body.startswith("runtime:") and "exit code:" in body:
            j.exit_code = int(body.rsplit("exit code:", 1)[1].strip() or 0)
        elif body.startswith("iterations:"):
            mi = _ITERS.match(body)
            if mi:
                total, start, last, fin, failed = map(int, mi.groups())
                j.iterations = {"total": total, "start": start, "stop": last + 1, "finished": fin, "failed": failed}
        elif body.startswith("counts:"):
            j.counts = _counts_text(body[len("counts:"):])
        elif body.startswith("message:"):
            j.messages.append(body[len("message:"):].strip())
    return jobs


def _counts_text(text: str) -> Dict[str, int]:
    """``12 succeeded, 2 not started`` -> {"succeeded": 12, "not_started": 2}."""
    out: Dict[str, int] = {}
    for part in text.split(","):
        n, _, label = part.strip().partition(" ")
        if n.isdigit() and label:
            out[label.replace(" ", "_")] = int(n)
    return out


def _read_jsonl(path: str, notes: List[str], what: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(rec, dict):
                out.append(rec)
    if bad:
        notes.append(f"{os.path.basename(path)}: {bad} {what} line(s) cut short or unreadable "
                     "(the run was killed while writing?); skipped")
    return out


def _parse_allocation(text: str) -> List[Tuple[str, List[int]]]:
    """``n1[0:1],n2[4]`` -> [("n1", [0, 1]), ("n2", [4])]."""
    out = []
    for m in re.finditer(r"([^,\[\]]+)\[([0-9:,]*)\]", text):
        cores = [int(c) for c in re.split(r"[:,]", m.group(2)) if c.isdigit()]
        out.append((m.group(1), cores))
    return out


def _natural(name: str) -> List[Any]:
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"(\d+)", str(name))]


def _log_span(path: str) -> Tuple[Optional[float], Optional[float]]:
    first = last = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            t = parse_time(line[:23]) if len(line) >= 23 and line[:2].isdigit() else None
            if t is not None:
                first = t if first is None else first
                last = t
    return first, last


# ---- loading ----


def load(arg: str, lanes: bool = True, objects: bool = True) -> RunData:
    """The run in ``arg``; ``lanes``: also give each task its rows (cores), which the per-core
    views need and the binned ones (cores, throughput, the density view of many nodes) do not;
    ``objects`` False: the journal's tasks only as columns (:class:`Spans`), for those binned
    views (``ensure_tasks`` makes the objects later if needed)."""
    path = resolve(arg)
    run = RunData(path)
    notes = run.notes
    fs_path = os.path.join(path, "final_status")
    if os.path.exists(fs_path):
        try:
            with open(fs_path, encoding="utf-8") as f:
                run.final_status = json.load(f)
        except (ValueError, OSError) as e:
            notes.append(f"final_status: unreadable ({e}); start/finish taken from service.log")
    else:
        notes.append("final_status: missing (the run did not finish: killed, or still running); "
                     "service start/finish are taken from service.log, job counts from jobs.report")
    fs = run.final_status or {}
    run.started, run.finished = fs.get("started"), fs.get("finished")
    for n in (fs.get("resources") or {}).get("nodes", []):
        cores = n.get("cores")
        run.nodes.append((str(n.get("name")), list(cores) if isinstance(cores, list) else list(range(int(cores or 0)))))
    parts = fs.get("partitions")
    if isinstance(parts, dict):  # in name order (p1, p2, ..., p10), not the order they registered in
        run.partitions = {str(k): [str(n) for n in v] for k, v in sorted(parts.items(), key=lambda kv: _natural(kv[0]))
                          if isinstance(v, list)}
    if run.final_status is not None and not run.nodes:
        notes.append("final_status: no resources (older hpilot?): cores and nodes are taken from the tasks")

    log_path = os.path.join(path, "service.log")
    if os.path.exists(log_path):
        if run.started is None or run.finished is None:
            first, last = _log_span(log_path)
            run.started = run.started if run.started is not None else first
            run.finished = run.finished if run.finished is not None else last
    else:
        notes.append("service.log: missing")

    _load_jobs(run)
    _load_tasks(run, objects or lanes)
    if not run.nodes and run.task_count:
        per: Dict[str, int] = {}
        for _, _, _, placement in run.intervals():
            for node, n in placement:
                per[node] = max(per.get(node, 0), n)
        run.nodes = [(node, list(range(n))) for node, n in per.items()]
    if run.started is None and run.task_count:
        run.started = min((b for _, b, _, _ in run.intervals() if b is not None), default=None)
    if run.finished is None and run.task_count:
        run.finished = max((e for _, _, e, _ in run.intervals() if e is not None), default=None)
    if lanes:
        assign_lanes(run)
    return run


def _load_jobs(run: RunData) -> None:
    rp = os.path.join(run.path, (run.final_status or {}).get("report_file", "jobs.report"))
    if not os.path.exists(rp):
        run.notes.append("jobs.report: missing; job listings are not available")
        return
    with open(rp, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    if any(line.lstrip().startswith("{") for line in lines[:5]):
        bad = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                job = _job_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            run.jobs[job.name] = job
        if bad:
            run.notes.append(f"jobs.report: {bad} line(s) cut short or unreadable (the run was killed while "
                             "writing?); those jobs are left out")
    else:
        for job in _jobs_from_text(lines):
            run.jobs[job.name] = job


def _load_tasks(run: RunData, objects: bool = True) -> None:
    rt_dir = os.path.join(run.path, "rtstats")
    launch = [r for p in sorted(glob.glob(os.path.join(rt_dir, "launch-*.jsonl")))
              for r in _read_jsonl(p, run.notes, "launch")]
    wrapped = [r for p in sorted(glob.glob(os.path.join(rt_dir, "wrapper-*.jsonl")))
               for r in _read_jsonl(p, run.notes, "wrapper record")]
    newer = {int(r["v"]) for r in launch + wrapped if isinstance(r.get("v"), int) and r["v"] > FORMAT_VERSION}
    if newer:
        run.notes.append(f"rtstats: records of format {max(newer)} (a newer hpilot); this one reads format "
                         f"{FORMAT_VERSION} and shows the fields it knows")
    if not launch and not wrapped:
        if _tasks_from_journal(run, objects):
            run.notes.append("rtstats: no wrapper records (the run was made without --enable-rt-stats): per-task "
                             "times are the launcher's, from the journal; launch-stats and the wrapper's exact "
                             "times are not available")
            return
        run.notes.append("rtstats: no wrapper records (the run was made without --enable-rt-stats, or by an "
                         "older hpilot): per-task timings come from jobs.report, which has them only for "
                         "jobs without iterations; launch-stats and exact times are not available")
        _tasks_from_jobs(run)
        return
    run.task_source = "rtstats"
    run.has_launch, run.has_wrapper = bool(launch), bool(wrapped)
    tasks: Dict[str, Task] = {}
    for r in launch:
        t = tasks.setdefault(str(r.get("task")), Task(str(r.get("task"))))
        nodes = [n for n in str(r.get("nodes") or "").split(",") if n]
        per = [int(x) for x in str(r.get("per_node") or "").split(",") if x.isdigit()]
        if len(per) != len(nodes):
            per = [int(r.get("ncores") or 1)] + [0] * max(0, len(nodes) - 1)
        t.placement = list(zip(nodes, per))
        cpus = r.get("cpus")
        t.cpus = [int(c) for c in str(cpus).split(",") if c.strip().isdigit()] if cpus else None
        t.spawn, t.end = r.get("spawn"), r.get("end")
        t.spawn_mono, t.end_mono = r.get("spawn_mono"), r.get("end_mono")
        t.exit_code, t.reason = r.get("exit"), r.get("reason")
    for r in wrapped:
        t = tasks.setdefault(str(r.get("task")), Task(str(r.get("task"))))
        t.start, t.stop = r.get("start"), r.get("stop")
        t.start_mono, t.stop_mono = r.get("start_mono"), r.get("stop_mono")
        t.signal = int(r.get("signal") or 0)
        t.utime, t.stime, t.maxrss_kb = r.get("utime"), r.get("stime"), r.get("maxrss_kb")
        t.host = r.get("host")
        if t.exit_code is None:
            t.exit_code = r.get("exit")
        if not t.placement and t.host:
            t.placement = [(str(t.host), 1)]
    no_wrap = sum(1 for t in tasks.values() if t.launched and not t.wrapped)
    no_launch = sum(1 for t in tasks.values() if t.wrapped and not t.launched)
    if launch and not wrapped:
        run.notes.append("rtstats: launcher records but no wrapper records: exact start/stop times and "
                         "launch-stats are not available; the launcher's times are used")
    elif no_wrap:
        run.notes.append(f"rtstats: {no_wrap} task(s) without a wrapper record (killed with SIGKILL, or the "
                         "run was cut short); the launcher's times are used for them")
    if no_launch:
        run.notes.append(f"rtstats: {no_launch} task(s) without a launcher record (the run was cut short "
                         "before it was written); placement taken from the wrapper's host")
    run.tasks = sorted(tasks.values(), key=lambda t: (t.begin or 0.0, t.task_id))


def _tasks_from_journal(run: RunData, objects: bool = True) -> bool:
    """Every finished iteration from the journal (on by default): where it ran, when it started
    and ended as the launcher saw it, its exit.  The last record of a task wins (a re-run after a
    lost partition).  False when there is no journal, or nothing in it ran.

    Read for speed (a report of 100,000 tasks must come in seconds): only the ``I`` and submit
    records, split as bytes, into columns (:class:`Spans`; ``objects``: a :class:`Task` each
    too), each distinct allocation parsed once; a damaged record (its checksum) is skipped and
    counted, as a resume does."""
    from hpilot.governor.service.journal import _parse, unescape

    try:
        with open(os.path.join(run.path, "journal"), "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return False
    iterative: Dict[str, bool] = {}
    finished: Dict[Tuple[bytes, bytes], List[bytes]] = {}  # the last record of a task wins
    dropped = 0
    for line in lines:
        kind = line[:2]
        if kind == b"I ":  # one finished iteration
            p = line[11:].split(b"\t") if line[10:11] == b" " and _crc_ok(line) else []
            if len(p) == 9:
                finished[(p[0], p[1])] = p
            else:
                dropped += 1
        elif kind == b"J ":
            parsed = _parse(line)
            body = parsed[1] if parsed is not None else None
            if isinstance(body, dict) and body.get("t") == "submit":
                for job in body.get("jobs", []):
                    if isinstance(job, dict) and isinstance(job.get("name"), str):
                        iterative[job["name"]] = job.get("iteration") is not None
            elif isinstance(body, dict) and body.get("t") == "ok":  # a batch of plain successes
                _batch_records(body, finished)
    spans = Spans()
    allocs: Dict[bytes, Tuple[List[Tuple[str, int]], Optional[List[int]]]] = {}
    names: Dict[bytes, Tuple[str, bool]] = {}
    for p in finished.values():
        where = allocs.get(p[6])
        if where is None:  # each distinct allocation string parsed once
            alloc = _parse_allocation(unescape(p[6].decode("utf-8", "replace")))
            where = allocs[p[6]] = ([(n, len(c)) for n, c in alloc], alloc[0][1] if alloc else None)
        job = names.get(p[0])
        if job is None:
            name = p[0].decode("utf-8", "replace")
            job = names[p[0]] = (name, iterative.get(name, True))
        try:
            begin, finish, code = float(p[4]), float(p[5]), int(p[3]) if p[3] else None
            spans.task_id.append(f"{job[0]}:{int(p[1])}" if job[1] else job[0])
        except ValueError:
            dropped += 1
            continue
        spans.job.append(job[0])
        spans.begin.append(begin)
        spans.finish.append(finish)
        spans.exit_code.append(code)
        spans.placement.append(where[0])  # shared between tasks of one allocation: never changed
        spans.cpus.append(where[1])
        spans.reason.append(unescape(p[8].decode("utf-8", "replace")) if p[8] else None)
    if dropped:
        run.notes.append(f"journal: {dropped} record(s) damaged or cut short (a kill?); skipped")
    if not spans.begin:
        return False
    run.spans = spans
    run.task_source = "journal"
    if objects:
        ensure_tasks(run)
    return True


def ensure_tasks(run: RunData) -> None:
    """A :class:`Task` per task of the columns (the per-core views and the listings need them),
    in start order, made once."""
    s = run.spans
    if run.tasks or s is None:
        return
    blank = _blank_task()
    tasks = []
    for i in range(len(s.begin)):
        t = object.__new__(Task)  # a Task without its 22-field __init__: 100,000 of them add up
        d = t.__dict__
        d.update(blank)
        d["task_id"], d["spawn"], d["end"], d["exit_code"] = s.task_id[i], s.begin[i], s.finish[i], s.exit_code[i]
        d["placement"], d["cpus"], d["reason"], d["lanes"] = list(s.placement[i]), s.cpus[i], s.reason[i], {}
        tasks.append(t)
    tasks.sort(key=lambda t: (t.spawn or 0.0, t.task_id))
    run.tasks = tasks


def _batch_records(body: Dict[str, Any], finished: Dict[Tuple[bytes, bytes], List[bytes]]) -> None:
    """A journal's batch of successes as the I records (fields as bytes) it stands for."""
    try:
        job = str(body["job"]).encode()
        for it, a, w, b, e in zip(body["its"], body["a"], body["w"], body["b"], body["e"]):
            key = str(int(it)).encode()
            finished[(job, key)] = [job, key, b"S", b"0", repr(float(b)).encode(), repr(float(e)).encode(),
                                    str(a).encode(), str(w).encode(), b""]
    except (KeyError, TypeError, ValueError):
        pass  # a damaged batch is skipped like a damaged I record


def _crc_ok(line: bytes) -> bool:
    try:
        return zlib.crc32(line[11:]) == int(line[2:10], 16)
    except ValueError:  # not even a checksum
        return False


def _blank_task() -> Dict[str, Any]:
    import dataclasses

    return {f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(Task)}


def _tasks_from_jobs(run: RunData) -> None:
    for job in run.jobs.values():
        if job.iterations is not None or not job.allocation:
            continue
        begin, finish = job.time_of("EXECUTING"), job.finished
        if begin is None or finish is None:
            continue
        alloc = _parse_allocation(job.allocation)
        t = Task(job.name, placement=[(n, len(c)) for n, c in alloc], spawn=begin, end=finish,
                 exit_code=job.exit_code)
        t.lanes = {}
        t.cpus = alloc[0][1] if alloc else None
        run.tasks.append(t)
    if run.tasks:
        run.task_source = "jobs.report"
    run.tasks.sort(key=lambda t: (t.begin or 0.0, t.task_id))


def ensure_lanes(run: RunData) -> None:
    ensure_tasks(run)
    if not run.lanes_done:
        assign_lanes(run)


def assign_lanes(run: RunData) -> None:
    """Give each task rows (cores) of its nodes.  Real core ids are used when the run
    bound tasks to cores; otherwise (virtual cores) each task gets the lowest-free
    rows at its start, which reproduces a valid placement: a core is never shown
    running two tasks at once."""
    run.lanes_done = True
    index = {name: {c: i for i, c in enumerate(cores)} for name, cores in run.nodes}
    free: Dict[str, List[Tuple[float, int]]] = {name: [(0.0, i) for i in range(len(c))] for name, c in run.nodes}
    cores_of = dict(run.nodes)
    timed = [(t.spawn if t.spawn is not None else t.begin, t.end if t.end is not None else t.finish, t)
             for t in run.tasks]
    # the launcher's order: a core is freed when its exit is seen, then given to the next spawn
    for b, e, t in sorted(((b, e, t) for b, e, t in timed if b is not None and e is not None),
                          key=lambda x: (x[0], x[2].task_id)):
        for k, (node, n) in enumerate(t.placement):
            if node not in index:  # a node final_status does not list (older run): grow it
                index[node] = {}
                free[node] = []
                cores_of[node] = []
                run.nodes.append((node, cores_of[node]))
            ids = index[node]
            if k == 0 and t.cpus and all(c in ids for c in t.cpus):
                t.lanes[node] = [ids[c] for c in t.cpus]
                continue
            heap = free[node]
            rows: List[int] = []
            while len(rows) < n and heap and heap[0][0] <= b + 1e-9:
                rows.append(heapq.heappop(heap)[1])
            while len(rows) < n:  # more cores than the node has free: add rows rather than hide it
                new = len(ids)
                ids[new] = new
                cores_of[node].append(new)
                rows.append(new)
            for r in rows:
                heapq.heappush(heap, (e, r))
            t.lanes[node] = sorted(rows)
