"""The placement strategy, and the governor core's routing by credit (pure: events in, actions out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from hpilot.governor.core.events import (
    ClientRequest,
    FenceLifted,
    FromPart,
    PartitionGone,
    PartitionJoined,
    SendToPartition,
    Settled,
)
from hpilot.governor.core.governor import GovernorConfig, GovernorCore
from hpilot.governor.core.placement import Candidate, Placement
from hpilot.governor.core.routing import HORIZON, MAX_PREFETCH, PREFETCH, RATE_WINDOW
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import (
    IterationFinished,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
    Work,
)


def test_split_in_proportion_to_credit_and_never_beyond() -> None:
    p = Placement()
    got = dict(p.split(30, 1, [Candidate("a", 10, 5), Candidate("b", 20, 10), Candidate("c", 0, 4)]))
    assert got == {"b": 20, "a": 10}
    got = dict(p.split(9, 1, [Candidate("a", 10, 5), Candidate("b", 20, 10)]))
    assert sum(got.values()) == 9 and got["b"] > got["a"] > 0
    assert p.split(5, 4, [Candidate("a", 3, 4)]) == []  # not enough credit for one iteration
    assert p.split(5, 2, [Candidate("a", 5, 4)]) == [("a", 2)]
    assert p.split(0, 1, [Candidate("a", 5, 4)]) == []


def test_the_end_of_the_work_evens_out_what_each_was_given_per_core() -> None:
    p = Placement()
    # 6 left, room for all of it anywhere: b is 6 behind a, so b gets them (no last wave on a)
    assert p.split(6, 1, [Candidate("a", 20, 4, given=10), Candidate("b", 20, 4, given=4)]) == [("b", 6)]
    # per core: c has twice the cores, so twice the share
    got = dict(p.split(9, 1, [Candidate("a", 20, 4), Candidate("c", 20, 8)]))
    assert got == {"a": 3, "c": 6}
    # never beyond credit: what the one behind cannot take goes by credit to the others
    got = dict(p.split(6, 1, [Candidate("a", 20, 4, given=10), Candidate("b", 2, 4, given=0)]))
    assert got == {"b": 2, "a": 4}
    # more work than room: the end is not near, credit alone decides
    assert dict(p.split(50, 1, [Candidate("a", 10, 4, given=100), Candidate("b", 10, 4)])) == {"a": 10, "b": 10}


def _job(name: str, n: int, cores: int = 1, after: Any = None) -> Dict[str, Any]:
    j: Dict[str, Any] = {"name": name, "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"exact": cores}}}
    if n > 1:
        j["iteration"] = {"start": 0, "stop": n}
    if after:
        j["dependencies"] = {"after": after}
    return j


class Gov:
    def __init__(self, root: Path, expect: int = 0) -> None:
        self.core = GovernorCore(GovernorConfig(root_wd=str(root)))
        self.core.expect_partitions = expect
        self.sent: List[SendToPartition] = []

    def feed(self, ev: Any) -> List[Any]:
        out = self.core.handle(ev)
        self.sent += [a for a in out if isinstance(a, SendToPartition)]
        self.core.validate()
        return out

    def submit(self, *jobs: Dict[str, Any]) -> None:
        out = self.feed(ClientRequest({"request": "submit", "jobs": list(jobs)}, 1.0))
        assert out[0].response["code"] == 0, out[0].response

    def work(self, part: str) -> List[int]:
        return [i for s in self.sent if s.partition == part and isinstance(s.message, Work)
                for i in s.message.iterations]

    def run(self, part: str, job: str, it: int, ok: bool = True, at: float = 3.0) -> None:
        self.feed(FromPart(part, IterationStarted(job, it, "n[0]", "/wd", at - 1.0, at - 1.0)))
        self.feed(FromPart(part, IterationFinished(job, it, 0 if ok else 1, at - 1.0, at, "n[0]", "/wd")))

    def run_all(self, part: str, job: str, its: List[int], started: float, ended: float) -> None:
        """A partition's report of a pass: ``its`` started at ``started`` and ended by ``ended``."""
        n = len(its)
        cols = (("n[0]",) * n, ("/wd",) * n)
        self.feed(FromPart(part, IterationsStarted(job, tuple(its), *cols, (started,) * n, (started,) * n,
                                                   (None,) * n, n)))
        self.feed(FromPart(part, IterationsSucceeded(job, tuple(its), *cols, (started,) * n, (ended,) * n, n)))

    def limit(self, part: str) -> int:
        assert self.core.router is not None
        return self.core.router.slots[part].limit

    def outstanding(self, part: str) -> int:
        assert self.core.router is not None
        return self.core.router.slots[part].cost


