"""The governor's pure core (governor/core/governor.py): requests and partition reports in, actions out.

Every scenario goes through :class:`Gov`, which stamps the time, checks that the
first action is the Reply, and calls ``core.validate()`` after each event.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import pytest
from hpilot.governor.core.events import (
    Action,
    ClientRequest,
    FinishService,
    FromPart,
    JobDone,
    Reply,
    SendToPartition,
)
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import (
    CancelJob,
    FromPartition,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Shutdown,
    Work,
)

from tests.unit.cores import FakeHost, Where, make_core

T = TypeVar("T")
HISTORY_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: ([A-Z]+)$")

# ---- driver ----


def jobdesc(name: str, after: Optional[Sequence[str]] = None, iterations: Optional[int] = None,
            **execution: Any) -> Dict[str, Any]:
    raw: Dict[str, Any] = {"name": name, "execution": {"exec": "/bin/true", **execution}}
    if after is not None:
        raw["dependencies"] = {"after": list(after)}
    if iterations is not None:
        raw["iteration"] = {"stop": iterations}
    return raw


class Gov:
    """A GovernorCore on 8 cores (nodes n1:4, n2:4) in one of the two shapes (one in-process
    partition, or a partition per node), with a clock that only moves forward.  Reports come
    from the partition each iteration was sent to."""

    def __init__(self, root: Path, shape: str) -> None:
        self.host = FakeHost()
        self.shape = shape
        self.core = make_core(root, shape, host=self.host)
        self.where = Where()
        self.now = 1000.0
        self.done: List[str] = []  # every JobDone so far, in order

    def _tick(self) -> float:
        self.now += 1.0
        return self.now

    def _record(self, actions: List[Action]) -> List[Action]:
        self.core.validate()
        self.where.learn(actions)
        self.done.extend(a.job.name for a in actions if isinstance(a, JobDone))
        return actions

    def request(self, payload: Any) -> Tuple[Dict[str, Any], List[Action]]:
        actions = self._record(self.core.handle(ClientRequest(payload, self._tick(), reply_to="client-1")))
        assert actions, "a request always gets a Reply"
        first = actions[0]
        assert isinstance(first, Reply) and first.reply_to == "client-1"
        assert not any(isinstance(a, Reply) for a in actions[1:]), "one Reply per request"
        assert isinstance(first.response.get("code"), int)
        return first.response, actions[1:]

    def submit(self, *jobs: Dict[str, Any]) -> Tuple[Dict[str, Any], List[Action]]:
        return self.request({"request": "submit", "jobs": list(jobs)})

    def submit_ok(self, *jobs: Dict[str, Any]) -> List[Action]:
        resp, actions = self.submit(*jobs)
        assert resp["code"] == 0, resp.get("message")
        return actions

    def submit_bad(self, *jobs: Dict[str, Any]) -> Dict[str, Any]:
        before = len(self.core.registry)
        resp, actions = self.submit(*jobs)
        assert resp["code"] != 0
        assert actions == [], "a refused submit has no effect"
        assert len(self.core.registry) == before, "a refused submit adds no job"
        return resp

    def report(self, msg: FromPartition) -> List[Action]:
        its = msg.iterations if isinstance(msg, IterationsDropped) else (msg.iteration,)
        return self._record(self.core.handle(FromPart(self.where.of(msg.job, its[0]), msg)))

    def started(self, job: str, it: int = 0, cores: int = 1) -> List[Action]:
        now = self._tick()
        return self.report(IterationStarted(job, it, f"n1[{it % 4}]", f"/wd/{job}", now - 0.5, now, cores,
                                            pid=100 + it))

    def finished(self, job: str, it: int = 0, exit_code: int = 0, cores: int = 1, reason: Optional[str] = None,
                 canceled: bool = False, run_time: float = 2.0) -> List[Action]:
        # run_time after the previous event (the IterationStarted, when there was one)
        now = self.now = self.now + run_time
        return self.report(IterationFinished(job, it, exit_code, now - run_time, now, f"n1[{it % 4}]", f"/wd/{job}",
                                             cores, reason, canceled))

    def run(self, job: str, it: int = 0, exit_code: int = 0) -> List[Action]:
        """Start and finish one iteration; the actions of the finish."""
        self.started(job, it)
        return self.finished(job, it, exit_code)

    def dropped(self, job: str, its: Sequence[int], canceled: bool, reason: str = "dropped") -> List[Action]:
        """Each partition drops what it holds of ``its``."""
        now = self._tick()
        by_part: Dict[str, List[int]] = {}
        for it in its:
            by_part.setdefault(self.where.of(job, it), []).append(it)
        actions: List[Action] = []
        for part, mine in by_part.items():
            actions += self._record(self.core.handle(FromPart(part, IterationsDropped(job, tuple(mine), reason, now,
                                                                                         canceled))))
        return actions

    def state(self, name: str) -> JobState:
        rec = self.core.registry.get(name)
        assert rec is not None, f"no job {name}"
        return rec.state

    def states(self, *names: str) -> List[str]:
        return [self.state(n).value for n in names]


def messages(actions: List[Action], kind: Type[T]) -> List[T]:
    return [a.message for a in actions if isinstance(a, SendToPartition) and isinstance(a.message, kind)]


def works(actions: List[Action]) -> List[str]:
    """The jobs that got work, in order (each once: several partitions may each get a share)."""
    return list(dict.fromkeys(w.spec.job for w in messages(actions, Work)))


def done(actions: List[Action]) -> List[str]:
    return [a.job.name for a in actions if isinstance(a, JobDone)]


def finishes(actions: List[Action]) -> List[FinishService]:
    return [a for a in actions if isinstance(a, FinishService)]


def error_fields(resp: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(e["job"], e["field"]) for e in resp["data"]["errors"]]


def history_states(text: str) -> List[str]:
    assert text.startswith("\n")
    out = []
    for line in text[1:].split("\n"):
        m = HISTORY_LINE.match(line)
        assert m, f"bad history line {line!r}"
        out.append(m.group(1))
    return out


# ---- submit ----


def test_submit_accepts_and_dispatches_ready_jobs(gov: Gov) -> None:
    resp, actions = gov.submit(jobdesc("a"), jobdesc("b", after=["a"]))
    assert resp == {"code": 0, "message": "2 jobs submitted", "data": {"submitted": 2, "jobs": ["a", "b"]}}
    assert all(a.partition == "p0" for a in actions if isinstance(a, SendToPartition))
    (work,) = messages(actions, Work)
    assert work.spec.job == "a"
    assert not work.spec.iterative
    assert list(work.iterations) == [0]
    assert gov.states("a", "b") == ["QUEUED", "QUEUED"]
    assert gov.core.active == 2


def test_submit_is_all_or_nothing(gov: Gov) -> None:
    resp = gov.submit_bad(
        jobdesc("good1"),
        {"name": "bad1", "execution": {"exec": "/bin/true"}, "colour": "red"},
        jobdesc("good2"),
        {"name": "bad2", "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"min": 3, "max": 2}}},
    )
    assert "no job accepted" in resp["message"]
    for name, fld in (("bad1", "colour"), ("bad2", "resources.numCores")):
        assert f"job '{name}': {fld}: " in resp["message"]
        assert (name, fld) in error_fields(resp)
    assert {e["job"] for e in resp["data"]["errors"]} == {"bad1", "bad2"}
    assert all(set(e) == {"job", "field", "message"} and e["message"] for e in resp["data"]["errors"])
    # the good names were not taken by the refused submit
    assert works(gov.submit_ok(jobdesc("good1"), jobdesc("good2"))) == ["good1", "good2"]


@pytest.mark.parametrize("payload", [
    {"request": "submit"},
    {"request": "submit", "jobs": []},
    {"request": "submit", "jobs": {"name": "a"}},
    {"request": "submit", "jobs": "a"},
])
def test_submit_without_a_list_of_jobs(gov: Gov, payload: Dict[str, Any]) -> None:
    resp, actions = gov.request(payload)
    assert resp["code"] != 0
    assert "'jobs'" in resp["message"]
    assert actions == [] and len(gov.core.registry) == 0


def test_duplicate_names_in_one_submit(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("a"), jobdesc("b"), jobdesc("a"))
    assert ("a", "name") in error_fields(resp)
    assert "given twice" in resp["message"]


def test_duplicate_name_against_registry(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    resp = gov.submit_bad(jobdesc("new"), jobdesc("a"))
    assert error_fields(resp) == [("a", "name")]
    assert "exists already" in resp["message"]
    assert "new" not in gov.core.registry


def test_unknown_dependency(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("b", after=["ok", "ghost"]), jobdesc("ok"))
    assert error_fields(resp) == [("b", "dependencies.after[1]")]
    assert "unknown job 'ghost'" in resp["message"]


def test_dependency_on_itself(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("a", after=["a"]))
    assert error_fields(resp) == [("a", "dependencies.after[0]")]


@pytest.mark.parametrize("dep, fragment", [("plain:0", "has no iterations"), ("sweep:9", "iterations 0..3, not 9")])
def test_dependency_on_a_missing_iteration(gov: Gov, dep: str, fragment: str) -> None:
    gov.submit_ok(jobdesc("plain"), jobdesc("sweep", iterations=4))
    resp = gov.submit_bad(jobdesc("b", after=[dep]))
    assert error_fields(resp) == [("b", "dependencies.after[0]")]
    assert fragment in resp["message"]


def test_dependency_cycle_is_refused_and_named(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("a", after=["c"]), jobdesc("b", after=["a"]), jobdesc("c", after=["b"]))
    assert "dependency cycle" in resp["message"]
    (err,) = resp["data"]["errors"]
    assert err["field"] == "dependencies.after"
    cycle = err["message"].split("dependency cycle: ")[1].split(" -> ")
    assert set(cycle) == {"a", "b", "c"} and cycle[0] == cycle[-1] and len(cycle) == 4


def test_dependency_on_a_later_job_of_the_same_submit(gov: Gov) -> None:
    # Any order inside one submit is accepted, as in QCG-PilotJob: 'b' waits for 'c'.
    actions = gov.submit_ok(jobdesc("b", after=["c"]), jobdesc("c"))
    assert works(actions) == ["c"]
    assert works(gov.run("c")) == ["b"]


def test_iteration_variable_in_a_plain_job_is_refused(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("a", args=["x", "${it}"]))
    assert error_fields(resp) == [("a", "execution.args[1]")]
    assert "${it}" in resp["message"] and "iterative" in resp["message"]


def test_iteration_variable_in_an_iterative_job_is_kept_for_launch(gov: Gov) -> None:
    work = messages(gov.submit_ok(jobdesc("s", iterations=3, args=["${it}", "${rcnt}", "${sname}"])), Work)[0]
    args = work.spec.execution.args
    assert [a.fill({"it": "2"}) for a in args] == ["2", "1", "local"]
    assert args[0].names == ("it",) and args[1].is_literal and args[2].is_literal


def test_rcnt_counts_submits(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    (work,) = messages(gov.submit_ok(jobdesc("b", args=["${rcnt}"])), Work)
    assert work.spec.execution.args[0].fill({}) == "2"


def test_impossible_core_count_is_refused(gov: Gov) -> None:
    resp = gov.submit_bad({"name": "big", "execution": {"exec": "/bin/true"}, "resources": {"numCores": 100}})
    assert error_fields(resp) == [("big", "resources.numCores")]
    assert "resources.numCores" in resp["message"] and "100" in resp["message"]


def test_impossible_node_count_is_refused(gov: Gov) -> None:
    resp = gov.submit_bad({"name": "wide", "execution": {"exec": "/bin/true"}, "resources": {"numNodes": 3}})
    assert error_fields(resp) == [("wide", "resources.numNodes")]


def test_mpi_model_is_refused_in_local_mode(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("m", model="openmpi"))
    assert error_fields(resp) == [("m", "execution.model")]


@pytest.mark.parametrize("program, fragment", [
    ("/no/such/dir/prog", "no such file"),
    ("no-such-program-hpilot-test", "not found in PATH"),
])
def test_missing_program_is_refused(gov: Gov, program: str, fragment: str) -> None:
    gov.host.missing.add(program)
    resp = gov.submit_bad({"name": "p", "execution": {"exec": program}})
    assert error_fields(resp) == [("p", "execution.exec")]
    assert fragment in resp["message"]


def test_huge_iteration_count_is_refused_not_a_crash(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("huge", iterations=10**20))
    assert any(job == "huge" and fld.startswith("iteration") for job, fld in error_fields(resp))


def test_million_iterations_are_one_work_message(gov1: Gov) -> None:
    """One in-process partition: its credit takes the whole range at once."""
    gov = gov1
    tracemalloc.start()
    try:
        actions = gov.submit_ok(jobdesc("sweep", iterations=1_000_000, args=["${it}"]))  # its time: bench/governor.py
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (work,) = messages(actions, Work)
    assert len(actions) == 1
    assert isinstance(work.iterations, range) and work.iterations == range(0, 1_000_000)
    assert work.spec.it_count == 1_000_000
    assert peak < 32 * 1024 * 1024, f"peak {peak} bytes for one sweep"
    resp, _ = gov.request({"request": "listJobs"})
    assert resp["data"]["jobs"]["sweep"]["iterations"] == {
        "start": 0, "stop": 1_000_000, "total": 1_000_000, "finished": 0, "failed": 0}


# ---- dependencies ----


def test_iteration_dependency_released_when_that_iteration_succeeds(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=5), jobdesc("b", after=["sweep:3"]))
    assert works(gov.started("sweep", 3)) == []
    assert works(gov.run("sweep", 2)) == []
    assert works(gov.run("sweep", 4)) == []
    assert gov.state("b") is JobState.QUEUED
    assert works(gov.finished("sweep", 3)) == ["b"]
    assert gov.state("sweep") is JobState.EXECUTING


def test_iteration_dependency_omitted_when_that_iteration_fails(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=5), jobdesc("b", after=["sweep:3"]), jobdesc("c", after=["sweep:1"]))
    actions = gov.run("sweep", 3, exit_code=2)
    assert works(actions) == [] and done(actions) == ["b"]
    assert gov.states("b", "c") == ["OMITTED", "QUEUED"]
    assert works(gov.run("sweep", 1)) == ["c"]


def test_iteration_dependency_already_satisfied_at_submit(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=5))
    gov.run("sweep", 3)
    assert works(gov.submit_ok(jobdesc("b", after=["sweep:3"]))) == ["b"]


def test_dependency_on_an_already_failed_iteration_is_omitted_at_once(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=5))
    gov.run("sweep", 1, exit_code=1)
    assert gov.state("sweep") is JobState.EXECUTING
    resp, actions = gov.submit(jobdesc("b", after=["sweep:1"]))
    assert resp["code"] == 0
    assert done(actions) == ["b"] and works(actions) == []
    assert gov.state("b") is JobState.OMITTED


def test_whole_job_dependency_waits_for_every_iteration(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=3), jobdesc("b", after=["sweep"]))
    assert works(gov.run("sweep", 0)) == []
    assert works(gov.run("sweep", 2)) == []
    actions = gov.run("sweep", 1)
    assert done(actions) == ["sweep"] and works(actions) == ["b"]
    assert gov.state("sweep") is JobState.SUCCEED


def test_whole_job_dependency_omitted_when_an_iteration_fails(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=3), jobdesc("b", after=["sweep"]))
    gov.run("sweep", 0)
    gov.run("sweep", 1, exit_code=3)
    gov.run("sweep", 2)
    assert gov.states("sweep", "b") == ["FAILED", "OMITTED"]
    assert sorted(gov.done) == ["b", "sweep"]


def test_dependency_on_several_jobs_waits_for_all(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"), jobdesc("c", after=["a", "b"]))
    assert works(gov.run("a")) == []
    assert works(gov.run("b")) == ["c"]


def test_failed_job_omits_a_chain(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["b"]), jobdesc("d", after=["c"]))
    actions = gov.run("a", exit_code=1)
    assert sorted(done(actions)) == ["a", "b", "c", "d"]
    assert works(actions) == []
    assert gov.states("a", "b", "c", "d") == ["FAILED", "OMITTED", "OMITTED", "OMITTED"]
    rec = gov.core.registry.get("b")
    assert rec is not None and any("a" in m for m in rec.messages)
    assert gov.core.active == 0


def test_failed_job_omits_a_diamond_once_each(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["a"]),
                  jobdesc("d", after=["b", "c"]), jobdesc("free"))
    actions = gov.run("a", exit_code=1)
    assert sorted(done(actions)) == ["a", "b", "c", "d"]
    assert gov.states("b", "c", "d", "free") == ["OMITTED", "OMITTED", "OMITTED", "QUEUED"]
    gov.run("free")
    assert sorted(gov.done) == ["a", "b", "c", "d", "free"]


def test_half_failed_diamond(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["a"]), jobdesc("d", after=["b", "c"]))
    assert sorted(works(gov.run("a"))) == ["b", "c"]
    actions = gov.run("b", exit_code=1)
    assert sorted(done(actions)) == ["b", "d"]
    assert works(gov.run("c")) == []
    assert gov.states("a", "b", "c", "d") == ["SUCCEED", "FAILED", "SUCCEED", "OMITTED"]
    assert sorted(gov.done) == ["a", "b", "c", "d"]


def test_canceled_dispatched_job_omits_chain_and_diamond(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["a"]),
                  jobdesc("d", after=["b", "c"]), jobdesc("e", after=["d"]))
    gov.started("a")
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["a"]})
    assert resp["code"] == 0
    assert [m.job for m in messages(actions, CancelJob)] == ["a"]
    assert works(actions) == []
    gov.finished("a", exit_code=143, reason="canceled by the user", canceled=True)
    assert gov.states("a", "b", "c", "d", "e") == ["CANCELED", "OMITTED", "OMITTED", "OMITTED", "OMITTED"]
    assert sorted(gov.done) == ["a", "b", "c", "d", "e"]


def test_dependency_on_an_already_failed_job_is_omitted_at_once(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    gov.run("a", exit_code=1)
    resp, actions = gov.submit(jobdesc("b", after=["a"]), jobdesc("c", after=["b"]))
    assert resp["code"] == 0
    assert sorted(done(actions)) == ["b", "c"] and works(actions) == []
    assert gov.states("b", "c") == ["OMITTED", "OMITTED"]


def test_dependency_on_an_already_succeeded_job_dispatches_at_once(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    gov.run("a")
    assert works(gov.submit_ok(jobdesc("b", after=["a"]))) == ["b"]


def test_dropped_iterations_fail_the_job_and_omit_dependants(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=3), jobdesc("b", after=["sweep"]))
    gov.run("sweep", 0)
    actions = gov.dropped("sweep", [1, 2], canceled=False, reason="cannot ever fit")
    assert sorted(done(actions)) == ["b", "sweep"]
    assert gov.states("sweep", "b") == ["FAILED", "OMITTED"]
    resp, _ = gov.request({"request": "jobStatus", "jobNames": ["sweep"]})
    assert "cannot ever fit" in resp["data"]["jobs"]["sweep"]["data"]["messages"]


# ---- cancelJob ----


def test_cancel_queued_job_not_yet_dispatched(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["b"]))
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["b"]})
    assert resp == {"code": 0, "message": "1 of 1 jobs canceled",
                    "data": {"canceled": 1, "jobs": {"b": {"status": 0, "message": "canceled"}}}}
    assert messages(actions, CancelJob) == [], "b never reached the partition"
    assert sorted(done(actions)) == ["b", "c"]
    assert gov.states("a", "b", "c") == ["QUEUED", "CANCELED", "OMITTED"]
    assert works(gov.run("a")) == [], "a canceled job is never dispatched"


def test_cancel_dispatched_job_waits_for_the_partition(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    resp, actions = gov.request({"request": "cancelJob", "jobNames": "a"})
    assert resp["code"] == 0
    (cancel,) = messages(actions, CancelJob)
    assert cancel.job == "a" and cancel.reason and cancel.now == gov.now
    assert done(actions) == [] and gov.state("a") is JobState.QUEUED
    actions = gov.dropped("a", [0], canceled=True, reason="canceled by the user")
    assert done(actions) == ["a"] and gov.state("a") is JobState.CANCELED


def test_cancel_running_iterative_job(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=4))
    gov.run("sweep", 0)
    gov.started("sweep", 1)
    _, actions = gov.request({"request": "cancelJob", "jobNames": ["sweep"]})
    assert {m.job for m in messages(actions, CancelJob)} == {"sweep"}, "every partition holding some is told"
    assert done(gov.dropped("sweep", [2, 3], canceled=True)) == []
    assert gov.state("sweep") is JobState.EXECUTING
    actions = gov.finished("sweep", 1, exit_code=143, reason="canceled by the user", canceled=True)
    assert done(actions) == ["sweep"]
    rec = gov.core.registry.get("sweep")
    assert rec is not None and rec.state is JobState.CANCELED
    assert [rec.it_state(i).value for i in range(4)] == ["SUCCEED", "CANCELED", "CANCELED", "CANCELED"]


def test_cancel_unknown_and_final_jobs(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"))
    gov.run("a")
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["a", "ghost", "b"]})
    assert resp["code"] == 0  # as QCG-PilotJob: what could not be canceled is in data.errors
    jobs = resp["data"]["jobs"]
    assert jobs["a"]["status"] != 0 and "SUCCEED" in jobs["a"]["message"]
    assert jobs["ghost"]["status"] != 0 and "doesn't exist" in jobs["ghost"]["message"]
    assert resp["data"]["errors"] == {"a": jobs["a"]["message"], "ghost": jobs["ghost"]["message"]}
    assert jobs["b"]["status"] == 0
    assert resp["data"]["canceled"] == 1
    assert [m.job for m in messages(actions, CancelJob)] == ["b"]
    assert gov.state("a") is JobState.SUCCEED


@pytest.mark.parametrize("names", [None, [], [1], {"a": 1}])
def test_cancel_needs_job_names(gov: Gov, names: Any) -> None:
    gov.submit_ok(jobdesc("a"))
    payload: Dict[str, Any] = {"request": "cancelJob"}
    if names is not None:
        payload["jobNames"] = names
    resp, actions = gov.request(payload)
    assert resp["code"] != 0 and "jobNames" in resp["message"]
    assert actions == []


# ---- removeJob ----


def test_remove_only_final_jobs(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"))
    gov.run("a")
    resp, _ = gov.request({"request": "removeJob", "jobNames": ["b"]})
    assert resp["code"] == 0 and "cancel it first" in resp["message"]  # QCG-PilotJob: errors in data
    assert resp["data"] == {"removed": 0, "errors": {"b": resp["data"]["errors"]["b"]}}
    assert "cancel it first" in resp["data"]["errors"]["b"]
    assert "b" in gov.core.registry
    resp, _ = gov.request({"request": "removeJob", "jobNames": ["a"]})
    assert resp == {"code": 0, "message": "1 jobs removed", "data": {"removed": 1}}
    assert "a" not in gov.core.registry


def test_remove_unknown_job(gov: Gov) -> None:
    resp, _ = gov.request({"request": "removeJob", "jobNames": ["ghost"]})
    assert resp["code"] == 0 and "doesn't exist" in resp["data"]["errors"]["ghost"]
    assert resp["data"]["removed"] == 0


def test_name_is_reusable_after_remove(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    gov.run("a", exit_code=1)
    gov.submit_bad(jobdesc("a"))
    gov.request({"request": "removeJob", "jobNames": ["a"]})
    assert works(gov.submit_ok(jobdesc("a", iterations=2))) == ["a"]
    assert gov.state("a") is JobState.QUEUED
    gov.run("a", 0)
    gov.run("a", 1)
    assert gov.state("a") is JobState.SUCCEED


def test_resubmitted_name_does_not_inherit_old_dependency_wait(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("x"), jobdesc("c", after=["a"]))
    gov.request({"request": "cancelJob", "jobNames": ["c"]})
    resp, _ = gov.request({"request": "removeJob", "jobNames": ["c"]})
    assert resp["code"] == 0
    assert works(gov.submit_ok(jobdesc("c", after=["a", "x"]))) == []
    # the new 'c' needs both 'a' and 'x': 'a' alone must not release it
    assert works(gov.run("a")) == []
    assert gov.state("c") is JobState.QUEUED
    assert works(gov.run("x")) == ["c"]


def test_removed_dependency_name_reused_by_an_omitted_chain(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]), jobdesc("c", after=["b"]))
    gov.run("a", exit_code=1)
    gov.request({"request": "removeJob", "jobNames": ["b", "c"]})
    gov.submit_ok(jobdesc("x"), jobdesc("b"))
    gov.submit_ok(jobdesc("c", after=["b", "x"]))
    assert works(gov.run("b")) == []
    assert works(gov.run("x")) == ["c"]


# ---- queries ----


def test_list_jobs_shape(gov: Gov) -> None:
    resp, _ = gov.request({"request": "listJobs"})
    assert resp == {"code": 0, "data": {"length": 0, "jobs": {}}}
    gov.submit_ok(jobdesc("a"), jobdesc("b"), jobdesc("sweep", iterations=3), jobdesc("bad"))
    gov.run("a")
    gov.run("bad", exit_code=7)
    gov.run("sweep", 0)
    gov.run("sweep", 1, exit_code=1)
    resp, actions = gov.request({"request": "listJobs"})
    assert actions == []
    data = resp["data"]
    assert data["length"] == 4
    assert data["jobs"]["a"] == {"status": "SUCCEED"}
    assert data["jobs"]["b"] == {"status": "QUEUED", "inQueue": 0}
    assert data["jobs"]["bad"]["status"] == "FAILED" and "7" in data["jobs"]["bad"]["messages"]
    sweep = data["jobs"]["sweep"]
    assert sweep["status"] == "EXECUTING"
    assert sweep["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 2, "failed": 1}


def test_job_status_shape(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"))
    gov.run("a")
    gov.run("b", exit_code=5)
    resp, _ = gov.request({"request": "jobStatus", "jobNames": ["a", "b", "ghost"]})
    jobs = resp["data"]["jobs"]
    # as QCG-PilotJob, an unknown name fails the request (its client raises); the entries stay in data
    assert resp["code"] == 1 and resp["message"] == "Job 'ghost' doesn't exist"
    assert jobs["a"] == {"status": 0, "data": {"jobName": "a", "status": "SUCCEED"}}
    assert jobs["b"]["status"] == 0 and jobs["b"]["data"]["status"] == "FAILED"
    assert "exit code 5" in jobs["b"]["data"]["messages"]
    assert jobs["ghost"]["status"] != 0 and "ghost" in jobs["ghost"]["message"]


@pytest.mark.parametrize("kind", ["jobStatus", "jobInfo"])
def test_job_queries_need_job_names(gov: Gov, kind: str) -> None:
    resp, _ = gov.request({"request": kind})
    assert resp["code"] != 0 and "jobNames" in resp["message"]


def test_job_info_of_a_plain_job(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    gov.started("a")
    gov.finished("a", run_time=2.0)
    resp, _ = gov.request({"request": "jobInfo", "jobNames": ["a"]})
    entry = resp["data"]["jobs"]["a"]
    assert entry["status"] == 0
    info = entry["data"]
    assert info["jobName"] == "a" and info["status"] == "SUCCEED"
    where = {} if gov.shape == "one" else {"partition": "p0"}  # a single manager's partition is not named
    assert info["runtime"] == {"allocation": "n1[0]", "wd": "/wd/a", "rtime": "0:00:02", "exit_code": "0",
                               "pid": "100", "pname": "true", **where}
    assert history_states(info["history"]) == ["QUEUED", "EXECUTING", "SUCCEED"]
    assert "childs" not in info


@pytest.mark.parametrize("flag", [{"params": {"withChilds": True}}, {"withChilds": True}])
def test_job_info_with_childs(gov: Gov, flag: Dict[str, Any]) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=4))
    gov.started("sweep", 0)
    gov.finished("sweep", 0, run_time=3.0)
    gov.run("sweep", 1, exit_code=9)
    gov.started("sweep", 2)
    gov.request({"request": "cancelJob", "jobNames": ["sweep"]})
    gov.dropped("sweep", [3], canceled=True)
    resp, _ = gov.request({"request": "jobInfo", "jobNames": ["sweep"], **flag})
    info = resp["data"]["jobs"]["sweep"]["data"]
    assert info["status"] == "EXECUTING"
    assert info["iterations"] == {"start": 0, "stop": 4, "total": 4, "finished": 3, "failed": 2}
    assert "rtime" in info["runtime"]
    childs = info["childs"]
    assert [(c["iteration"], c["state"]) for c in childs] == [
        (0, "SUCCEED"), (1, "FAILED"), (2, "EXECUTING"), (3, "CANCELED")]
    assert childs[0]["runtime"]["rtime"] == "0:00:03" and childs[0]["runtime"]["exit_code"] == "0"
    assert childs[1]["runtime"]["exit_code"] == "9"
    assert "rtime" not in childs[2]["runtime"] and childs[2]["runtime"]["allocation"] == "n1[2]"
    assert "runtime" not in childs[3]
    assert history_states(childs[0]["history"]) == ["QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED"]
    assert history_states(childs[1]["history"]) == ["QUEUED", "SCHEDULED", "EXECUTING", "FAILED"]
    assert history_states(childs[2]["history"]) == ["QUEUED", "SCHEDULED", "EXECUTING"]
    assert history_states(childs[3]["history"]) == ["QUEUED", "CANCELED"]
    assert history_states(info["history"]) == ["QUEUED", "EXECUTING"]


def test_job_info_without_childs_has_counts_only(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=2))
    resp, _ = gov.request({"request": "jobInfo", "jobNames": "sweep", "params": {"withChilds": False}})
    info = resp["data"]["jobs"]["sweep"]["data"]
    assert "childs" not in info and "runtime" not in info
    assert info["iterations"]["total"] == 2


def test_resources_info_follows_running_iterations(gov: Gov) -> None:
    keys = ("total_nodes", "total_cores", "used_cores", "free_cores")
    resp, _ = gov.request({"request": "resourcesInfo"})
    assert resp["code"] == 0
    assert {k: resp["data"][k] for k in keys} == {"total_nodes": 2, "total_cores": 8, "used_cores": 0,
                                                    "free_cores": 8}
    assert ("partitions" in resp["data"]) == (gov.shape == "several"), "partitions are shown where there are"
    gov.submit_ok(jobdesc("a", iterations=2))
    gov.started("a", 0, cores=2)
    gov.started("a", 1, cores=1)
    resp, _ = gov.request({"request": "resourcesInfo"})
    assert {k: resp["data"][k] for k in keys} == {"total_nodes": 2, "total_cores": 8, "used_cores": 3,
                                                    "free_cores": 5}
    gov.finished("a", 0, cores=2)
    resp, _ = gov.request({"request": "resourcesInfo"})
    assert resp["data"]["used_cores"] == 1 and resp["data"]["free_cores"] == 7


def test_status_shape(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b"), jobdesc("c"), jobdesc("d", after=["c"]))
    gov.started("a")
    gov.run("b")
    gov.run("c", exit_code=1)
    resp, _ = gov.request({"request": "status"})
    assert resp["code"] == 0
    data = resp["data"]
    assert set(data) == {"System", "Resources", "JobStats", "IterationStats"}
    assert set(data["System"]) == {"InstanceId", "Started", "Generated", "Uptime", "Zmqaddress", "Ifaces",
                                   "StatusPublisher", "Host", "Account", "Wd", "PythonVersion", "Python",
                                   "Platform", "Pubaddress"}
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", data["System"]["Uptime"])
    assert {k: data["Resources"][k] for k in ("TotalNodes", "TotalCores", "UsedCores", "FreeCores")} == {
        "TotalNodes": data["Resources"]["total_nodes"], "TotalCores": 8, "UsedCores": 1, "FreeCores": 7}
    assert data["Resources"]["total_cores"] == 8 and data["Resources"]["used_cores"] == 1
    assert data["JobStats"] == {"TotalJobs": 4, "InScheduleJobs": 0, "ExecutingJobs": 1, "FailedJobs": 2,
                                "FinishedJobs": 1}


def test_queries_change_nothing(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("s", iterations=3))
    before = [(r.name, r.state, bytes(r.it_states)) for r in gov.core.registry]
    for payload in ({"request": "listJobs"}, {"request": "jobStatus", "jobNames": ["a"]},
                    {"request": "jobInfo", "jobNames": ["s"], "params": {"withChilds": True}},
                    {"request": "resourcesInfo"}, {"request": "status"}):
        _, actions = gov.request(payload)
        assert actions == []
    assert [(r.name, r.state, bytes(r.it_states)) for r in gov.core.registry] == before


# ---- bad requests ----


def test_unknown_request(gov: Gov) -> None:
    resp, actions = gov.request({"request": "submitt", "jobs": [jobdesc("a")]})
    assert resp["code"] != 0
    assert "'submitt'" in resp["message"] and "submit" in resp["message"] and "listJobs" in resp["message"]
    assert actions == [] and len(gov.core.registry) == 0


@pytest.mark.parametrize("payload", [{}, {"request": None}, {"request": 5}, {"request": ["submit"]}])
def test_request_without_a_usable_kind(gov: Gov, payload: Dict[str, Any]) -> None:
    resp, actions = gov.request(payload)
    assert resp["code"] != 0 and "unknown request" in resp["message"]
    assert actions == []


@pytest.mark.parametrize("payload", [None, [], ["submit"], "submit", 5, 1.5, True])
def test_non_object_payload(gov: Gov, payload: Any) -> None:
    resp, actions = gov.request(payload)
    assert resp["code"] != 0 and "JSON object" in resp["message"]
    assert actions == []


def test_report_for_unknown_job_is_ignored(gov: Gov) -> None:
    assert gov.started("ghost") == []
    assert gov.finished("ghost") == []


def test_failure_messages_are_bounded(gov: Gov) -> None:
    gov.submit_ok(jobdesc("s", iterations=50))
    for it in range(50):
        gov.run("s", it, exit_code=1)
    rec = gov.core.registry.get("s")
    assert rec is not None and rec.state is JobState.FAILED
    assert len(rec.messages) <= 21


# ---- ending the service ----


def test_finish_after_all_tasks_done_waits_for_the_last_job(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]))
    resp, actions = gov.request({"request": "control", "command": "finishAfterAllTasksDone"})
    assert resp["code"] == 0 and finishes(actions) == []
    assert finishes(gov.run("a")) == []
    actions = gov.run("b")
    assert len(finishes(actions)) == 1
    assert finishes(gov.request({"request": "listJobs"})[1]) == [], "FinishService is sent once"


def test_finish_after_all_tasks_done_with_nothing_to_do(gov: Gov) -> None:
    _, actions = gov.request({"request": "control", "command": "finishAfterAllTasksDone"})
    assert len(finishes(actions)) == 1


def test_finish_after_all_tasks_done_counts_omitted_jobs(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]))
    gov.request({"request": "control", "command": "finishAfterAllTasksDone"})
    actions = gov.run("a", exit_code=1)
    assert sorted(done(actions)) == ["a", "b"]
    assert len(finishes(actions)) == 1


def test_unknown_control_command(gov: Gov) -> None:
    resp, actions = gov.request({"request": "control", "command": "reboot"})
    assert resp["code"] != 0 and '"reboot"' in resp["message"]
    assert actions == [] and not gov.core.finish_when_done


def test_finish_request(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]))
    gov.started("a")
    resp, actions = gov.request({"request": "finish"})
    assert resp["code"] == 0
    shutdowns = messages(actions, Shutdown)
    assert shutdowns and all(s.now == gov.now for s in shutdowns)
    assert sorted(a.partition for a in actions if isinstance(a, SendToPartition)) == sorted(gov.core.partitions)
    assert len(finishes(actions)) == 1
    assert done(actions) == ["b"]
    assert gov.state("b") in (JobState.CANCELED, JobState.OMITTED)
    gov.submit_bad(jobdesc("late"))
    gov.finished("a", exit_code=143, reason="service finishing", canceled=True)
    assert gov.state("a") is JobState.CANCELED



def test_resubmitted_name_is_not_omitted_by_the_old_dependency(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("x"), jobdesc("b", after=["a"]))
    gov.request({"request": "cancelJob", "jobNames": ["b"]})
    gov.request({"request": "removeJob", "jobNames": ["b"]})
    gov.submit_ok(jobdesc("b", after=["x"]))
    # the new 'b' does not depend on 'a' at all
    actions = gov.run("a", exit_code=1)
    assert done(actions) == ["a"]
    assert gov.state("b") is JobState.QUEUED
    assert works(gov.run("x")) == ["b"]


def test_cancel_with_a_repeated_name(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    resp, actions = gov.request({"request": "cancelJob", "jobNames": ["a", "a"]})
    assert [m.job for m in messages(actions, CancelJob)] == ["a"]
    assert resp["data"]["canceled"] == 1
    assert resp["data"]["jobs"]["a"]["status"] == 0


def test_canceled_job_that_ends_well_anyway_agrees_with_its_dependants(gov: Gov) -> None:
    # The cancel crosses the report of a job that had already ended with exit code 0.
    gov.submit_ok(jobdesc("a"), jobdesc("b", after=["a"]))
    gov.started("a")
    gov.request({"request": "cancelJob", "jobNames": ["a"]})
    actions = gov.finished("a", exit_code=0)
    a, b = gov.state("a"), gov.state("b")
    if a is JobState.SUCCEED:
        assert b is not JobState.OMITTED, "b is OMITTED although the job it waits for SUCCEEDED"
        assert works(actions) == ["b"]
    else:
        assert (a, b) == (JobState.CANCELED, JobState.OMITTED)


def test_working_directory_with_a_nul_byte_is_refused(gov: Gov) -> None:
    resp = gov.submit_bad(jobdesc("a", wd="sandbox\x00x"))
    assert error_fields(resp) == [("a", "execution.wd")]


def test_working_directory_that_cannot_be_made_is_refused(gov: Gov, tmp_path: Path) -> None:
    gov.host.unwritable.add(str(tmp_path / "file"))
    resp = gov.submit_bad(jobdesc("a", wd="file/sub"))
    assert error_fields(resp) == [("a", "execution.wd")]
