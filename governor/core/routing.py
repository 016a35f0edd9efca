"""Where ready work goes: the ready queue and each partition's account, as decisions.

Every manager routes through this, whatever its shape: a single manager is one
in-process partition (joined with a credit larger than any job, so a whole range
travels as one message); a governor has partitions that register over the network
and get work by credit, as in the ZeroMQ guide's credit-based flow control.  Ready
jobs wait here as (job, iterations not yet sent); :meth:`Router.pump` grants batches
where they fit (see :mod:`placement`).  Iterations granted to a partition and not yet
final are *outstanding* there, kept as the ranges that were sent plus a count, so a
partition that is lost gives back exactly what it had not finished (each iteration
re-queued at most once for that cause).

A job that no single partition can hold but the allocation can (more cores or nodes
than one partition has) is a *spanning* run: :mod:`spanning` gathers its cores in
several partitions, then one of them starts it on all of them.

The Router never changes a job or an iteration: it returns decisions
(:class:`Grant`, :class:`Requeue`, :class:`Impossible`, :class:`Tell`) and the core
applies every state change.  Everything here is pure (no sockets, no clock).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Set, Tuple

from hpilot.governor.core.decisions import Decision, Grant, Impossible, Requeue, Tell
from hpilot.governor.core.events import PartitionGone, PartitionJoined
from hpilot.governor.core.fencing import Fences, Retries
from hpilot.governor.core.placement import Candidate, Placement
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.spanning import Spanning
from hpilot.governor.core.states import JobState
from hpilot.partition.allocator import why_never_fits
from hpilot.partition.iterplan import PlanError, request_for
from hpilot.partition.messages import CancelJob, Reserved
from hpilot.partition.resources import Node, ResourceSet

log = logging.getLogger("hpilot.governor")
PREFETCH = 2  # a partition holds at least this many times its cores: its queue never runs dry
HORIZON = 0.3  # ... and at least what it finishes in this many seconds (its measured rate):
# more than a partition's report period (0.1 s) plus the refill's round trip, or it runs
# dry before each refill, reports at once and makes many small batches
RATE_WINDOW = 0.2  # seconds of reports over which a partition's rate is measured
MAX_PREFETCH = 1024  # ... but never more than this many times its cores (a bound for the absurd: what a
# partition holds is set by what it finishes, see Slot.ran_dry; at 256, the G rows' dry-run partitions
# of 8 cores hit it at about half of what their own rate gives)

class _Held:
    """What one partition holds of one job: the batches sent, and how many are not final."""

    __slots__ = ("rec", "batches", "count")

    def __init__(self, rec: JobRecord) -> None:
        self.rec = rec
        self.batches: List[Sequence[int]] = []
        self.count = 0

    def unfinished(self) -> List[int]:
        state = self.rec.it_state
        return [it for b in self.batches for it in b if not state(it).is_final]


class Slot:
    """One partition as the Router sees it: size, credit, and what it holds."""

    __slots__ = ("name", "cores", "nodes", "resources", "tags", "held", "cost", "draining", "sent", "done",
                 "joined", "_win_start", "_win_done", "_win_base", "limit", "metered", "_ep_first", "_ep_done",
                 "_starved")

    def __init__(self, ev: PartitionJoined) -> None:
        self.name = ev.name
        self.resources = ResourceSet(tuple(Node(n, tuple(range(c))) for n, c in ev.nodes), False, "partition")
        self.cores = self.resources.total_cores
        self.nodes = len(ev.nodes)
        self.tags = ev.tags
        self.held: Dict[JobRecord, _Held] = {}
        self.cost = 0  # cores' worth outstanding
        self.draining = False
        self.sent = 0
        self.done = 0
        self.joined = ev.now
        self._win_start: Optional[float] = None
        self._win_done = 0
        self._win_base = 0  # what the report that opened the window counted (it ended before it)
        self.metered = ev.credit is None
        self._ep_first: Optional[float] = None  # earliest start of what it finished since it last held nothing
        self._ep_done = 0  # ... and how many those are
        self._starved = False  # it ran dry in this window while work was waiting (see ran_dry)
        self.limit = self.cores * PREFETCH if ev.credit is None else ev.credit

    def measure(self, n: int, now: float, first: Optional[float] = None) -> None:
        """Count ``n`` iterations finished at ``now`` (the partition's clock); every
        RATE_WINDOW, the rate sets how much the partition may hold: a fast partition (short
        tasks) gets big batches and few round trips, a slow one no more than it can start."""
        if not self.metered:
            return
        if first is not None and (self._ep_first is None or first < self._ep_first):
            self._ep_first = first
        self._ep_done += n
        if self._win_start is None:
            self._win_start, self._win_base = now, n
        self._win_done += n
        span = now - self._win_start
        if span >= RATE_WINDOW:
            rate = self._win_done / span
            self._win_start, self._win_done, self._win_base = now, 0, 0
            limit = min(max(self.cores * PREFETCH, int(rate * HORIZON)), self.cores * MAX_PREFETCH)
            # a window in which it ran dry with work waiting measured the governor's pace, not
            # the partition's: it may grow the limit, never shrink it
            self.limit = max(self.limit, limit) if self._starved else limit
            self._starved = False
        elif self._win_done >= self.limit and span > 0:
            # a whole buffer done in less than a window: it is faster than its limit says, so the
            # limit grows now (2x at most, and no more than its rate says), not a window later: from
            # the start's floor, short tasks took 50 round trips of 16 iterations before the first
            # window closed (every round trip is a report and a grant the governor pays for).
            # (4x a step cut a few more round trips but made 0.1 s tasks at 1,024 nodes end 2.5%
            # later than one flat partition: credit grew past what the tail could even out)
            self._grow((self._win_done - self._win_base) / span)  # what ended after the window opened

    def _grow(self, rate: float) -> None:
        """Grow the limit now, before a window closes: to HORIZON of ``rate``, but at most 2x a
        step and never past the ceiling (one rule for both ways a partition shows it is faster)."""
        self.limit = max(self.limit, min(int(rate * HORIZON), self.limit * 2, self.cores * MAX_PREFETCH))

    def ran_dry(self, now: float, waiting: bool) -> None:
        """It finished all it held (at ``now``, its clock).  If work was waiting, it idled
        for want of work: the rate measured over a window is then the governor's pace, and a
        buffer sized by it stays small however fast the partition is (the more partitions, the
        smaller each one's share of the pace: 8 partitions sent the governor about 7 times the
        frames of one, and it pays per frame).  Its own rate is what it finished since it last held
        nothing, over the time from the first of those starts to now: the limit grows to
        HORIZON of that (2x at most per time it runs dry).  With real tasks that rate is what
        its cores finish when busy, so a buffer sized by it still drains in HORIZON."""
        first, done = self._ep_first, self._ep_done
        self._ep_first, self._ep_done = None, 0
        if not (self.metered and waiting) or first is None or now <= first:
            return
        self._starved = True
        self._grow(done / (now - first))

    def credit(self) -> int:
        return 0 if self.draining else self.limit - self.cost

    def wants(self, cost: int) -> bool:
        """Whether a grant is worth a message: the partition is empty, or half of its buffer (and
        one iteration) is free.  A partition that still holds more than half of what it may hold
        is busy and refills at its next report; topping it up at every other partition's report
        only made many small grants (a governor pays per message: 16-iteration grants, 8 times
        as many messages with 8 partitions)."""
        credit = self.credit()
        return credit >= cost and (self.cost == 0 or credit >= self.limit // 2)

    def hold(self, rec: JobRecord, batch: Sequence[int], cost: int) -> None:
        h = self.held.get(rec)
        if h is None:
            h = self.held[rec] = _Held(rec)
        h.batches.append(batch)
        h.count += len(batch)
        self.cost += len(batch) * cost
        self.sent += len(batch)

    def release(self, rec: JobRecord, n: int, cost: int) -> None:
        h = self.held.get(rec)
        if h is None:
            return
        n = min(n, h.count)
        h.count -= n
        if h.count == 0:
            del self.held[rec]
        self.cost -= n * cost
        self.done += n


class _Entry:
    __slots__ = ("rec", "its", "pos", "fits", "given")

    def __init__(self, rec: JobRecord, its: Sequence[int]) -> None:
        self.rec, self.its, self.pos = rec, its, 0
        self.fits: Dict[str, bool] = {}  # partition -> can it ever hold one iteration
        self.given: Dict[str, int] = {}  # partition -> how many of these iterations it was given


def cost(rec: JobRecord) -> int:
    return max(1, rec.task.resources.min_cores)


def fits(rec: JobRecord, resources: ResourceSet, it: int) -> bool:
    """Whether iteration ``it`` can ever run on ``resources``: the partition's own check."""
    task = rec.task
    try:
        req = request_for(task.resources, resources, task.it_count, it - task.it_start)
    except PlanError:
        return False
    if req.crs:  # partitions advertise nodes and cores only: each checks its GPUs and memory itself
        req = dataclasses.replace(req, crs=())
    return why_never_fits(req, resources) is None


class Router:
    def __init__(self, placement: Optional[Placement] = None) -> None:
        self.placement = placement or Placement()
        self.slots: Dict[str, Slot] = {}
        self.ready: Deque[_Entry] = deque()
        self.settled = False
        self.retries = Retries()  # re-runs of each iteration after a loss or a failure (fencing.py)
        self.fences = Fences()  # lost partitions whose tasks may still run (fencing.py)
        self.gone: Dict[str, str] = {}  # name -> why (lost or left)
        self.spanning = Spanning()

    # ---- partitions ----

    def join(self, ev: PartitionJoined) -> List[Decision]:
        if ev.name in self.slots:
            raise ValueError(f"partition {ev.name} registered twice")
        self.slots[ev.name] = Slot(ev)
        self.gone.pop(ev.name, None)
        for e in self.ready:
            e.fits.clear()
        return self.pump(ev.now)

    def draining(self, name: str) -> None:
        if name in self.slots:
            self.slots[name].draining = True

    def settle(self, now: float) -> List[Decision]:
        self.settled = True
        return self.pump(now)

    def leave(self, ev: PartitionGone) -> List[Decision]:
        """A partition left or was lost: what it had not finished runs again (once), elsewhere."""
        slot = self.slots.pop(ev.name, None)
        self.gone[ev.name] = ev.reason
        out: List[Decision] = []
        for e in self.ready:
            e.fits.pop(ev.name, None)
        if slot is None:
            return out
        if ev.clean:
            out.extend(self.spanning.partition_gone(ev.name, ev.reason, ev.now, self))
            out.extend(self._give_back(slot, ev.reason, ev.now))
        else:  # its tasks may still run: what it held waits until they are known dead (fencing.py)
            led: List[Tuple[JobRecord, int]] = []
            out.extend(self.spanning.partition_gone(ev.name, ev.reason, ev.now, self, led))
            self.fences.hold(slot, ev.reason, led)
            out.extend(self.pump(ev.now))
        return out

    def unfence(self, name: str, now: float) -> List[Decision]:
        """The tasks of a lost partition are known dead now: what it held runs again."""
        fenced = self.fences.lift(name)
        if fenced is None:
            return []
        slot, why, led = fenced
        return self._give_back(slot, why, now, led)

    def _give_back(self, slot: Slot, why: str, now: float,
                   led: Sequence[Tuple[JobRecord, int]] = ()) -> List[Decision]:
        """What a partition held and did not finish: re-queued (within each job's re-runs), else
        FAILED.  ``led``: spanning runs it led, which are gathered again."""
        out: List[Decision] = []
        reason = f"partition {slot.name} lost: {why}"
        for rec, it in led:
            if rec.it_state(it).is_final:
                continue
            if self.retries.again_lost(rec, (it,))[0]:
                out.append(Requeue(rec, (it,), reason))
                self.spanning.queue.appendleft((rec, it))
            else:
                out.append(Impossible(rec, (it,), JobState.FAILED, f"lost with partition {slot.name} after "
                                      f"{rec.spec.retry_lost} re-run(s) ({why})"))
        for rec, held in slot.held.items():
            again, spent = self.retries.again_lost(rec, held.unfinished())
            if rec.canceled and again:  # nothing to re-run: the user canceled it meanwhile
                out.append(Impossible(rec, tuple(again), JobState.CANCELED, f"canceled; {reason}"))
                again = []
            if again:
                log.warning("partition %s: %d iteration(s) of %s re-queued", slot.name, len(again), rec.name)
                out.append(Requeue(rec, tuple(again), reason))
                self.ready.appendleft(_Entry(rec, tuple(again)))
            if spent:
                out.append(Impossible(rec, tuple(spent), JobState.FAILED,
                                      f"lost with partition {slot.name} after {rec.spec.retry_lost} re-run(s) "
                                      f"({why})"))
        out.extend(self.pump(now))
        return out

    def rerun(self, part: str, rec: JobRecord, it: int, reason: str, now: float) -> List[Decision]:
        """An iteration ``part`` held ends, to run again (its node was lost, it could not start
        there, or it failed and its job asks for re-runs): back to the ready queue."""
        out = self.finished(part, rec, (it,), now, refill=False)
        out.append(Requeue(rec, (it,), reason))
        self.ready.appendleft(_Entry(rec, (it,)))
        out.extend(self.pump(now))
        return out

    # ---- work ----

    def add(self, rec: JobRecord, its: Sequence[int], now: float) -> List[Decision]:
        if len(its):
            self.ready.append(_Entry(rec, its))
        return self.pump(now)

    def pump(self, now: float) -> List[Decision]:
        out: List[Decision] = []
        if self.ready and self.slots:
            self._grant(now, out)
        if self.spanning.waiting:
            out.extend(self.spanning.next(now, self))
        return out

    def _grant(self, now: float, out: List[Decision]) -> None:
        live = [s for s in self.slots.values() if not s.draining]
        keep: Deque[_Entry] = deque()
        while self.ready:
            e = self.ready.popleft()
            rec = e.rec
            if rec.canceled or rec.state.is_final:
                continue
            first = e.its[e.pos]
            cands = [s for s in live if self._fits(e, s, first)]
            if not cands:
                if self._no_partition(e, live, out):
                    keep.append(e)
                continue
            c = cost(rec)
            left = len(e.its) - e.pos
            offer = [Candidate(s.name, s.credit(), s.cores, e.given.get(s.name, 0) * c) for s in cands]
            if left * c > sum(o.credit for o in offer):  # plenty left: only where a message is worth it
                offer = [o for o, s in zip(offer, cands) if s.wants(c)]
                if not offer:
                    keep.append(e)
                    if not any(s.wants(1) for s in live):
                        break  # nobody wants work now: the next report refills (no scan of the queue)
                    continue
            # (else the end of this work: every partition with room takes part in evening it out)
            for name, n in self.placement.split(left, c, offer):
                batch = e.its[e.pos:e.pos + n]
                e.pos += n
                e.given[name] = e.given.get(name, 0) + n
                self.slots[name].hold(rec, batch, c)
                out.append(Grant(name, rec, batch))
            if e.pos < len(e.its):
                keep.append(e)
            if not any(s.credit() > 0 for s in live):
                break
        keep.extend(self.ready)
        self.ready = keep

    def _fits(self, e: _Entry, s: Slot, it: int) -> bool:
        ok = e.fits.get(s.name)
        if ok is None:
            ok = e.fits[s.name] = fits(e.rec, s.resources, it)
        return ok

    def _no_partition(self, e: _Entry, live: List[Slot], out: List[Decision]) -> bool:
        """No partition can ever hold one iteration: a spanning run if the allocation can;
        else it waits for partitions to come (True: keep it), or fails once they all have."""
        its = e.its[e.pos:]
        whole = self.allocation(live)
        if whole is not None and fits(e.rec, whole, its[0]):
            self.spanning.add(e.rec, its)
            return False
        if self.settled and whole is not None:
            out.append(Impossible(e.rec, tuple(its), JobState.FAILED,
                                  f"resources: larger than the allocation ({whole.total_cores} cores on "
                                  f"{len(whole.nodes)} node(s))"))
            return False
        return True

    @staticmethod
    def allocation(slots: Sequence[Slot]) -> Optional[ResourceSet]:
        """The partitions' nodes as one set: what a spanning run can use."""
        if not slots:
            return None
        return ResourceSet(tuple(n for s in slots for n in s.resources.nodes), False, "allocation")

    # ---- reports that concern routing ----

    def finished(self, part: str, rec: JobRecord, its: Sequence[int], now: float,
                 refill: bool = True, first: Optional[float] = None) -> List[Decision]:
        """Iterations ``its`` of ``rec`` that ``part`` held reached a final state (or left it);
        ``first``: the earliest of their starts (the partition's clock), for its own rate."""
        slot = self.slots.get(part)
        if slot is None or not its:
            return []
        out: List[Decision] = []
        n = len(its)
        if self.spanning.running:
            for it in its:
                if (rec, it) in self.spanning.running:
                    n -= 1
                    out.extend(self.spanning.ended(rec, it, now, self))
        if n:
            slot.release(rec, n, cost(rec))
            slot.measure(n, now, first)
            if slot.cost == 0:
                slot.ran_dry(now, bool(self.ready))
        # refill in batches: once half of the partition's buffer is free (it still holds
        # a core's worth of work per core then, so it never idles), not per iteration
        if refill and self.ready and slot.wants(1):
            out.extend(self.pump(now))
        return out

    def reserved(self, part: str, msg: Reserved, now: float) -> List[Decision]:
        return self.spanning.reserved(part, msg, now, self)

    def refused(self, part: str, rec: JobRecord, its: Sequence[int], reason: str,
                now: float) -> Optional[List[Decision]]:
        """A partition dropped one iteration of a spanning run (it cannot set the cores aside):
        the decisions for it, or None when the drop is not about a spanning run."""
        if len(its) != 1 or not (self.spanning.current or self.spanning.running):
            return None
        return self.spanning.refused(part, rec, its[0], reason, now, self)

    def abandoned(self, part: str, rec: JobRecord, it: int, now: float) -> Optional[List[Decision]]:
        """A spanning run ended after being killed because a partition it used was lost: re-run
        it (once, like the partition's other work), or None if it ended by itself."""
        why = self.spanning.abandoned(rec, it)
        if why is None:
            return None
        out = self.spanning.ended(rec, it, now, self)
        again = not rec.canceled and self.retries.again_lost(rec, (it,))[0]
        if not again:
            state = JobState.CANCELED if rec.canceled else JobState.FAILED
            out.append(Impossible(rec, (it,), state, f"{why} (after {rec.spec.retry_lost} re-run(s))"
                                  if not rec.canceled else f"canceled; {why}"))
        else:
            out.append(Requeue(rec, (it,), why))
            self.spanning.queue.appendleft((rec, it))
        return out

    # ---- cancel and finish ----

    def cancel(self, rec: JobRecord, reason: str, now: float,
               its: Optional[Sequence[int]] = None) -> List[Decision]:
        """Unsent iterations (all, or those of ``its``) end CANCELED here; partitions holding
        some are told (a CancelJob naming the iterations, when only some are canceled)."""
        wanted = None if its is None else set(its)
        if wanted is None:
            unsent = [it for e in self.ready if e.rec is rec for it in e.its[e.pos:]]
            self.ready = deque(e for e in self.ready if e.rec is not rec)
        else:
            unsent = self._unqueue(rec, wanted)
        spanning_unsent, out = self.spanning.cancel(rec, reason, now, self, wanted)
        unsent.extend(spanning_unsent)
        for name, s in sorted(self.slots.items()):
            held = s.held.get(rec)
            if held is None:
                continue
            if wanted is None:
                out.append(Tell(name, CancelJob(rec.name, reason, now)))
                continue
            mine = tuple(sorted(it for it in wanted if any(it in b for b in held.batches)))
            if mine:
                out.append(Tell(name, CancelJob(rec.name, reason, now, mine)))
        for run in self.spanning.running.values():
            if run.rec is rec and run.leader and (wanted is None or run.it in wanted):
                out.append(Tell(run.leader, CancelJob(rec.name, reason, now, None if wanted is None else (run.it,))))
        if unsent:
            out.insert(0, Impossible(rec, tuple(sorted(unsent)), JobState.CANCELED, reason))
        return out

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

    def drop_unsent(self, reason: str, state: JobState = JobState.CANCELED, now: float = 0.0) -> List[Decision]:
        """Nothing more is sent: what waits here ends now in ``state`` (CANCELED by a finish,
        INTERRUPTED when the run stops resumably), a spanning run being gathered included."""
        out: List[Decision] = []
        for e in self.ready:
            if not e.rec.state.is_final:
                out.append(Impossible(e.rec, tuple(e.its[e.pos:]), state, reason))
        self.ready.clear()
        for rec, it in self.spanning.queue:
            out.append(Impossible(rec, (it,), state, reason))
        self.spanning.queue.clear()
        run = self.spanning.current
        if run is not None:
            out.extend(self.spanning.abort_gathering(reason, now, self))
            out.append(Impossible(run.rec, (run.it,), state, reason))
        return out

    # ---- for queries ----

    def stats(self) -> List[Dict[str, object]]:
        return [{"name": s.name, "cores": s.cores, "nodes": s.nodes, "tags": list(s.tags),
                 "outstanding": sum(h.count for h in s.held.values()), "sent": s.sent, "done": s.done,
                 "draining": s.draining, "joined": s.joined} for s in self.slots.values()]

    def validate(self) -> None:
        """For tests: every partition's account agrees with the iterations' states."""
        runs = [r for r in (self.spanning.current, *self.spanning.running.values()) if r is not None]
        for s in self.slots.values():
            total = 0
            for rec, h in s.held.items():
                if h.count <= 10_000:  # a bigger account is checked by its count alone (validate runs often)
                    left = h.unfinished()
                    assert h.count == len(left), f"{s.name}: holds {h.count} of {rec.name}, {len(left)} unfinished"
                assert 0 < h.count <= sum(len(b) for b in h.batches), f"{s.name}: bad count for {rec.name}"
                total += h.count * cost(rec)
            total += sum(r.asked.get(s.name, 0) for r in runs)
            assert s.cost == total, f"{s.name}: cost {s.cost} != {total}"

    @property
    def outstanding(self) -> int:
        """Iterations granted and not yet final, in every partition (spanning runs included)."""
        return sum(h.count for s in self.slots.values() for h in s.held.values()) + len(self.spanning.running)