def test_work_waits_for_partitions_then_goes_within_credit(tmp_path: Path) -> None:
    g = Gov(tmp_path)
    g.submit(_job("a", 100))
    assert g.sent == []  # nobody registered yet
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    assert len(g.work("p1")) == 4 * PREFETCH
    g.feed(PartitionJoined("p2", (("n2", 8),)))  # late and bigger: gets work at once, more of it
    assert len(g.work("p2")) == 8 * PREFETCH
    for it in g.work("p1")[:3]:
        g.run("p1", "a", it)
    assert len(g.work("p1")) == 4 * PREFETCH  # refills come in batches, not per iteration
    g.run("p1", "a", g.work("p1")[3])
    assert len(g.work("p1")) == 4 * PREFETCH + 4  # half the buffer free: refilled


def test_lost_partition_requeued_once_then_failed(tmp_path: Path) -> None:
    g = Gov(tmp_path)
    g.submit(_job("a", 4))
    g.feed(PartitionJoined("p1", (("n1", 2),)))
    assert sorted(g.work("p1")) == [0, 1, 2, 3]
    g.feed(FromPart("p1", IterationStarted("a", 0, "n[0]", "/wd", 2.0, 2.0)))
    g.feed(PartitionGone("p1", "silent", False, 5.0))
    g.feed(PartitionJoined("p2", (("n2", 2),)))
    rec = g.core.registry.get("a")
    assert rec is not None and rec.it_state(0) is JobState.EXECUTING
    assert g.work("p2") == [], "fenced: p1's tasks may still run, nothing of it is sent elsewhere yet"
    g.feed(FenceLifted("p1", 12.0))
    assert sorted(g.work("p2")) == [0, 1, 2, 3]
    g.run("p2", "a", 0)
    g.feed(PartitionGone("p2", "silent", False, 6.0))
    g.feed(FenceLifted("p2", 13.0))
    assert rec.runs[0].attempts == 2
    assert all(rec.it_state(i) is JobState.FAILED for i in (1, 2, 3)) and rec.state is JobState.FAILED
    assert "after 1 re-run(s)" in " ".join(rec.messages)


def test_a_job_may_ask_for_more_re_runs_after_losses(tmp_path: Path) -> None:
    g = Gov(tmp_path)
    g.submit({**_job("a", 1), "hpilot": {"retry": {"lost": 2}}})
    for n, part in enumerate(("p1", "p2", "p3")):
        g.feed(PartitionJoined(part, ((f"n{n}", 2),)))
        assert g.work(part) == [0]
        g.feed(PartitionGone(part, "silent", False, 5.0 + n))
        g.feed(FenceLifted(part, 12.0 + n))
    rec = g.core.registry.get("a")
    assert rec is not None and rec.state is JobState.FAILED and "after 2 re-run(s)" in " ".join(rec.messages)


def test_too_big_fails_once_settled_and_dependants_omitted(tmp_path: Path) -> None:
    g = Gov(tmp_path, expect=2)
    g.submit(_job("big", 1, cores=4), _job("dep", 1, after=["big"]))
    g.feed(PartitionJoined("p1", (("n1", 2),)))
    assert g.core.registry.get("big").state is JobState.QUEUED  # type: ignore[union-attr]
    g.feed(Settled())
    assert g.core.registry.get("big").state is JobState.FAILED  # type: ignore[union-attr]
    assert g.core.registry.get("dep").state is JobState.OMITTED  # type: ignore[union-attr]


def test_cancel_drops_unsent_and_tells_holders(tmp_path: Path) -> None:
    g = Gov(tmp_path)
    g.submit(_job("a", 10))
    g.feed(PartitionJoined("p1", (("n1", 1),)))
    out = g.feed(ClientRequest({"request": "cancelJob", "jobNames": ["a"]}, 2.0))
    assert out[0].response["code"] == 0
    assert [type(s.message).__name__ for s in g.sent].count("CancelJob") == 1
    rec = g.core.registry.get("a")
    assert rec is not None and rec.counts[JobState.CANCELED] == 10 - PREFETCH


@pytest.mark.parametrize("n", [1_000_000])
def test_a_million_iterations_travel_as_ranges(tmp_path: Path, n: int) -> None:
    g = Gov(tmp_path)
    g.submit(_job("m", n))
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    w = g.sent[0].message
    assert isinstance(w, Work) and isinstance(w.iterations, range)


def test_lost_partition_of_a_canceled_job_does_not_requeue(tmp_path: Path) -> None:
    g = Gov(tmp_path)
    g.submit(_job("a", 2))
    g.feed(PartitionJoined("p1", (("n1", 2),)))
    g.feed(FromPart("p1", IterationStarted("a", 0, "n[0]", "/wd", 2.0, 2.0)))
    g.feed(ClientRequest({"request": "cancelJob", "jobNames": ["a"]}, 3.0))
    g.feed(PartitionGone("p1", "silent", False, 5.0))
    g.feed(FenceLifted("p1", 12.0))
    rec = g.core.registry.get("a")
    assert rec is not None and rec.state is JobState.CANCELED


