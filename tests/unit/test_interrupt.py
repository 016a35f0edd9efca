"""The run stops resumably (a signal, the allocation's end): the core's side (governor/core/interrupt.py).

Every iteration not final ends INTERRUPTED (never CANCELED, FAILED or OMITTED), nothing new
is sent, partitions are told to stop, and a replay of the journal written meanwhile runs
exactly the interrupted iterations again.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from hpilot.governor.core import counts
from hpilot.governor.core.events import Action, FinishService, Interrupt, Record, ReplayDone
from hpilot.governor.core.interrupt import left_to_resume
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import IterationFinished, Shutdown, Work

from tests.unit.cores import make_core
from tests.unit.test_governor_core import Gov, finishes, jobdesc, messages

INT = JobState.INTERRUPTED


def _interrupt(g: Gov, reason: str = "interrupted by SIGTERM") -> List[Action]:
    return g._record(g.core.handle(Interrupt(reason, g._tick())))


def _workload(g: Gov) -> None:
    g.submit_ok(jobdesc("sweep", iterations=20), jobdesc("after", after=["sweep"]),
                jobdesc("each", iterations=20, after=["sweep:${it}"]), jobdesc("solo"))
    for it in range(3):
        g.run("sweep", it)
    g.started("sweep", 3)
    g.started("solo")


def _partitions_drop_what_they_hold(g: Gov) -> None:
    """What a partition does with a Shutdown: every iteration it was sent and did not start, dropped."""
    for job, batches in g.where.batches.items():
        rec = g.core.registry.get(job)
        assert rec is not None
        held = sorted({it for its, _ in batches for it in its if rec.it_state(it) is JobState.QUEUED})
        if held:
            g.dropped(job, held, canceled=True, reason="interrupted by SIGTERM")


def test_interrupt_stops_everything_as_interrupted(gov: Gov) -> None:
    _workload(gov)
    actions = _interrupt(gov)
    assert [f.reason for f in finishes(actions)] == ["interrupted by SIGTERM"]
    shutdowns = messages(actions, Shutdown)
    assert len(shutdowns) == len(gov.core.partitions) and all(s.reason == "interrupted by SIGTERM" for s in shutdowns)
    assert not messages(actions, Work), "nothing new is sent"
    # jobs waiting for their dependencies are interrupted at once, never omitted
    assert gov.state("after") is INT
    each = gov.core.registry.get("each")
    assert each is not None and each.counts[JobState.OMITTED] == 0
    # the partitions kill what runs and drop what they hold: all of it ends INTERRUPTED
    gov.finished("sweep", 3, exit_code=143, reason="interrupted by SIGTERM", canceled=True)
    gov.finished("solo", 0, exit_code=143, reason="interrupted by SIGTERM", canceled=True)
    _partitions_drop_what_they_hold(gov)
    assert gov.states("sweep", "after", "each", "solo") == ["INTERRUPTED"] * 4
    total = counts.of_jobs(gov.core.registry)
    assert total["succeeded"] == 3 and total["interrupted"] == 17 + 1 + 20 + 1
    assert total["failed"] == total["canceled"] == total["not_started"] == 0
    assert left_to_resume(gov.core) == 39
    assert gov.core.active == 0


def test_a_task_that_ends_by_itself_during_the_stop_keeps_its_result(gov1: Gov) -> None:
    gov1.submit_ok(jobdesc("a", iterations=2))
    gov1.started("a", 0)
    gov1.started("a", 1)
    _interrupt(gov1)
    gov1.finished("a", 0, exit_code=0)  # it ended on its own before the kill
    gov1.finished("a", 1, exit_code=1)  # ... and this one failed on its own
    rec = gov1.core.registry.get("a")
    assert rec is not None and rec.it_state(0) is JobState.SUCCEED and rec.it_state(1) is JobState.FAILED
    assert rec.state is JobState.FAILED


def test_a_second_interrupt_changes_nothing(gov1: Gov) -> None:
    gov1.submit_ok(jobdesc("a"))
    _interrupt(gov1)
    assert _interrupt(gov1, "interrupted by SIGINT") == []
    assert gov1.core.interrupted == "interrupted by SIGTERM"


def test_the_journal_of_an_interrupted_run_resumes_exactly_what_was_interrupted(tmp_path: Path) -> None:
    from hpilot.governor.service import journal as jmod
    from hpilot.governor.service.resume import restore

    g = Gov(tmp_path, "one")
    g.core.journaling = True
    path = tmp_path / "run"
    path.mkdir()
    j = jmod.Journal(str(path / "journal"))

    def keep(actions: List[Action]) -> None:
        for a in actions:
            if isinstance(a, Record):
                j.add(a.data)

    keep(g.submit_ok(jobdesc("sweep", iterations=10), jobdesc("after", after=["sweep"])))
    for it in range(4):
        keep(g.started("sweep", it))
        keep(g.finished("sweep", it))
    keep(g.started("sweep", 4))
    keep(_interrupt(g))
    keep(g.finished("sweep", 4, exit_code=143, reason="interrupted by SIGTERM", canceled=True))
    keep(g.dropped("sweep", range(5, 10), canceled=True, reason="interrupted by SIGTERM"))
    j.close()
    assert g.states("sweep", "after") == ["INTERRUPTED", "INTERRUPTED"]

    fresh = make_core(tmp_path)
    actions, plan = restore(fresh, str(path), 5000.0)
    assert plan.iterations_done == 4 and plan.to_run == 7
    assert fresh.replay_interrupted == 7
    (work,) = [a.message for a in actions if hasattr(a, "message") and isinstance(a.message, Work)]
    assert list(work.iterations) == list(range(4, 10))
    assert fresh.registry.get("after").state is JobState.QUEUED
    assert not any(isinstance(a, FinishService) for a in actions)
    assert not [a for a in fresh.handle(ReplayDone(5001.0)) if isinstance(a, FinishService)]


# ---- re-runs: lost under it (its node), or failed and its job asks for re-runs (reruns.py) ----


def _lost(g: Gov, job: str, it: int = 0) -> List[Action]:
    now = g.now = g.now + 1.0
    return g.report(IterationFinished(job, it, -1, now - 1.0, now, "n1[0]", "/wd", 1, "node n1 lost: gone",
                                      lost=True))


def test_an_iteration_lost_with_its_node_runs_again_once_by_default(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"))
    gov.started("a")
    out = _lost(gov, "a")
    assert [w.spec.job for w in messages(out, Work)] == ["a"], "sent again"
    rec = gov.core.registry.get("a")
    assert rec is not None and rec.it_state(0) is JobState.QUEUED
    gov.started("a")
    _lost(gov, "a")
    assert gov.state("a") is JobState.FAILED
    assert rec.runs[0].attempts == 2


def test_a_job_may_ask_for_re_runs_of_its_own_failures(gov1: Gov) -> None:
    gov1.submit_ok({**jobdesc("a"), "hpilot": {"retry": {"failed": 2}}})
    for attempt in (1, 2):
        gov1.started("a")
        out = gov1.finished("a", exit_code=3)
        assert messages(out, Work), f"failure {attempt}: sent again"
    gov1.started("a")
    gov1.finished("a", exit_code=0)
    assert gov1.state("a") is JobState.SUCCEED
    rec = gov1.core.registry.get("a")
    assert rec is not None and rec.runs[0].attempts == 3
    assert any("runs again (2 of 2)" in m for m in rec.messages)


def test_without_retry_a_failure_is_final(gov1: Gov) -> None:
    gov1.submit_ok(jobdesc("a"))
    gov1.started("a")
    assert not messages(gov1.finished("a", exit_code=3), Work)
    assert gov1.state("a") is JobState.FAILED


def test_a_lost_iteration_during_the_stop_is_interrupted_not_re_run(gov1: Gov) -> None:
    gov1.submit_ok(jobdesc("a"))
    gov1.started("a")
    _interrupt(gov1)
    assert not messages(_lost(gov1, "a"), Work)
    assert gov1.state("a") is JobState.INTERRUPTED


def test_a_node_out_of_service_is_shown_with_its_reason(gov: Gov) -> None:
    from hpilot.governor.core.events import FromPart
    from hpilot.partition.messages import NodeStatus

    part = next(iter(gov.core.partitions))
    gov.core.handle(FromPart(part, NodeStatus("n1", False, "its agent's process ended (exit code -9)", 5.0)))
    resp, _ = gov.request({"request": "resourcesInfo"})
    assert resp["data"]["down_nodes"] == {"n1": "its agent's process ended (exit code -9)"}
    assert resp["data"]["free_cores"] == 4
    gov.core.handle(FromPart(part, NodeStatus("n1", True, "its agent greeted", 6.0)))
    resp, _ = gov.request({"request": "resourcesInfo"})
    assert "down_nodes" not in resp["data"]
