"""Runs larger than any one partition: their cores are gathered in several, then one starts them.

Partition boundaries are a routing detail: a job that fits in the allocation runs. When
no single partition can ever hold an iteration, the Router hands it here. Iterations are
gathered one at a time (one gathering in flight, so two spanning runs can never each
hold half of what the other needs): the plan asks each chosen partition to
:class:`Reserve` part of the request; a partition with a reservation pending starts no
new work, so its running tasks drain until the cores are free. When every part is
:class:`Reserved`, the largest contributor (the *leader*) gets :class:`RunReserved` with
the others' cores and starts the run with a host file spanning all of them; the others
keep their cores set aside until the run ends and they get :class:`Release`.

Sizes: a spanning run gets exactly its minimum (``numCores``/``numNodes`` min); a range
that would take "as much as is free" is resolved to its lower bound, since free cores in
other partitions are not known here.

Pure, like the Router: decisions out, no state of a job changed here.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Sequence, Set, Tuple

from hpilot.governor.core.decisions import Decision, Impossible, Requeue, Tell
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.partition.allocator import Request, Slot
from hpilot.partition.iterplan import PlanError, request_for
from hpilot.partition.messages import Release, Reserve, Reserved, RunReserved

if TYPE_CHECKING:
    from hpilot.governor.core.routing import Router
    from hpilot.governor.core.routing import Slot as PartSlot


@dataclass
class _Run:
    """One spanning iteration: where its parts are asked for or set aside."""

    rec: JobRecord
    it: int
    asked: Dict[str, int] = field(default_factory=dict)  # partition -> cores asked (in plan order)
    slots: Dict[str, Tuple[Slot, ...]] = field(default_factory=dict)  # partition -> what it reserved
    leader: Optional[str] = None  # set once started
    lost: Optional[str] = None  # why it was abandoned while running (a contributor was lost)


def plan(req: Request, parts: Sequence[PartSlot]) -> Optional[List[Tuple[str, Request]]]:
    """The request split over partitions, fewest partitions first; None if they cannot hold it."""
    if req.nodes_min is None and not req.crs:  # cores anywhere
        need = req.cores_min
        out: List[Tuple[str, Request]] = []
        for s in sorted(parts, key=lambda s: (-s.cores, s.name)):
            k = min(need, s.cores)
            if k > 0:
                out.append((s.name, Request(cores_min=k, cores_max=k)))
                need -= k
            if need == 0:
                return out
        return None
    nodes = req.nodes_min or 1
    per_node = req.cores_max if req.whole_nodes else req.cores_min

    def eligible(s: PartSlot) -> int:
        return sum(1 for n in s.resources.nodes if req.whole_nodes or n.total_cores >= req.cores_min)

    out = []
    for s in sorted(parts, key=lambda s: (-eligible(s), s.name)):
        k = min(nodes, eligible(s))
        if k > 0:
            out.append((s.name, dataclasses.replace(req, nodes_min=k, nodes_max=k, cores_max=per_node)))
            nodes -= k
        if nodes == 0:
            return out
    return None


class Spanning:
    def __init__(self) -> None:
        self.queue: Deque[Tuple[JobRecord, int]] = deque()
        self.current: Optional[_Run] = None
        self.running: Dict[Tuple[JobRecord, int], _Run] = {}

    @property
    def waiting(self) -> bool:
        return bool(self.queue) and self.current is None

    def add(self, rec: JobRecord, its: Sequence[int]) -> None:
        self.queue.extend((rec, it) for it in its)

    # ---- gathering ----

    def next(self, now: float, router: Router) -> List[Decision]:
        """Start gathering the next waiting iteration (one at a time)."""
        out: List[Decision] = []
        while self.current is None and self.queue:
            rec, it = self.queue.popleft()
            if rec.canceled or rec.state.is_final or rec.it_state(it).is_final:
                continue
            live = [s for s in router.slots.values() if not s.draining]
            whole = router.allocation(live)
            try:
                req = request_for(rec.task.resources, whole, rec.task.it_count, it - rec.task.it_start) \
                    if whole is not None else None
            except PlanError as e:
                out.append(Impossible(rec, (it,), JobState.FAILED, f"resources: {e}"))
                continue
            parts = plan(req, live) if req is not None else None
            if parts is None and router.settled and whole is not None:  # partitions were lost meanwhile
                out.append(Impossible(rec, (it,), JobState.FAILED,
                                      f"resources: larger than the allocation ({whole.total_cores} cores on "
                                      f"{len(whole.nodes)} node(s)) after partitions were lost"))
                continue
            if parts is None:  # wait for partitions to come
                self.queue.appendleft((rec, it))
                break
            run = self.current = _Run(rec, it)
            for name, part_req in parts:
                cores = part_req.cores_min * (part_req.nodes_min or 1)
                run.asked[name] = cores
                router.slots[name].cost += cores
                out.append(Tell(name, Reserve(rec.name, it, part_req, now)))
        return out

    def reserved(self, part: str, msg: Reserved, now: float, router: Router) -> List[Decision]:
        run = self.current
        if run is None or run.rec.name != msg.job or run.it != msg.iteration or part not in run.asked:
            # a reservation nobody waits for (abandoned meanwhile): give it back
            return [Tell(part, Release(msg.job, msg.iteration, "no longer needed", now))]
        run.slots[part] = msg.slots
        # what it really set aside (a whole node may hold more cores than were asked)
        got = sum(len(s.cores) for s in msg.slots)
        router.slots[part].cost += got - run.asked[part]
        run.asked[part] = got
        if len(run.slots) < len(run.asked):
            return []
        leader = next(iter(run.asked))
        foreign = tuple(s for name, slots in run.slots.items() if name != leader for s in slots)
        run.leader = leader
        self.running[(run.rec, run.it)] = run
        self.current = None
        out: List[Decision] = [Tell(leader, RunReserved(run.rec.task, run.it, foreign, now))]
        out.extend(self.next(now, router))
        return out

    def refused(self, part: str, rec: JobRecord, it: int, reason: str, now: float,
                router: Router) -> Optional[List[Decision]]:
        """A partition could not reserve (or the leader could not start): None if this is not
        about a spanning run, else the decisions (the iteration fails with the reason)."""
        run = self.current if (self.current is not None and self.current.rec is rec
                               and self.current.it == it) else self.running.get((rec, it))
        if run is None:
            return None
        out = self._release(run, reason, now, router, skip=part)
        out.append(Impossible(rec, (it,), JobState.FAILED, reason))
        out.extend(self.next(now, router))
        return out

    # ---- the end of a run ----

    def ended(self, rec: JobRecord, it: int, now: float, router: Router) -> List[Decision]:
        """The leader reported the run final: the others free their cores."""
        run = self.running.get((rec, it))
        if run is None:
            return []
        out = self._release(run, "the run ended", now, router, skip=run.leader)
        out.extend(self.next(now, router))
        return out

    def abandoned(self, rec: JobRecord, it: int) -> Optional[str]:
        run = self.running.get((rec, it))
        return run.lost if run is not None else None

    def _release(self, run: _Run, reason: str, now: float, router: Router,
                 skip: Optional[str] = None) -> List[Decision]:
        out: List[Decision] = []
        for name, cores in run.asked.items():
            slot = router.slots.get(name)
            if slot is not None:
                slot.cost -= cores
                if name != skip:
                    out.append(Tell(name, Release(run.rec.name, run.it, reason, now)))
        run.asked.clear()
        if self.current is run:
            self.current = None
        self.running.pop((run.rec, run.it), None)
        return out

    def partition_gone(self, name: str, reason: str, now: float, router: Router,
                       fenced: Optional[List[Tuple[JobRecord, int]]] = None) -> List[Decision]:
        """A partition left: a gathering that counted on it starts again; a run it led is
        re-queued (once, like the partition's other work; into ``fenced`` instead, when the
        lost partition's tasks may still run); a run it contributed to is killed."""
        out: List[Decision] = []
        run = self.current
        if run is not None and name in run.asked:
            run.asked.pop(name)
            out.extend(self._release(run, f"partition {name} lost", now, router))
            self.queue.appendleft((run.rec, run.it))
        for run in [r for r in self.running.values() if name in r.asked]:
            why = f"partition {name} lost: {reason}"
            if run.leader == name:
                run.asked.pop(name)
                out.extend(self._release(run, why, now, router))
                if fenced is not None and not run.rec.canceled:  # re-run once its tasks are known dead
                    fenced.append((run.rec, run.it))
                elif run.rec.canceled or not router.retries.again_lost(run.rec, (run.it,))[0]:
                    state = JobState.CANCELED if run.rec.canceled else JobState.FAILED
                    out.append(Impossible(run.rec, (run.it,), state,
                                          f"lost with partition {name} after {run.rec.spec.retry_lost} re-run(s) "
                                          f"({reason})"))
                else:
                    out.append(Requeue(run.rec, (run.it,), why))
                    self.queue.appendleft((run.rec, run.it))
            elif run.lost is None and run.leader is not None:
                run.lost = why
                run.asked.pop(name, None)
                out.append(Tell(run.leader, Release(run.rec.name, run.it, why, now)))
        return out

    def cancel(self, rec: JobRecord, reason: str, now: float, router: Router,
               its: Optional[Set[int]] = None) -> Tuple[List[int], List[Decision]]:
        """Iterations of ``rec`` (all, or ``its``) not yet started here: they end CANCELED (the
        caller says so); what was set aside for one being gathered is released."""
        def hit(r: JobRecord, it: int) -> bool:
            return r is rec and (its is None or it in its)

        unsent = [it for r, it in self.queue if hit(r, it)]
        if unsent:
            self.queue = deque((r, it) for r, it in self.queue if not hit(r, it))
        out: List[Decision] = []
        run = self.current
        if run is not None and hit(run.rec, run.it):
            unsent.append(run.it)
            out.extend(self._release(run, reason, now, router))
            out.extend(self.next(now, router))
        return unsent, out

    def abort_gathering(self, reason: str, now: float, router: Router) -> List[Decision]:
        """The run is ending: the cores being set aside for the current gathering are released
        (the caller ends its iteration)."""
        run = self.current
        return self._release(run, reason, now, router) if run is not None else []

    def stats(self) -> Dict[str, int]:
        return {"waiting": len(self.queue) + (self.current is not None), "running": len(self.running)}