def test_a_fast_partition_holds_what_it_finishes_in_the_horizon_a_slow_one_its_cores(tmp_path: Path) -> None:
    """Credit follows each partition's measured rate: short tasks travel in big batches
    (few round trips), while a partition of slow tasks holds no more than twice its cores."""
    g = Gov(tmp_path)
    g.submit(_job("a", 100_000))
    g.feed(PartitionJoined("fast", (("n1", 4),)))
    g.feed(PartitionJoined("slow", (("n2", 4),)))
    t, done = 10.0, 0
    while t < 10.0 + 3 * RATE_WINDOW:  # "fast" finishes up to 2,000 iterations a second
        batch = g.work("fast")[done:done + 20]
        for it in batch:
            g.run("fast", "a", it, at=t)
        done += len(batch)
        t += 0.01
    for k, it in enumerate(g.work("slow")[:8]):  # "slow": 8 over a second
        g.run("slow", "a", it, at=10.0 + 0.125 * (k + 1))
    assert g.outstanding("fast") > 4 * PREFETCH * 10
    assert g.outstanding("fast") <= min(int(2000 * 1.2 * HORIZON), 4 * MAX_PREFETCH)
    assert g.outstanding("slow") <= 4 * PREFETCH


def test_a_partition_more_than_half_full_is_not_topped_up_at_another_partitions_report(tmp_path: Path) -> None:
    """Each grant is a message the governor pays for: a partition that still holds more than
    half of its buffer refills at its own next report, not by the piece at every other's."""
    g = Gov(tmp_path)
    g.submit(_job("a", 1000))
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    g.feed(PartitionJoined("p2", (("n2", 4),)))
    assert len(g.work("p1")) == len(g.work("p2")) == 4 * PREFETCH
    g.run("p2", "a", g.work("p2")[0])  # p2 has room for one: not worth a message
    for it in g.work("p1")[:4]:  # p1 half empty: refilled
        g.run("p1", "a", it)
    assert len(g.work("p1")) == 4 * PREFETCH + 4
    assert len(g.work("p2")) == 4 * PREFETCH
    assert sum(1 for s in g.sent if s.partition == "p2") == 1
    for it in g.work("p2")[1:4]:  # now p2 is half empty too
        g.run("p2", "a", it)
    assert len(g.work("p2")) == 4 * PREFETCH + 4


def test_the_end_of_a_job_is_shared_by_every_partition_with_room(tmp_path: Path) -> None:
    """Near the end (less left than all the room), evening out wins over fewer messages: a
    partition with a little room takes its share, or the other would run a last wave alone."""
    g = Gov(tmp_path)
    g.submit(_job("a", 4 * PREFETCH * 2 + 3))
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    g.feed(PartitionJoined("p2", (("n2", 4),)))
    g.run("p2", "a", g.work("p2")[0])  # one free on p2
    for it in g.work("p1")[:4]:  # four free on p1: the last 3 are shared out, p2 included
        g.run("p1", "a", it)
    assert len(g.work("p2")) == 4 * PREFETCH + 1
    assert len(g.work("p1")) == 4 * PREFETCH + 2


def test_a_partition_that_ends_its_whole_buffer_within_a_window_grows_at_once() -> None:
    """From the start's floor (twice its cores), short tasks would take a round trip per
    buffer until the first rate window closed; a whole buffer done sooner grows the limit
    (2x at most, and no more than the rate says)."""
    from hpilot.governor.core.routing import Slot

    s = Slot(PartitionJoined("p", (("n1", 4),)))
    assert s.limit == 4 * PREFETCH
    t = 0.0
    s.measure(s.limit, t)  # opens the window: these ended before it
    limits = []
    for _ in range(4):
        t += 0.002  # a whole buffer every 2 ms: 4,000 a second
        s.measure(s.limit, t)
        limits.append(s.limit)
    assert t < RATE_WINDOW
    assert limits == [16, 32, 64, 128]
    slower = Slot(PartitionJoined("q", (("n1", 64),)))  # a whole buffer in 0.18 s: as its rate says
    slower.measure(128, 0.0)
    slower.measure(128, 0.18)
    assert slower.limit == int(128 / 0.18 * HORIZON) < 2 * 128


