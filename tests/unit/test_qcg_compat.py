"""QCG-PilotJob's semantics in the pure cores: iterations by name, per-iteration dependencies,
cancel of single iterations, variables per request, QCG-shaped answers and events.

The end-to-end check with QCG-PilotJob's own client is tests/integration/test_qcg_client.py;
these pin each rule down where it is decided.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from hpilot.governor.core.events import StateEvent
from hpilot.governor.core.states import JobState
from hpilot.governor.service.qcgevents import Topics, frames
from hpilot.partition.core import IterationsDropped, KillTask
from hpilot.partition.messages import CancelJob, Work
from hpilot.partition.resources import local_resources

from tests.unit.cores import SHAPES
from tests.unit.test_governor_core import Gov, done, jobdesc, messages
from tests.unit.test_partition_core import Driver, iterative


@pytest.fixture(params=SHAPES)
def gov(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gov]:
    g = Gov(tmp_path, request.param)
    yield g
    g.core.validate()


def each(name: str, n: int, *after: str) -> Dict[str, Any]:
    return jobdesc(name, iterations=n, after=[f"{a}:${{it}}" for a in after])


def sent(actions: List[Any], job: str) -> List[int]:
    return [it for w in messages(actions, Work) if w.spec.job == job for it in w.iterations]


# ---- per-iteration dependencies ----


def test_iteration_waits_for_its_own_predecessor(gov: Gov) -> None:
    actions = gov.submit_ok(jobdesc("a", iterations=3), each("b", 3, "a"))
    assert sent(actions, "a") == [0, 1, 2] and sent(actions, "b") == []
    assert sent(gov.run("a", 1), "b") == [1]  # b:1 goes as soon as a:1 succeeded
    assert sent(gov.run("a", 0), "b") == [0]
    for it in (0, 1):
        gov.run("b", it)
    assert gov.state("b") is JobState.EXECUTING
    actions = gov.run("a", 2)
    assert sent(actions, "b") == [2] and done(actions) == ["a"]
    assert done(gov.run("b", 2)) == ["b"] and gov.state("b") is JobState.SUCCEED


def test_failed_predecessor_omits_only_its_iteration_and_the_chain_after_it(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=3), each("b", 3, "a"), each("c", 3, "b"), jobdesc("w", after=["b"]))
    actions = gov.run("a", 1, exit_code=2)
    b = gov.core.registry.get("b")
    c = gov.core.registry.get("c")
    assert b is not None and c is not None
    assert b.it_state(1) is JobState.OMITTED and c.it_state(1) is JobState.OMITTED
    assert gov.state("w") is JobState.OMITTED  # a whole-job dependant of b: b can no longer succeed
    assert "w" in done(actions)
    for it in (0, 2):
        gov.run("a", it)
        gov.run("b", it)
        gov.run("c", it)
    # as QCG-PilotJob: a job with iterations omitted one by one ends FAILED
    assert gov.states("a", "b", "c") == ["FAILED", "FAILED", "FAILED"]
    assert [c.it_state(i).value for i in range(3)] == ["SUCCEED", "OMITTED", "SUCCEED"]


def test_predecessor_already_done_at_submit(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=2))
    gov.run("a", 0)
    gov.run("a", 1, exit_code=1)
    actions = gov.submit_ok(each("b", 2, "a"))
    assert sent(actions, "b") == [0]
    b = gov.core.registry.get("b")
    assert b is not None and b.it_state(1) is JobState.OMITTED


def test_whole_job_dependency_holds_back_ready_iterations(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=2), jobdesc("gate"), {**each("b", 2, "a"),
                                                                 "dependencies": {"after": ["a:${it}", "gate"]}})
    assert sent(gov.run("a", 0), "b") == []  # b waits for gate as a whole
    assert sent(gov.run("gate"), "b") == [0]
    assert sent(gov.run("a", 1), "b") == [1]


def test_iteration_dependency_errors_name_the_job_and_field(gov: Gov) -> None:
    gov.submit_ok(jobdesc("plain"), jobdesc("short", iterations=2))
    for job, why in ((each("x", 3, "plain"), "has no iterations"),
                     (each("x", 3, "short"), "iterations 0..1"),
                     (each("x", 3, "nope"), "unknown job 'nope'"),
                     (each("x", 3, "x"), "cannot depend on itself"),
                     ({**jobdesc("x"), "dependencies": {"after": ["short:${it}"]}}, "needs an iterative job"),
                     ({**jobdesc("x", iterations=2), "dependencies": {"after": ["sh${it}:1"]}}, "'job:${it}'")):
        resp = gov.submit_bad(job)
        assert why in resp["message"] and "dependencies.after" in resp["message"], resp["message"]


def test_cycle_through_iteration_dependencies_is_refused(gov: Gov) -> None:
    resp = gov.submit_bad(each("a", 2, "b"), each("b", 2, "a"))
    assert "cycle" in resp["message"]


# ---- single iterations by name ----


def test_status_and_info_of_one_iteration(gov: Gov) -> None:
    gov.submit_ok(jobdesc("s", iterations=3), jobdesc("p"))
    gov.run("s", 1, exit_code=4)
    resp, _ = gov.request({"request": "jobStatus", "jobNames": ["s:1", "s:2"]})
    assert resp["data"]["jobs"]["s:1"] == {"status": 0, "data": {"jobName": "s:1", "status": "FAILED",
                                                                 "messages": "s:1: exit code 4"}}
    assert resp["data"]["jobs"]["s:2"]["data"]["status"] == "QUEUED"
    resp, _ = gov.request({"request": "jobInfo", "jobNames": ["s:1"]})
    info = resp["data"]["jobs"]["s:1"]["data"]
    assert info["runtime"]["exit_code"] == "4" and "iterations" not in info
    resp, _ = gov.request({"request": "jobStatus", "jobNames": ["s:7"]})
    assert resp["code"] == 1 and resp["message"].startswith("Unknown iteration 7 for job s")
    # a plain job has no iterations: QCG-PilotJob answers that name alone with an error
    resp, _ = gov.request({"request": "jobStatus", "jobNames": ["p:0"]})
    assert resp["code"] == 0 and resp["data"]["jobs"]["p:0"]["status"] == 1


def test_cancel_of_queued_and_running_iterations(gov: Gov) -> None:
    gov.submit_ok(jobdesc("s", iterations=4))
    gov.started("s", 0)
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["s:0", "s:3"]})
    assert resp["code"] == 0 and resp["data"]["canceled"] == 2 and "errors" not in resp["data"]
    assert [(m.job, m.iterations) for m in messages(actions, CancelJob)] == [("s", (0,)), ("s", (3,))]
    gov.finished("s", 0, exit_code=143, reason="canceled by the user", canceled=True)
    gov.dropped("s", [3], canceled=True)
    gov.run("s", 1)
    actions = gov.run("s", 2)
    # as QCG-PilotJob: canceled one by one, the job did not do all its work: FAILED, not CANCELED
    assert done(actions) == ["s"] and gov.state("s") is JobState.FAILED
    resp, _ = gov.request({"request": "cancelJob", "jobNames": ["s:1", "s:9"]})
    assert resp["code"] == 0 and resp["data"]["canceled"] == 0 and set(resp["data"]["errors"]) == {"s:1", "s:9"}


def test_cancel_of_an_iteration_still_waiting_for_its_predecessor(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=2), each("b", 2, "a"))
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["b:1"]})
    assert resp["data"]["canceled"] == 1 and messages(actions, CancelJob) == []
    b = gov.core.registry.get("b")
    assert b is not None and b.it_state(1) is JobState.CANCELED
    gov.run("a", 0)
    assert sent(gov.run("a", 1), "b") == []  # never sent
    assert done(gov.run("b", 0)) == ["b"] and gov.state("b") is JobState.FAILED


def test_whole_cancel_drops_iterations_held_back(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a", iterations=2), each("b", 2, "a"))
    gov.run("a", 0)
    gov.started("b", 0)
    gov.request({"request": "cancelJob", "jobNames": ["b"]})
    b = gov.core.registry.get("b")
    assert b is not None and b.it_state(1) is JobState.CANCELED
    gov.finished("b", 0, exit_code=143, reason="canceled by the user", canceled=True)
    assert gov.state("b") is JobState.CANCELED
    assert sent(gov.run("a", 1), "b") == []


# ---- variables, answers, events ----


def test_rcnt_counts_every_submit_and_uniq_is_one_per_request(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"))
    gov.submit_bad(jobdesc("a"))  # refused, but counted (as QCG-PilotJob)
    gov.submit_ok(jobdesc("c"))
    recs = {n: gov.core.registry.get(n) for n in "abc"}
    args = {n: r.task.execution for n, r in recs.items() if r is not None}
    assert len(args) == 3
    assert gov.core.rcnt == 3


def test_submit_fills_jname_rcnt_uniq(gov: Gov) -> None:
    gov.submit_ok({"name": "j1", "execution": {"exec": "/bin/echo", "args": ["${jname}", "${rcnt}", "${uniq}"]}},
                  {"name": "j2", "execution": {"exec": "/bin/echo", "args": ["${uniq}"]}})
    gov.submit_ok({"name": "j3", "execution": {"exec": "/bin/echo", "args": ["${uniq}", "${rcnt}"]}})

    def args(name: str) -> List[str]:
        rec = gov.core.registry.get(name)
        assert rec is not None
        return [a.fill({}) for a in rec.task.execution.args]

    assert args("j1")[:2] == ["j1", "1"] and args("j3")[1] == "2"
    assert args("j1")[2] == args("j2")[0] != args("j3")[0]
    assert len(args("j1")[2]) == 36


def test_itval_needs_an_iterative_job(gov: Gov) -> None:
    resp = gov.submit_bad({"name": "x", "execution": {"exec": "/bin/echo", "args": ["${itval}"]}})
    assert "${itval} is defined only for iterative jobs" in resp["message"]


def test_status_all_jobs_finished_and_finish_data(gov: Gov) -> None:
    ask = {"request": "status", "options": {"allJobsFinished": True}}
    assert gov.request(ask)[0] == {"code": 0, "data": {"AllJobsFinished": True}}
    gov.submit_ok(jobdesc("a"))
    assert gov.request(ask)[0]["data"] == {"AllJobsFinished": False}
    gov.run("a")
    assert gov.request(ask)[0]["data"] == {"AllJobsFinished": True}
    resp, _ = gov.request({"request": "finish"})
    assert resp["code"] == 0 and set(resp["data"]) == {"when"}


def test_qcg_message_starts(gov: Gov) -> None:
    for payload, start in (({"request": "submit"}, "Invalid request: Wrong submit request - missing jobs data"),
                           ({"request": "jobInfo"}, "Invalid request: Wrong job info request - missing job names"),
                           ({"request": "removeJob", "jobNames": []},
                            "Invalid request: Wrong remove job request - missing job names"),
                           ({"request": "nope"}, "Invalid request: Unknown request name: nope")):
        resp, _ = gov.request(payload)
        assert resp["code"] == 1 and resp["message"].startswith(start), resp


def test_no_jobs_event_when_the_last_job_ends(gov: Gov) -> None:
    gov.core.emit_events = True
    gov.submit_ok(jobdesc("a"), jobdesc("b"))
    assert not [a for a in gov.run("a") if isinstance(a, StateEvent) and a.event["event"] == "nojobs"]
    events = [a.event for a in gov.run("b") if isinstance(a, StateEvent)]
    assert events[-1] == {"event": "nojobs"}


def test_qcg_frames_of_hpilot_events() -> None:
    topics = Topics()
    for sub in (b"\x01IFI", b"\x01JFI", b"\x01NOJ"):
        topics.update(sub)
    wanted = topics.wanted
    assert list(frames({"event": "job", "job": "a", "state": "EXECUTING"}, "m", wanted)) == []
    (jfi,) = frames({"event": "job", "job": "a", "state": "FAILED", "time": 1.0}, "m", wanted)
    assert jfi.startswith("JFI ") and json.loads(jfi[4:]) == {"manager": "m", "job": "a", "state": "FAILED"}
    (ifi,) = frames({"event": "iteration", "job": "a", "iteration": 3, "state": "SUCCEED"}, "m", wanted)
    assert json.loads(ifi[4:]) == {"manager": "m", "job": "a", "state": "SUCCEED", "it": 3}
    dropped = list(frames({"event": "iterations", "job": "a", "state": "CANCELED", "range": [2, 5]}, "m", wanted))
    assert [json.loads(f[4:])["it"] for f in dropped] == [2, 3, 4]
    assert list(frames({"event": "nojobs"}, "m", wanted)) == ['NOJ {"manager": "m"}']
    topics.update(b"\x00IFI")
    assert b"IFI" not in topics.wanted and topics
    topics.update(b"\x01")  # everything
    assert topics.wanted >= {b"JST", b"IST"}


# ---- the partition ----


def test_partition_cancels_single_iterations() -> None:
    d = Driver(local_resources("2"))
    s, its = iterative("job", 5)
    d.work(s, its)
    d.schedule()  # 0 and 1 run
    out = d.feed(CancelJob("job", "canceled by the user", 1.0, (1, 3)))
    assert [a for a in out if isinstance(a, KillTask)] == [KillTask("job:1", "canceled by the user")]
    (drop,) = [a for a in out if isinstance(a, IterationsDropped)]
    assert drop.iterations == (3,) and drop.canceled
    assert d.core.queued_iterations == 2  # 2 and 4 still to run
