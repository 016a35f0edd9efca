"""A partition's reports as batches (governor/core/batches.py): the same states, runs, journal
and answers as the same reports one by one, in both shapes; and the batch over the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from hpilot.governor.core.events import FromPart, Record
from hpilot.governor.core.states import JobState
from hpilot.governor.service import journal
from hpilot.governor.service.resume import restore
from hpilot.partition import batchwire
from hpilot.partition.messages import (
    IterationFinished,
    IterationsRan,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
    batched,
)

from tests.unit.cores import SHAPES, make_core
from tests.unit.test_governor_core import Gov, done, jobdesc


@pytest.fixture(params=SHAPES)
def gov(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gov]:
    g = Gov(tmp_path, request.param)
    yield g
    g.core.validate()


def starts(job: str, its: List[int], at: float) -> List[IterationStarted]:
    return [IterationStarted(job, it, f"n1[{it % 4}]", "/wd", at - 0.5, at, 1, 100 + it) for it in its]


def ends(job: str, its: List[int], at: float, code: int = 0) -> List[IterationFinished]:
    return [IterationFinished(job, it, code, at - 1.0, at, f"n1[{it % 4}]", "/wd", 1) for it in its]


def feed(gov: Gov, reports: List[Any]) -> List[Any]:
    """One loop pass per partition holding the iterations, batched as a partition sends it."""
    by_part: Dict[str, List[Any]] = {}
    for r in reports:
        it = r.iteration
        by_part.setdefault(gov.where.of(r.job, it), []).append(r)
    out: List[Any] = []
    for part, rs in by_part.items():
        for msg in batched(rs):
            out += gov._record(gov.core.handle(FromPart(part, msg)))
    return out


def test_batches_give_the_states_counts_and_runs_of_reports_one_by_one(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=8), jobdesc("after", after=["sweep"]))
    feed(gov, starts("sweep", list(range(8)), 10.0))
    rec = gov.core.registry.get("sweep")
    assert rec is not None and rec.counts[JobState.EXECUTING] == 8 and gov.state("sweep") is JobState.EXECUTING
    out = feed(gov, ends("sweep", [0, 1, 2, 5], 11.0) + ends("sweep", [3], 11.0, code=4))
    assert rec.counts[JobState.SUCCEED] == 4 and rec.counts[JobState.FAILED] == 1
    assert rec.runs[5].exit_code == 0 and rec.runs[5].allocation == "n1[1]" and rec.runs[5].finished == 11.0
    assert rec.runs[3].exit_code == 4 and rec.failures[0].iteration == 3
    assert done(out) == ["after"], "a failed iteration: the job can no longer succeed, its dependant is omitted"
    out = feed(gov, ends("sweep", [4, 6, 7], 12.0))
    assert done(out) == ["sweep"], "the last batch ends the job"
    assert gov.states("sweep", "after") == ["FAILED", "OMITTED"]


def test_an_iteration_dependency_is_released_from_a_batch(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=4), jobdesc("b", after=["a:2"]))
    feed(gov, starts("a", [0, 1, 2, 3], 5.0))
    out = feed(gov, ends("a", [1, 2], 6.0))
    assert [m.spec.job for m in (a.message for a in out if hasattr(a, "message"))
            if hasattr(m, "spec")] == ["b"], "b waited on a:2 only"


def test_a_repeated_success_counts_once(gov: Gov) -> None:
    gov.submit_ok(jobdesc("s", iterations=2))
    feed(gov, starts("s", [0, 1], 5.0))
    feed(gov, ends("s", [0], 6.0))
    feed(gov, ends("s", [0, 1], 7.0))
    rec = gov.core.registry.get("s")
    assert rec is not None and rec.counts[JobState.SUCCEED] == 2 and rec.runs[0].finished == 6.0


def test_a_batch_journals_one_record_and_a_resume_rebuilds_it(tmp_path: Path) -> None:
    core = make_core(tmp_path, nodes="n1:4")
    core.journaling = True
    recs: List[bytes] = []

    def go(ev: Any) -> None:
        recs.extend(a.data for a in core.handle(ev) if isinstance(a, Record))
        core.validate()

    from hpilot.governor.core.events import ClientRequest

    go(ClientRequest({"request": "submit", "jobs": [jobdesc("s", iterations=6)]}, 1.0))
    go(FromPart("p0", batched(starts("s", list(range(6)), 2.0))[0]))
    go(FromPart("p0", batched(ends("s", [0, 1, 2, 3], 3.0))[0]))
    assert sum(b'"t":"ok"' in r for r in recs) == 1 and sum(b'"t":"started"' in r for r in recs) == 1
    run = tmp_path / ".hpilot" / "r1"
    run.mkdir(parents=True)
    (run / journal.FILE).write_bytes(journal.frame("H", json.dumps({"version": journal.VERSION})) + b"".join(recs))
    second = make_core(tmp_path, nodes="n1:4")
    actions, plan = restore(second, str(run), 9.0)
    assert (plan.iterations_done, plan.to_run) == (4, 2)
    assert sorted(pid for pid, _ in plan.orphans) == [104, 105], "the two still running are the orphans"
    rec = second.registry.get("s")
    assert rec is not None and rec.runs[3].finished == 3.0 and rec.runs[3].allocation == "n1[3]"


def test_batches_cross_the_wire_in_columns() -> None:
    msgs = batched(starts("s", [3, 1, 2], 5.0) + ends("s", [7, 9], 6.0) + ends("s", [8], 6.0, code=2))
    assert [type(m) for m in msgs] == [IterationsStarted, IterationsSucceeded, IterationFinished]
    assert msgs[0].iterations == (3, 1, 2) and msgs[0].cores == 3 and msgs[1].iterations == (7, 9)
    got, errors = batchwire.decode_frame(batchwire.encode_batch(msgs))
    assert errors == [] and got == msgs
    frame = json.loads(batchwire.encode_batch(msgs))
    frame[0][4][1] = 7  # a wd that is not text: that batch is dropped with its reason, the rest kept
    got, errors = batchwire.decode_frame(json.dumps(frame).encode())
    assert got == msgs[1:] and "IterationsStarted" in errors[0]
    frame = json.loads(batchwire.encode_batch(msgs))
    frame[1][2].append(10)  # columns of different lengths
    got, errors = batchwire.decode_frame(json.dumps(frame).encode())
    assert got == [msgs[0], msgs[2]] and "IterationsSucceeded" in errors[0]


def test_a_pass_keeps_each_start_before_its_end() -> None:
    pass_: List[Any] = starts("s", [0], 1.0) + ends("s", [0], 2.0) + starts("s", [1], 2.0)
    msgs = batched(pass_)
    kinds: List[Tuple[str, Tuple[int, ...]]] = [(type(m).__name__, m.iterations) for m in msgs]
    assert kinds == [("IterationsRan", (0,)), ("IterationsStarted", (1,))]


def test_what_starts_and_succeeds_in_one_pass_is_one_batch() -> None:
    same = [IterationFinished("s", it, 0, 5.0, 6.0, f"n1[{it % 4}]", "/wd", 1) for it in (3, 1)]
    msgs = batched(starts("s", [0, 1, 2, 3], 5.0) + same + ends("s", [9], 6.0))
    kinds = [(type(m).__name__, m.iterations) for m in msgs]
    assert kinds == [("IterationsRan", (3, 1)), ("IterationsStarted", (0, 2)), ("IterationsSucceeded", (9,))]
    ran = msgs[0]
    assert isinstance(ran, IterationsRan) and ran.begun is None and ran.pids == (103, 101) and ran.cores == 2
    assert ran.as_succeeded().started == (5.0, 5.0) and ran.finished == (6.0, 6.0)
    other = batched(starts("s", [4], 5.0) + ends("s", [4], 7.0))[0]  # the end's own start differs: kept
    assert isinstance(other, IterationsRan) and other.begun == (6.0,) and other.as_succeeded().started == (6.0,)
    twice = starts("s", [5], 1.0) + starts("s", [5], 2.0) + ends("s", [5], 3.0)
    assert [type(m) for m in batched(twice)] == [IterationsStarted, IterationsSucceeded], "order matters: no pair"


def test_a_ran_batch_gives_what_its_start_and_success_give(tmp_path: Path) -> None:
    def run(split: bool) -> Tuple[Any, List[bytes]]:
        core = make_core(tmp_path, nodes="n1:4")
        core.journaling = True
        recs: List[bytes] = []
        from hpilot.governor.core.events import ClientRequest

        core.handle(ClientRequest({"request": "submit", "jobs": [jobdesc("s", iterations=3)]}, 1.0))
        ran = batched(starts("s", [0, 1, 2], 2.0) + ends("s", [0, 1, 2], 3.0))[0]
        assert isinstance(ran, IterationsRan)
        msgs: List[Any] = [ran.as_started(), ran.as_succeeded()] if split else [ran]
        for m in msgs:
            recs.extend(a.data for a in core.handle(FromPart("p0", m)) if isinstance(a, Record))
            core.validate()
        return core, recs

    (one, one_recs), (two, two_recs) = run(False), run(True)
    a, b = one.registry.get("s"), two.registry.get("s")
    assert a is not None and b is not None and a.state is b.state is JobState.SUCCEED
    def cols(r: Any) -> Tuple[Any, ...]:
        return (r.allocation, r.wd, r.scheduled, r.started, r.finished, r.exit_code)

    assert [cols(a.runs[i]) for i in range(3)] == [cols(b.runs[i]) for i in range(3)]
    assert cols(a.runs[2]) == ("n1[2]", "/wd", 1.5, 2.0, 3.0, 0)
    assert one_recs == two_recs


def test_a_ran_batch_crosses_the_wire_packed_even_alone() -> None:
    for msg in (batched(starts("s", [0, 1, 2], 5.0) + ends("s", [0, 1, 2], 6.0))[0],
                IterationsRan("s", (7,), ("a",), ("/w",), (1.0,), (2.0,), None, (3.0,), (None,), 1)):
        frame = batchwire.encode_batch([msg])
        assert frame.startswith(b'[["R"'), frame[:40]
        assert batchwire.decode_frame(frame) == ([msg], [])
    raw = json.loads(batchwire.encode_batch([msg]))
    raw[0][7] = {"f": "AAAA"}  # a begun column of the wrong length: dropped, with its reason
    got, errors = batchwire.decode_frame(json.dumps(raw).encode())
    assert got == [] and "IterationsRan" in errors[0]
