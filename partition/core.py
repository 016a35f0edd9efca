"""The partition's pure core: a FIFO queue of work, exact placement, launches.

Scheduling follows the manual's ch. 7.2: work is taken in arrival order; each
entry gets as many iterations started as fit; when the head does not fit, later
entries may still use what is free (QCG-PilotJob does the same).  Work that can
never fit on this partition is dropped at once with the reason, so the governor
marks it FAILED instead of it waiting forever.
"""

from __future__ import annotations

import dataclasses
import itertools
import posixpath
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.frozen import fast_init
from hpilot.partition import models
from hpilot.partition.allocator import Allocation, Allocator, Request, why_never_fits
from hpilot.partition.health import StartHealth
from hpilot.partition.iterplan import PlanError, request_for
from hpilot.partition.messages import (
    CancelJob,
    FromPartition,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    NodeStatus,
    Release,
    Reserve,
    Reserved,
    RunReserved,
    Shutdown,
    TaskSpec,
    Work,
)
from hpilot.partition.resources import ResourceSet
from hpilot.partition.variables import Template


@fast_init
@dataclass(frozen=True)
class PartitionConfig:
    root_wd: str
    env: models.EnvContext
    models: Sequence[str] = models.LOCAL_MODELS
    uniq_prefix: str = ""
    # when the run stops (its allocation's end, less --stop-before): a task whose wall time
    # cannot end before then is not started, it waits for the next allocation
    deadline: Optional[float] = None


# ---- events the shell feeds in (besides the governor's messages) ----


@fast_init
@dataclass(frozen=True)
class TaskStarted:
    task_id: str
    pid: int
    now: float


@fast_init
@dataclass(frozen=True)
class TaskEnded:
    exit: TaskExit


@fast_init
@dataclass(frozen=True)
class NodeChanged:
    """A node left (its agent died: up=False) or joined late (up=True)."""

    node: str
    up: bool
    reason: str
    now: float


@fast_init
@dataclass(frozen=True)
class Schedule:
    """Place what fits now; fed once after a batch of other events."""

    now: float


Event = Union[Work, CancelJob, Shutdown, Reserve, RunReserved, Release, TaskStarted, TaskEnded, Schedule, NodeChanged]

# ---- actions out: LaunchRequest and KillTask go to the launcher, the rest up ----


@fast_init
@dataclass(frozen=True)
class KillTask:
    task_id: str
    reason: str


Action = Union[LaunchRequest, KillTask, FromPartition]


class _Pending:
    __slots__ = ("spec", "its", "pos", "uniform")

    def __init__(self, spec: TaskSpec, its: Sequence[int], uniform: Optional[Request]) -> None:
        self.spec = spec
        self.its = its
        self.pos = 0
        self.uniform = uniform  # the request when every iteration needs the same

    @property
    def left(self) -> Sequence[int]:
        return self.its[self.pos:]


class _Running:
    __slots__ = ("spec", "it", "alloc", "full", "wd", "scheduled", "started")

    def __init__(self, spec: TaskSpec, it: int, alloc: Allocation, wd: str, scheduled: float,
                 full: Optional[Allocation] = None) -> None:
        self.spec, self.it, self.alloc, self.wd = spec, it, alloc, wd
        self.full = full or alloc  # a spanning run's cores in every partition; ``alloc`` is ours
        self.scheduled = scheduled
        self.started = scheduled


class _Reservation:
    """Cores set aside for a run that spans partitions (``alloc`` None: not yet free)."""

    __slots__ = ("request", "alloc")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.alloc: Optional[Allocation] = None


