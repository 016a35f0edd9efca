"""Partition boundaries are a routing detail: a job larger than any one partition runs on
cores gathered in several (pure governor core: events in, actions out, validate() after each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from hpilot.governor.core.events import (
    Action,
    ClientRequest,
    FenceLifted,
    FromPart,
    JobDone,
    PartitionGone,
    SendToPartition,
)
from hpilot.governor.core.spanning import plan
from hpilot.governor.core.states import JobState
from hpilot.partition.allocator import Request, Slot
from hpilot.partition.messages import (
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Release,
    Reserve,
    Reserved,
    RunReserved,
    Work,
)

from tests.unit.cores import make_core


def job(name: str, cores: Optional[int] = None, nodes: Optional[int] = None, iterations: int = 0,
        after: Sequence[str] = ()) -> Dict[str, Any]:
    res: Dict[str, Any] = {}
    if cores is not None:
        res["numCores"] = {"exact": cores}
    if nodes is not None:
        res["numNodes"] = {"exact": nodes}
    raw: Dict[str, Any] = {"name": name, "execution": {"exec": "/bin/true"}, "resources": res}
    if iterations:
        raw["iteration"] = {"stop": iterations}
    if after:
        raw["dependencies"] = {"after": list(after)}
    return raw


class Gov:
    """Partitions p0 (n1:4) and p1 (n2:4): 8 cores, no partition larger than 4."""

    def __init__(self, root: Path) -> None:
        self.core = make_core(root, "several")
        self.now = 10.0

    def feed(self, ev: Any) -> List[Action]:
        self.now += 1.0
        out = self.core.handle(ev)
        self.core.validate()
        return out

    def submit(self, *jobs: Dict[str, Any]) -> List[Action]:
        out = self.feed(ClientRequest({"request": "submit", "jobs": list(jobs)}, self.now))
        assert out[0].response["code"] == 0, out[0].response  # type: ignore[union-attr]
        return out[1:]

    def report(self, part: str, msg: Any) -> List[Action]:
        return self.feed(FromPart(part, msg))

    def reserved(self, part: str, job: str, it: int, *slots: Tuple[str, Tuple[int, ...]]) -> List[Action]:
        return self.report(part, Reserved(job, it, tuple(Slot(n, c) for n, c in slots), self.now))

    def run(self, part: str, job: str, it: int = 0, code: int = 0, reason: Optional[str] = None) -> List[Action]:
        self.report(part, IterationStarted(job, it, "n1[0:1:2:3],n2[0:1]", "/wd", self.now, self.now, 4, 99))
        return self.report(part, IterationFinished(job, it, code, self.now, self.now + 1, "n1[0:1:2:3],n2[0:1]",
                                                   "/wd", 4, reason))

    def state(self, name: str) -> JobState:
        rec = self.core.registry.get(name)
        assert rec is not None
        return rec.state


def sent(actions: List[Action], kind: type) -> List[Tuple[str, Any]]:
    return [(a.partition, _timeless(a.message)) for a in actions
            if isinstance(a, SendToPartition) and isinstance(a.message, kind)]


def _timeless(msg: Any) -> Any:
    """Messages compared without their time stamp."""
    import dataclasses

    return dataclasses.replace(msg, now=0.0) if hasattr(msg, "now") else msg


@pytest.fixture
def gov(tmp_path: Path) -> Iterator[Gov]:
    g = Gov(tmp_path)
    yield g
    g.core.validate()


def test_a_job_larger_than_any_partition_gathers_its_cores_then_runs_on_the_largest(gov: Gov) -> None:
    out = gov.submit(job("big", cores=6))
    asks = sent(out, Reserve)
    assert [(p, m.request.cores_min) for p, m in asks] == [("p0", 4), ("p1", 2)]
    assert sent(out, Work) == [], "nothing starts before every part is set aside"
    assert gov.reserved("p1", "big", 0, ("n2", (0, 1))) == []
    out = gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    ((leader, run),) = sent(out, RunReserved)
    assert leader == "p0" and run.iteration == 0 and run.foreign == (Slot("n2", (0, 1)),)
    out = gov.run("p0", "big")
    assert sent(out, Release) == [("p1", Release("big", 0, "the run ended"))]
    assert gov.state("big") is JobState.SUCCEED


def test_whole_nodes_are_gathered_from_several_partitions(gov: Gov) -> None:
    out = gov.submit(job("mpi", nodes=2))
    asks = sent(out, Reserve)
    assert [(p, m.request.nodes_min, m.request.whole_nodes) for p, m in asks] == [("p0", 1, True), ("p1", 1, True)]


def test_meanwhile_small_work_keeps_flowing_and_a_dependant_waits(gov: Gov) -> None:
    out = gov.submit(job("big", cores=6), job("small", iterations=4), job("after", after=["big"]))
    assert {p for p, _ in sent(out, Work)} == {"p0", "p1"}, "work that fits a partition is routed as always"
    gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    gov.reserved("p1", "big", 0, ("n2", (0, 1)))
    out = gov.run("p0", "big")
    assert [m.spec.job for _, m in sent(out, Work)] == ["after"]


def test_cancel_while_gathering_releases_what_was_set_aside(gov: Gov) -> None:
    gov.submit(job("big", cores=6, iterations=2))
    gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    out = gov.feed(ClientRequest({"request": "cancelJob", "jobNames": ["big"]}, gov.now))
    assert sorted(p for p, _ in sent(out, Release)) == ["p0", "p1"]
    assert gov.state("big") is JobState.CANCELED
    assert [d for d in out if isinstance(d, JobDone)], "nothing of it can still run"
    assert gov.reserved("p1", "big", 0, ("n2", (0, 1))) != [], "a late reservation is given back"


def test_a_partition_that_cannot_set_cores_aside_fails_the_iteration_with_its_reason(gov: Gov) -> None:
    gov.submit(job("big", cores=6))
    gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    out = gov.report("p1", IterationsDropped("big", (0,), "resources: node n2 lost", gov.now))
    assert sent(out, Release) == [("p0", Release("big", 0, "resources: node n2 lost"))]
    assert gov.state("big") is JobState.FAILED


def test_a_lost_leader_re_queues_the_run_once(gov: Gov) -> None:
    from hpilot.governor.core.events import PartitionJoined

    gov.feed(PartitionJoined("p2", (("n3", 4),), now=gov.now))
    gov.submit(job("big", cores=6))
    gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    gov.reserved("p1", "big", 0, ("n2", (0, 1)))
    gov.report("p0", IterationStarted("big", 0, "n1[0]", "/wd", gov.now, gov.now, 4, 1))
    out = gov.feed(PartitionGone("p0", "silent", False, gov.now))
    assert ("p1", Release("big", 0, "partition p0 lost: silent")) in sent(out, Release)
    rec = gov.core.registry.get("big")
    assert rec is not None and rec.it_state(0) is JobState.EXECUTING, "fenced: p0's run may still go on"
    assert not sent(out, Reserve)
    out = gov.feed(FenceLifted("p0", gov.now))
    assert rec.it_state(0) is JobState.QUEUED
    assert sorted(p for p, _ in sent(out, Reserve)) == ["p1", "p2"], "gathered again where it can be"
    gov.reserved("p1", "big", 0, ("n2", (0, 1, 2, 3)))
    gov.reserved("p2", "big", 0, ("n3", (0, 1)))
    gov.report("p1", IterationStarted("big", 0, "n2[0]", "/wd", gov.now, gov.now, 4, 2))
    gov.feed(PartitionGone("p1", "silent", False, gov.now))
    gov.feed(FenceLifted("p1", gov.now))
    assert gov.state("big") is JobState.FAILED, "lost twice: it does not run a third time"
    assert "after 1 re-run(s)" in " ".join(rec.messages)


def test_a_job_that_no_longer_fits_once_partitions_are_lost_fails(gov: Gov) -> None:
    gov.submit(job("big", cores=6))
    gov.feed(PartitionGone("p1", "silent", False, gov.now))
    assert gov.state("big") is JobState.FAILED
    assert "larger than the allocation" in " ".join(gov.core.registry.get("big").messages)  # type: ignore[union-attr]


def test_a_lost_contributor_kills_the_run_which_runs_again_once(gov: Gov) -> None:
    gov.submit(job("big", cores=6))
    gov.reserved("p0", "big", 0, ("n1", (0, 1, 2, 3)))
    gov.reserved("p1", "big", 0, ("n2", (0, 1)))
    gov.report("p0", IterationStarted("big", 0, "n1[0]", "/wd", gov.now, gov.now, 4, 1))
    out = gov.feed(PartitionGone("p1", "silent", False, gov.now))
    ((leader, rel),) = sent(out, Release)
    assert leader == "p0" and rel.reason == "partition p1 lost: silent"
    out = gov.report("p0", IterationFinished("big", 0, -15, gov.now, gov.now, "n1[0]", "/wd", 4, rel.reason))
    rec = gov.core.registry.get("big")
    assert rec is not None and rec.it_state(0) is JobState.QUEUED, "killed for the lost partition: re-queued"
    assert gov.state("big") is not JobState.FAILED


def test_the_plan_takes_the_fewest_partitions() -> None:
    from hpilot.governor.core.events import PartitionJoined
    from hpilot.governor.core.routing import Slot as PartSlot

    parts = [PartSlot(PartitionJoined("a", (("a1", 2),))), PartSlot(PartitionJoined("b", (("b1", 8), ("b2", 8)))),
             PartSlot(PartitionJoined("c", (("c1", 4),)))]
    assert [(p, r.cores_min) for p, r in plan(Request(cores_min=20, cores_max=20), parts) or []] == [
        ("b", 16), ("c", 4)]
    assert plan(Request(cores_min=40, cores_max=40), parts) is None
    nodes = plan(Request(cores_min=4, cores_max=4, nodes_min=3, nodes_max=3), parts)
    assert [(p, r.nodes_min) for p, r in nodes or []] == [("b", 2), ("c", 1)], "a1 has too few cores"