def test_a_report_does_not_scan_the_ready_queue_when_no_partition_wants_work(tmp_path: Path) -> None:
    """Many jobs wait; once the partition that reported is refilled and the others are more
    than half full, the grant stops at the head of the queue (each report scanning thousands
    of waiting jobs made a 10,000-job DAG 30 times slower)."""
    g = Gov(tmp_path)
    g.submit(*(_job(f"j{k}", 50) for k in range(300)))
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    g.feed(PartitionJoined("p2", (("n2", 4),)))
    calls: List[Any] = []
    split = g.core.router.placement.split
    g.core.router.placement.split = lambda *a: calls.append(a) or split(*a)  # type: ignore[method-assign]
    g.run("p2", "j0", g.work("p2")[0])  # one free on p2: not worth a message
    for it in g.work("p1")[:4]:  # half of p1 free: refilled from the head of the queue
        g.run("p1", "j0", it)
    assert len(g.work("p1")) == 4 * PREFETCH + 4 and len(g.work("p2")) == 4 * PREFETCH
    assert len(calls) <= 2, f"{len(calls)} jobs looked at for one refill"


def test_single_iteration_jobs_take_whatever_credit_is_left(tmp_path: Path) -> None:
    """A DAG's jobs are one iteration each: at a refill, a partition with only a little credit
    free takes its share too (the end-of-work rule, not the half-free one)."""
    g = Gov(tmp_path)
    g.submit(*(_job(f"j{k}", 1) for k in range(40)))
    g.feed(PartitionJoined("p1", (("n1", 4),)))
    g.feed(PartitionJoined("p2", (("n2", 4),)))

    def jobs(part: str) -> List[str]:
        return [s.message.spec.job for s in g.sent if s.partition == part and isinstance(s.message, Work)]

    assert len(jobs("p1")) == len(jobs("p2")) == 4 * PREFETCH
    g.run("p2", jobs("p2")[0], 0)  # one free on p2: no refill yet
    for job in jobs("p1")[:4]:  # half of p1 free: a refill, and p2's one free core gets a job too
        g.run("p1", job, 0)
    assert len(jobs("p1")) == 4 * PREFETCH + 4 and len(jobs("p2")) == 4 * PREFETCH + 1


def _paced(g: Gov, took: float, passes: int) -> List[int]:
    """A partition of 8 cores that the governor feeds once every 0.3 s (its pace); each batch
    takes the partition ``took`` seconds: the sizes of the batches it got."""
    sizes: List[int] = []
    t = 10.0
    for _ in range(passes):
        batch = g.work("p1")[sum(sizes):]
        sizes.append(len(batch))
        g.run_all("p1", "a", batch, t, t + took)
        t += 0.3
    return sizes


def test_a_partition_idle_for_want_of_work_gets_what_it_can_finish_not_the_governors_pace(tmp_path: Path) -> None:
    """It ran dry with work waiting, so the rate over a window measured the governor's pace:
    sized by it, each of 8 partitions got an eighth of the pace and made 8 times the round
    trips.  Its own rate (a batch ended 1 ms after it started) lets its batches grow, twice per
    time it runs dry, up to its ceiling; windows in which it ran dry do not shrink them."""
    g = Gov(tmp_path)
    g.submit(_job("a", 100_000))
    g.feed(PartitionJoined("p1", (("n1", 8),)))
    sizes = _paced(g, 0.001, 12)
    ceiling = 8 * MAX_PREFETCH
    assert sizes[0] == 8 * PREFETCH and sizes[-2:] == [ceiling, ceiling]
    assert all(b >= min(2 * a, ceiling) for a, b in zip(sizes, sizes[1:])), sizes


def test_a_partition_busy_all_the_time_it_holds_work_is_not_given_more(tmp_path: Path) -> None:
    """The same pace, but each batch keeps the partition busy the whole 0.3 s: its own rate is
    the pace, and the batch stays what the window measures (about twice its cores)."""
    g = Gov(tmp_path)
    g.submit(_job("a", 100_000))
    g.feed(PartitionJoined("p1", (("n1", 8),)))
    sizes = _paced(g, 0.3, 8)
    assert max(sizes) <= 2 * 8 * PREFETCH, sizes


def test_running_dry_at_the_end_of_the_work_does_not_grow_the_batches(tmp_path: Path) -> None:
    """Nothing waiting: the partition is idle because the work is done, not for want of it."""
    g = Gov(tmp_path)
    g.submit(_job("a", 8 * PREFETCH))
    g.feed(PartitionJoined("p1", (("n1", 8),)))
    g.run_all("p1", "a", g.work("p1"), 10.0, 10.001)
    assert g.limit("p1") == 8 * PREFETCH
    g.submit(_job("b", 1000))
    assert len([s for s in g.sent if s.partition == "p1"]) == 2 and len(g.work("p1")) == 2 * 8 * PREFETCH