class PartitionCore:
    def __init__(self, resources: ResourceSet, cfg: PartitionConfig) -> None:
        self.resources = resources
        self.all_resources = resources
        self.down: Dict[str, str] = {}  # node -> why no work may go there
        self.cfg = cfg
        self.allocator = Allocator(resources)
        self.queue: List[_Pending] = []
        self.running: Dict[str, _Running] = {}
        self._canceling: Set[str] = set()
        self.reservations: Dict[Tuple[str, int], _Reservation] = {}
        self._uniq = itertools.count(1)
        self.stopping = False
        self.held_back = 0  # queued iterations the last placement left, their wt past the deadline
        self.health = StartHealth()  # nodes where tasks cannot start (health.py)

    # ---- the one entry point ----

    def handle(self, ev: Event) -> List[Action]:
        if isinstance(ev, TaskEnded):
            return self.task_ended(ev.exit)
        if isinstance(ev, TaskStarted):
            return self.task_started(ev.task_id, ev.pid, ev.now)
        if isinstance(ev, Schedule):
            return self._schedule(ev.now)
        if isinstance(ev, Work):
            return self._work(ev)
        if isinstance(ev, CancelJob):
            if ev.iterations is not None:
                return self._cancel_its(ev.job, set(ev.iterations), ev.reason, ev.now)
            return self._cancel(lambda spec: spec.job == ev.job, ev.reason, ev.now)
        if isinstance(ev, NodeChanged):
            return self._node_changed(ev)
        if isinstance(ev, Reserve):
            return self._reserve(ev)
        if isinstance(ev, RunReserved):
            return self._run_reserved(ev)
        if isinstance(ev, Release):
            return self._release(ev)
        if isinstance(ev, Shutdown):
            self.stopping = True
            for key in list(self.reservations):
                self._release(Release(key[0], key[1], ev.reason, ev.now))
            return self._cancel(lambda spec: True, ev.reason, ev.now)
        raise TypeError(f"partition: unknown event {ev!r}")

    # ---- work in ----

    def _work(self, ev: Work) -> List[Action]:
        spec = ev.spec
        if not ev.iterations:
            return []
        if self.stopping:
            return [IterationsDropped(spec.job, ev.iterations, "the partition is shutting down", ev.now, True)]
        if spec.execution.model not in self.cfg.models:
            return [IterationsDropped(spec.job, ev.iterations,
                                      f"execution.model {spec.execution.model!r} is not available here "
                                      f"(available: {', '.join(self.cfg.models)})", ev.now)]
        try:
            first = request_for(spec.resources, self.resources, spec.it_count, ev.iterations[0] - spec.it_start)
        except PlanError as e:
            return [IterationsDropped(spec.job, ev.iterations, f"resources: {e}", ev.now)]
        why = why_never_fits(first, self.resources)
        if why is not None:
            return [IterationsDropped(spec.job, ev.iterations, f"resources: {why}", ev.now)]
        has_plan = any(s is not None and s.scheduler is not None
                       for s in (spec.resources.cores, spec.resources.nodes))
        self.queue.append(_Pending(spec, ev.iterations, None if has_plan else first))
        return []

    # ---- placement ----

    def _schedule(self, now: float) -> List[Action]:
        out: List[Action] = []
        if self.reservations and not self._set_aside(out, now):
            return out  # cores are being gathered for a spanning run: start nothing new
        alloc_ = self.allocator
        i = 0
        self.held_back = 0
        deadline = self.cfg.deadline
        while i < len(self.queue) and alloc_.free_cores > 0:
            p = self.queue[i]
            its = p.its
            wt = p.spec.resources.wt
            if deadline is not None and wt is not None and now + wt > deadline:
                self.held_back += len(its) - p.pos  # cannot end in this allocation: left for the next
                i += 1
                continue
            while p.pos < len(its):
                it = its[p.pos]
                req = p.uniform or request_for(p.spec.resources, self.resources, p.spec.it_count,
                                               it - p.spec.it_start)
                alloc = alloc_.allocate(req)
                if alloc is None:
                    break
                p.pos += 1
                out.append(self._launch(p.spec, it, alloc, now))
                if alloc_.free_cores == 0:
                    break
            if p.pos >= len(its):
                self.queue.pop(i)
            else:
                i += 1
        return out

    def _launch(self, spec: TaskSpec, it: int, own: Allocation, now: float,
                full: Optional[Allocation] = None) -> LaunchRequest:
        """The launch of one iteration on ``own`` cores (``full``: those plus the cores other
        partitions set aside for it, when it spans partitions)."""
        ex = spec.execution
        name = spec.task_name(it)
        root = self.cfg.root_wd
        alloc = full or own
        values = {
            "uniq": f"{self.cfg.uniq_prefix}{next(self._uniq)}",  # per task: names its host files
            "jname": spec.job,
            "root_wd": root,
            **_alloc_values(alloc),
        }
        if spec.iterative:  # as QCG-PilotJob: ${it} the index, ${itval} the value
            values["it"] = str(it)
            values["itval"] = spec.it_value(it)
        wd = posixpath.join(root, ex.wd.fill(values)) if ex.wd is not None else root
        self.running[name] = _Running(spec, it, own, wd, now, full)
        cpus = tuple(c for s in alloc.slots for c in s.cores) if self.cfg.env.binding else None
        files = models.with_files(ex, alloc, self.cfg.env)
        return LaunchRequest(
            task_id=name,
            argv=models.command(ex, values, alloc, self.cfg.env, files),
            env=models.environment(self.cfg.env, ex, values, alloc, name, files),
            wd=wd,
            stdin=_in_wd(wd, ex.stdin, values),
            stdout=_in_wd(wd, ex.stdout, values),
            stderr=_in_wd(wd, ex.stderr, values),
            cpus=cpus,
            walltime=spec.resources.wt,
            node=alloc.slots[0].node,
        )

    # ---- work out ----
    # A launcher's two events per task, also callable without their event objects: the
    # runner does (twice per task, it is the partition's hot path); handle() is the same.

    def task_started(self, task_id: str, pid: int, now: float) -> List[Action]:
        run = self.running.get(task_id)
        if run is None:
            return []
        run.started = now
        self.health.started(run.spec.job, run.alloc.slots[0].node)
        return [IterationStarted(run.spec.job, run.it, run.full.describe(), run.wd, run.scheduled, now,
                                 run.alloc.ncores, pid)]

    def task_ended(self, ex: TaskExit) -> List[Action]:
        run = self.running.pop(ex.task_id, None)
        if run is None:
            return []
        self.allocator.release(run.alloc)
        for slot in run.alloc.slots:
            if slot.node in self.down:
                _usable(self.allocator, slot.node, False, ())
        canceled = ex.task_id in self._canceling
        self._canceling.discard(ex.task_id)
        lost, out_of_service = ex.lost, None
        node = run.alloc.slots[0].node
        if ex.unstarted and not lost and not canceled:  # the node's doing, if the job starts elsewhere
            lost, out_of_service = self.health.failed(run.spec.job, node, ex.reason)
        out: List[Action] = [IterationFinished(run.spec.job, run.it, ex.exit_code, ex.started or run.started,
                                               ex.finished, run.full.describe(), run.wd, run.alloc.ncores,
                                               ex.reason, canceled, ex.stderr_tail, lost)]
        if out_of_service is not None and node not in self.down:
            out.extend(self._node_changed(NodeChanged(node, False, out_of_service, ex.finished)))
        return out

    def _cancel(self, match, reason: str, now: float) -> List[Action]:
        out: List[Action] = []
        keep = []
        for p in self.queue:
            if match(p.spec):
                if p.pos < len(p.its):
                    out.append(IterationsDropped(p.spec.job, p.left, reason, now, True))
            else:
                keep.append(p)
        self.queue = keep
        for task_id, run in self.running.items():
            if match(run.spec) and task_id not in self._canceling:
                self._canceling.add(task_id)
                out.append(KillTask(task_id, reason))
        return out

    # ---- runs that span partitions ----

    def _reserve(self, ev: Reserve) -> List[Action]:
        why = why_never_fits(ev.request, self.resources)
        if why is not None or self.stopping:
            why = why or "the partition is shutting down"
            return [IterationsDropped(ev.job, (ev.iteration,), f"resources: cannot set cores aside: {why}", ev.now)]
        self.reservations[(ev.job, ev.iteration)] = _Reservation(ev.request)
        return []

    def _set_aside(self, out: List[Action], now: float) -> bool:
        """Reserve what is free now for the waiting reservations, in order; False while one waits."""
        for (job, it), r in self.reservations.items():
            if r.alloc is None:
                r.alloc = self.allocator.allocate(r.request)
                if r.alloc is None:
                    return False
                out.append(Reserved(job, it, r.alloc.slots, now))
        return True

    def _run_reserved(self, ev: RunReserved) -> List[Action]:
        r = self.reservations.pop((ev.spec.job, ev.iteration), None)
        if r is None or r.alloc is None:
            return [IterationsDropped(ev.spec.job, (ev.iteration,), "its reserved cores are gone here", ev.now)]
        full = Allocation(r.alloc.slots + tuple(ev.foreign))
        return [self._launch(ev.spec, ev.iteration, r.alloc, ev.now, full)]

    def _release(self, ev: Release) -> List[Action]:
        r = self.reservations.pop((ev.job, ev.iteration), None)
        if r is not None:
            if r.alloc is not None:
                self.allocator.release(r.alloc)
            return []
        for task_id, run in self.running.items():  # the run it led: killed (not a cancel)
            if run.spec.job == ev.job and run.it == ev.iteration:
                return [KillTask(task_id, ev.reason)]
        return []

    def _cancel_its(self, job: str, its: Set[int], reason: str, now: float) -> List[Action]:
        """Single iterations: queued ones are dropped (CANCELED), running ones killed."""
        out: List[Action] = []
        for p in self.queue:
            if p.spec.job != job:
                continue
            left = p.left
            hit = tuple(sorted(it for it in its if it in left))
            if hit:
                p.its, p.pos = tuple(it for it in left if it not in its), 0
                out.append(IterationsDropped(job, hit, reason, now, True))
        self.queue = [p for p in self.queue if p.pos < len(p.its)]
        for task_id, run in self.running.items():
            if run.spec.job == job and run.it in its and task_id not in self._canceling:
                self._canceling.add(task_id)
                out.append(KillTask(task_id, reason))
        return out

    def _node_changed(self, ev: NodeChanged) -> List[Action]:
        """No placement on a node that is down; queued work that can no longer fit anywhere fails
        now.  The governor is told (``resources`` and ``status`` show why a node is out)."""
        if ev.up:
            self.down.pop(ev.node, None)
        else:
            self.down[ev.node] = ev.reason
        held = tuple(c for r in self.running.values() for s in r.alloc.slots if s.node == ev.node for c in s.cores)
        _usable(self.allocator, ev.node, ev.up, held)
        self.resources = dataclasses.replace(
            self.all_resources, nodes=tuple(n for n in self.all_resources.nodes if n.name not in self.down))
        out: List[Action] = [NodeStatus(ev.node, ev.up, ev.reason, ev.now)]
        if ev.up:
            return out
        keep = []
        for p in self.queue:
            try:
                req = p.uniform or request_for(p.spec.resources, self.resources, p.spec.it_count,
                                               p.left[0] - p.spec.it_start)
                why = why_never_fits(req, self.resources)
            except PlanError as e:
                why = str(e)
            if why is None:
                keep.append(p)
            else:
                out.append(IterationsDropped(p.spec.job, p.left, f"resources: {why} (node {ev.node} lost: "
                                             f"{ev.reason})", ev.now))
        self.queue = keep
        return out

    # ---- for tests and status ----

    @property
    def queued_iterations(self) -> int:
        return sum(len(p.its) - p.pos for p in self.queue)

    def validate(self) -> None:
        self.allocator.validate()
        used = sum(r.alloc.ncores for r in self.running.values())
        used += sum(r.alloc.ncores for r in self.reservations.values() if r.alloc is not None)
        for node in self.all_resources.nodes:  # a down node's idle cores are neither free nor used
            if node.name in self.down:
                used += node.total_cores - sum(len(s.cores) for r in self.running.values()
                                               for s in r.alloc.slots if s.node == node.name)
        assert used == self.allocator.used_cores, (
            f"running tasks hold {used} cores, allocator says {self.allocator.used_cores}")
        assert self._canceling <= set(self.running), "canceling a task that is not running"


def _usable(allocator: Allocator, node: str, up: bool, held: Sequence[int]) -> None:
    """Take a node's idle cores out of the allocator, or give them back (all but ``held``).
    (Reaches into the allocator's per-node state; an Allocator.retire(node) would be cleaner.)"""
    st = allocator._by_name.get(node)
    if st is None:
        return
    free = [c for c in st.node.cores if c not in held] if up else []
    allocator.free_cores += len(free) - len(st.free)
    st.free = free


def _alloc_values(alloc: Allocation) -> Dict[str, str]:
    """The variables an allocation alone sets, once per allocation (see Allocation.memo)."""
    got = alloc.memo.get("values")
    if got is None:
        got = alloc.memo["values"] = {"ncores": str(alloc.ncores), "nnodes": str(alloc.nnodes),
                                      "nlist": ",".join(alloc.nodes)}
    return got


def _in_wd(wd: str, t: Optional[Template], values: Mapping[str, str]) -> Optional[str]:
    """A task's stdin/stdout/stderr path, filled and inside its wd unless absolute (most have none)."""
    if t is None:
        return None
    path = t.fill(values)
    return path if posixpath.isabs(path) else posixpath.join(wd, path)
