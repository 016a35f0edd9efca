"""Honest counts (governor/core/counts.py) and the ``overview`` answer (governor/core/overview.py).

A sweep canceled after 12 of its 40 iterations must say 12 succeeded, the ones that
were running canceled, and the rest not started: never "40/40 finished".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from hpilot.governor.core import counts
from hpilot.governor.core.overview import _parse_allocation
from hpilot.governor.core.states import JobState

from tests.unit.cores import SHAPES
from tests.unit.test_governor_core import Gov, jobdesc


@pytest.fixture(params=SHAPES)
def gov(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gov]:
    g = Gov(tmp_path, request.param)
    yield g
    g.core.validate()


def listed(gov: Gov, name: str) -> Dict[str, int]:
    resp, _ = gov.request({"request": "overview", "jobs": [name]})
    return dict(resp["data"]["list"][0]["counts"])


def test_every_state_has_a_category() -> None:
    """A new state (issue #12's INTERRUPTED) must say how it is counted: one line in CATEGORY."""
    assert set(counts.CATEGORY) == set(JobState)
    assert set(counts.CATEGORY.values()) <= set(counts.ORDER)
    assert set(counts.FINAL_CATEGORIES) | {"running", "queued"} == set(counts.ORDER)
    for state, cat in counts.CATEGORY.items():
        assert (cat in counts.FINAL_CATEGORIES) == state.is_final, state


def test_cancel_after_12_of_40(gov: Gov) -> None:
    gov.submit_ok(jobdesc("sweep", iterations=40))
    for it in range(12):
        gov.run("sweep", it)
    gov.started("sweep", 12)
    gov.started("sweep", 13)
    resp, _ = gov.request({"request": "cancelJob", "jobNames": ["sweep"]})
    assert resp["code"] == 0
    gov.finished("sweep", 12, exit_code=-15, canceled=True, reason="canceled")
    gov.finished("sweep", 13, exit_code=-15, canceled=True, reason="canceled")
    gov.dropped("sweep", range(14, 40), canceled=True, reason="canceled by the user")
    assert gov.state("sweep") is JobState.CANCELED
    c = listed(gov, "sweep")
    assert c == {"succeeded": 12, "failed": 0, "canceled": 2, "interrupted": 0, "not_started": 26,
                 "running": 0, "queued": 0}
    assert counts.text(c) == "12 succeeded, 2 canceled, 26 not started"
    # QCG-PilotJob's own keys keep their meaning beside it
    resp, _ = gov.request({"request": "listJobs"})
    assert resp["data"]["jobs"]["sweep"]["iterations"]["finished"] == 40


def test_cancel_before_dispatch_and_omitted(gov: Gov) -> None:
    gov.submit_ok(jobdesc("first", iterations=3), jobdesc("then", after=["first"], iterations=5))
    gov.run("first", 0, exit_code=1)
    gov.run("first", 1)
    gov.run("first", 2)
    assert listed(gov, "first") == dict(counts.empty(), succeeded=2, failed=1)
    assert listed(gov, "then") == dict(counts.empty(), not_started=5)  # OMITTED: never ran


def test_failed_without_a_run_is_failed(gov: Gov) -> None:
    """An iteration that could not be started at all is a failure to fix, not 'not started'."""
    gov.submit_ok(jobdesc("j", iterations=2))
    gov.dropped("j", [0, 1], canceled=False, reason="needs 64 cores")
    assert listed(gov, "j") == dict(counts.empty(), failed=2)


def test_qcg_answers_keep_their_shape_and_overview_names_jobs(gov: Gov) -> None:
    gov.submit_ok(jobdesc("a"), jobdesc("it", iterations=3))
    gov.run("a")
    gov.run("it", 0)
    gov.started("it", 1)
    for kind in ("jobStatus", "jobInfo"):
        resp, _ = gov.request({"request": kind, "jobNames": ["a", "it"]})
        assert "counts" not in resp["data"]["jobs"]["a"]["data"]  # QCG-PilotJob's answer, unchanged
    resp, _ = gov.request({"request": "overview", "jobs": ["it", "ghost", "a", "it"]})
    d = resp["data"]
    assert [j["name"] for j in d["list"]] == ["it", "a"] and d["unknown"] == ["ghost"]
    assert d["list"][0]["counts"] == dict(counts.empty(), succeeded=1, running=1, queued=1)
    assert d["list"][1]["counts"] == dict(counts.empty(), succeeded=1)


def overview(gov: Gov, **kw: Any) -> Dict[str, Any]:
    resp, actions = gov.request({"request": "overview", **kw})
    assert resp["code"] == 0 and actions == []
    return dict(resp["data"])


def test_overview(gov: Gov) -> None:
    gov.submit_ok(jobdesc("done"), jobdesc("sweep", iterations=10), jobdesc("bad"))
    gov.run("done")
    gov.run("bad", exit_code=7)
    gov.run("sweep", 0)
    gov.started("sweep", 1, cores=2)
    gov.started("sweep", 2)
    d = overview(gov)
    assert d["iterations"] == dict(counts.empty(), succeeded=2, failed=1, running=2, queued=7)
    assert d["jobs"] == {"total": 3, "active": 1, "states": {"SUCCEED": 1, "EXECUTING": 1, "FAILED": 1}}
    # not finished first, then the most recently finished
    assert [j["name"] for j in d["list"]] == ["sweep", "bad", "done"]
    assert d["list"][0]["counts"]["running"] == 2 and d["list"][0]["total"] == 10
    parts = d["resources"]["partitions"]
    assert [p["name"] for p in parts] == sorted(gov.core.partitions)
    assert sum(p["total_cores"] for p in parts) == 8 and sum(p["used_cores"] for p in parts) == 3
    # the test driver allocates n1[it % 4]: cores per node from the running iterations' allocations
    nodes = {n["name"]: (n["cores"], n["used"]) for p in parts for n in p["nodes"] if n["used"]}
    assert nodes == {"n1": (4, 2)}
    assert d["failures"] == [{"job": "bad", "failed": 1, "messages": ["bad: exit code 7"]}]
    assert d["list"][1]["message"] == "bad: exit code 7" and d["unknown"] == []
    assert [j["name"] for j in overview(gov, limit=1)["list"]] == ["sweep"]
    assert overview(gov, failures=0)["failures"] == []


@pytest.mark.parametrize("bad", [{"limit": -1}, {"limit": "x"}, {"failures": True}, {"jobs": "a"}])
def test_overview_bad_arguments(gov: Gov, bad: Dict[str, Any]) -> None:
    resp, _ = gov.request({"request": "overview", **bad})
    assert resp["code"] != 0 and list(bad)[0] in resp["message"]


def test_parse_allocation() -> None:
    assert _parse_allocation("n1[0:1],n2[4]") == [("n1", 2), ("n2", 1)]
    assert _parse_allocation("node-a[0:1:2:3]") == [("node-a", 4)]
    assert _parse_allocation("") == [] and _parse_allocation(None) == []
