"""Governor mode: the ready queue and per-partition accounting, driven by GovernorCore.

Without ``--governor`` the core sends each ready job whole to its one in-process
partition (the fastest path, untouched).  With partitions that register over the
network, ready jobs wait here as (job, iterations not yet sent) and
:meth:`Router.pump` sends batches where they fit (see :mod:`placement`).  Iterations
sent to a partition and not yet reported final are *outstanding* there, so that a
partition that is lost gives them back (each re-run at most once for that cause).

Everything here is pure (no sockets, no clock): the shell turns registrations and
lost heartbeats into :class:`PartitionJoined` / :class:`PartitionGone` events.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Sequence, Set, Tuple

from hpilot.governor.core.placement import Candidate, Placement
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import CancelJob, Work
from hpilot.partition.resources import Node, ResourceSet

if TYPE_CHECKING:
    from hpilot.governor.core.governor import Action, GovernorCore

log = logging.getLogger("hpilot.governor")
PREFETCH = 2  # a partition holds at least this many times its cores: its queue never runs dry
HORIZON = 0.1  # ... and at least what it finishes in this many seconds (its measured rate)
RATE_WINDOW = 0.2  # seconds of reports over which a partition's rate is measured
MAX_PREFETCH = 256  # ... but never more than this many times its cores


@dataclass(frozen=True)
class PartitionJoined:
    name: str
    nodes: Tuple[Tuple[str, int], ...]
    tags: Tuple[str, ...] = ()
    now: float = 0.0


@dataclass(frozen=True)
class PartitionGone:
    """Lost (``clean=False``: its unfinished iterations are re-queued) or left after draining."""

    name: str
    reason: str
    clean: bool
    now: float = 0.0


@dataclass(frozen=True)
class PartitionDraining:
    name: str


@dataclass(frozen=True)
class Settled:
    """Every partition the governor started has registered (or will never): jobs larger
    than every partition can now be failed instead of waiting for a bigger one."""


class _Slot:
    __slots__ = ("name", "cores", "nodes", "node_cores", "tags", "out", "cost", "draining", "sent", "done", "joined",
                 "_win_start", "_win_done", "limit")

    def __init__(self, ev: PartitionJoined) -> None:
        self.name = ev.name
        self.cores = sum(c for _, c in ev.nodes)
        self.nodes = len(ev.nodes)
        self.node_cores = max((c for _, c in ev.nodes), default=0)
        self.tags = ev.tags
        self.out: Dict[str, Set[int]] = {}  # job -> iterations sent, not yet final
        self.cost = 0  # cores' worth outstanding
        self.draining = False
        self.sent = 0
        self.done = 0
        self.joined = ev.now
        self._win_start: float | None = None
        self._win_done = 0
        self.limit = self.cores * PREFETCH

    def measure(self, n: int, now: float) -> None:
        """Count ``n`` iterations finished at ``now`` (the partition's clock); every
        RATE_WINDOW, the rate sets how much the partition may hold: a fast partition (short
        tasks) gets big batches and few round trips, a slow one no more than it can start."""
        if self._win_start is None:
            self._win_start = now
        self._win_done += n
        span = now - self._win_start
        if span >= RATE_WINDOW:
            rate = self._win_done / span
            self._win_start, self._win_done = now, 0
            self.limit = min(max(self.cores * PREFETCH, int(rate * HORIZON)), self.cores * MAX_PREFETCH)

    def credit(self) -> int:
        return 0 if self.draining else self.limit - self.cost


class _Entry:
    __slots__ = ("rec", "its", "pos")

    def __init__(self, rec: JobRecord, its: Sequence[int]) -> None:
        self.rec, self.its, self.pos = rec, its, 0


def _cost(rec: JobRecord) -> int:
    return max(1, rec.task.resources.min_cores)


def _fits(rec: JobRecord, s: _Slot) -> bool:
    res = rec.task.resources
    nodes = res.nodes.lower if res.nodes else 1
    if nodes > s.nodes:
        return False
    if res.nodes is None and res.cores is not None and res.cores.lower > s.node_cores:
        return False  # one node's worth of cores
    return _cost(rec) <= s.cores


class Router:
    def __init__(self, placement: Placement | None = None) -> None:
        self.placement = placement or Placement()
        self.slots: Dict[str, _Slot] = {}
        self.ready: Deque[_Entry] = deque()
        self.settled = False
        self.requeued: Set[Tuple[str, int]] = set()
        self.gone: Dict[str, str] = {}  # name -> why (lost or left)

    # ---- partitions ----

    def join(self, core: GovernorCore, ev: PartitionJoined, out: List[Action]) -> None:
        from hpilot.governor.core.governor import PartitionView

        if ev.name in self.slots:
            raise ValueError(f"partition {ev.name} registered twice")
        self.slots[ev.name] = _Slot(ev)
        self.gone.pop(ev.name, None)
        rs = ResourceSet(tuple(Node(n, tuple(range(c))) for n, c in ev.nodes), False, "partition")
        core.partitions[ev.name] = PartitionView(ev.name, rs)
        self.settled = True if not core.expect_partitions else self.settled
        self.pump(core, ev.now, out)

    def draining(self, name: str) -> None:
        if name in self.slots:
            self.slots[name].draining = True

    def gone_(self, core: GovernorCore, ev: PartitionGone, out: List[Action]) -> None:
        slot = self.slots.pop(ev.name, None)
        core.partitions.pop(ev.name, None)
        self.gone[ev.name] = ev.reason
        if slot is None:
            return
        for job, its in slot.out.items():
            rec = core.registry.get(job)
            if rec is None or not its:
                continue
            again: List[int] = []
            twice: List[int] = []
            for it in sorted(its):
                st = rec.it_state(it)
                if st.is_final:
                    continue
                if st is not JobState.QUEUED:
                    rec.set_it_state(it, JobState.QUEUED)
                run = rec.runs.get(it)
                if run is not None:
                    run.reason = f"partition {ev.name} lost: {ev.reason}"
                (twice if (job, it) in self.requeued else again).append(it)
            if rec.canceled and again:  # nothing to re-run: the user canceled it meanwhile
                core._drop(rec, tuple(again), JobState.CANCELED, f"canceled; partition {ev.name} lost", ev.now, out)
                again = []
            for it in again:
                self.requeued.add((job, it))
            if again:
                log.warning("partition %s: %d iteration(s) of %s re-queued", ev.name, len(again), job)
                self.ready.appendleft(_Entry(rec, tuple(again)))
            if twice:
                core._drop(rec, tuple(twice), JobState.FAILED,
                           f"lost with partition {ev.name} after an earlier re-queue ({ev.reason})", ev.now, out)
        self.pump(core, ev.now, out)

    # ---- work ----

    def add(self, core: GovernorCore, rec: JobRecord, now: float, out: List[Action],
            its: Optional[Sequence[int]] = None) -> None:
        """Queue a ready job's pending iterations (or only ``its``) and send what fits."""
        its = rec.pending() if its is None else its
        if len(its):
            self.ready.append(_Entry(rec, its))
        self.pump(core, now, out)

    def reported(self, core: GovernorCore, part: str, job: str, its: Sequence[int], now: float,
                 out: List[Action], final: bool) -> None:
        slot = self.slots.get(part)
        if slot is None or not final:
            return
        held = slot.out.get(job)
        if held is None:
            return
        rec = core.registry.get(job)
        cost = _cost(rec) if rec is not None else 1
        n = 0
        for it in its:
            if it in held:
                held.discard(it)
                n += 1
        if not held:
            del slot.out[job]
        slot.cost -= n * cost
        slot.done += n
        slot.measure(n, now)
        # refill in batches: once half of the partition's buffer is free (it still holds
        # a core's worth of work per core then, so it never idles), not per iteration
        if self.ready and (slot.cost == 0 or slot.credit() >= slot.limit // 2):
            self.pump(core, now, out)

    def pump(self, core: GovernorCore, now: float, out: List[Action]) -> None:
        if not self.ready or not self.slots:
            return
        live = [s for s in self.slots.values() if not s.draining]
        keep: Deque[_Entry] = deque()
        while self.ready:
            e = self.ready.popleft()
            rec = e.rec
            if rec.canceled or rec.state.is_final or core.registry.get(rec.name) is not rec:
                continue
            cands = [s for s in live if _fits(rec, s)]
            if not cands:
                if self.settled and live:
                    big = max(live, key=lambda s: s.cores)
                    core._drop(rec, tuple(e.its[e.pos:]), JobState.FAILED,
                               f"resources: larger than every partition (the largest has {big.cores} cores "
                               f"on {big.nodes} node(s))", now, out)
                else:
                    keep.append(e)
                continue
            cost = _cost(rec)
            left = len(e.its) - e.pos
            grants = self.placement.split(left, cost, [Candidate(s.name, s.credit(), s.cores) for s in cands])
            for name, n in grants:
                batch = e.its[e.pos:e.pos + n]
                e.pos += n
                slot = self.slots[name]
                slot.out.setdefault(rec.name, set()).update(batch)
                slot.cost += n * cost
                slot.sent += n
                from hpilot.governor.core.governor import SendToPartition

                out.append(SendToPartition(name, Work(rec.task, batch, now)))
            if e.pos < len(e.its):
                keep.append(e)
            if not any(s.credit() > 0 for s in live):
                break
        keep.extend(self.ready)
        self.ready = keep

    def cancel(self, core: GovernorCore, rec: JobRecord, reason: str, now: float, out: List[Action],
               its: Optional[Sequence[int]] = None) -> None:
        """Unsent iterations (all, or those of ``its``) are dropped here; partitions holding some are told."""
        unsent: List[int] = []
        if its is None:
            for e in self.ready:
                if e.rec is rec:
                    unsent.extend(e.its[e.pos:])
            self.ready = deque(e for e in self.ready if e.rec is not rec)
        else:
            unsent = self._unqueue(rec, set(its))
        from hpilot.governor.core.governor import SendToPartition

        for s in self.slots.values():
            held = s.out.get(rec.name)
            if held and its is None:
                out.append(SendToPartition(s.name, CancelJob(rec.name, reason, now)))
            elif held and its is not None:
                mine = tuple(sorted(it for it in its if it in held))
                if mine:
                    out.append(SendToPartition(s.name, CancelJob(rec.name, reason, now, mine)))
        if unsent:
            core._drop(rec, tuple(sorted(unsent)), JobState.CANCELED, reason, now, out)

    def _unqueue(self, rec: JobRecord, its: Set[int]) -> List[int]:
        """Take these iterations of ``rec`` out of the ready queue; returns those that were there."""
        taken: List[int] = []
        for e in self.ready:
            if e.rec is rec:
                left = e.its[e.pos:]
                hit = [it for it in its if it in left]
                if hit:
                    e.its, e.pos = tuple(it for it in left if it not in its), 0
                    taken.extend(hit)
        self.ready = deque(e for e in self.ready if e.pos < len(e.its))
        return sorted(taken)

    def drop_unsent(self, core: GovernorCore, reason: str, now: float, out: List[Action]) -> None:
        for e in list(self.ready):
            if not e.rec.state.is_final:
                core._drop(e.rec, tuple(e.its[e.pos:]), JobState.CANCELED, reason, now, out)
        self.ready.clear()

    def stats(self) -> List[Dict[str, object]]:
        return [{"name": s.name, "cores": s.cores, "nodes": s.nodes, "tags": list(s.tags),
                 "outstanding": sum(len(v) for v in s.out.values()), "sent": s.sent, "done": s.done,
                 "draining": s.draining, "joined": s.joined} for s in self.slots.values()]
