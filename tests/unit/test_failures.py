"""A failed task's details travel up: launcher wire -> partition core -> partition wire -> governor
core -> jobInfo, jobs.report, the summary line, the journal, and back after a resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

from hpilot.governor.core.events import ClientRequest, FromPart, Record
from hpilot.governor.core.governor import GovernorCore
from hpilot.governor.core.registry import MAX_FAILURES
from hpilot.governor.service import journal
from hpilot.governor.service.report import _text, job_entry
from hpilot.governor.service.resume import restore
from hpilot.governor.service.service import first_failure
from hpilot.launcher import wire as agent_wire
from hpilot.launcher.core import TaskExit
from hpilot.partition import batchwire, wire
from hpilot.partition.messages import IterationFinished, IterationStarted

from tests.unit.cores import make_core

TAIL = "Traceback (most recent call last):\n  File \"sim.py\", line 3\nValueError: bad input"


def _core(root: Path) -> GovernorCore:
    core = make_core(root, nodes="4", started=1.0)
    core.journaling = True
    return core


def _submit(core: GovernorCore, *jobs: Any) -> List[Any]:
    actions = core.handle(ClientRequest({"request": "submit", "jobs": list(jobs)}, 2.0))
    assert actions[0].response["code"] == 0, actions[0].response
    return actions


def _run(core: GovernorCore, job: str, it: int, code: int, tail: Any = None, reason: Any = None) -> List[Any]:
    core.handle(FromPart("p0", IterationStarted(job, it, "n0[0]", "/wd", 3.0, 3.0 + it, 1, 100 + it)))
    return core.handle(FromPart("p0", IterationFinished(job, it, code, 3.0 + it, 4.0 + it, "n0[0]", "/wd", 1,
                                                        reason, False, tail)))


def _info(core: GovernorCore, name: str) -> Any:
    resp = core.handle(ClientRequest({"request": "jobInfo", "jobNames": [name]}, 9.0))[0].response
    return resp["data"]["jobs"][name]["data"]


def test_the_stderr_tail_crosses_both_wires() -> None:
    ex = TaskExit("sweep:3", 3, 1.0, 2.0, None, 42, TAIL)
    assert agent_wire.decode(agent_wire.encode(agent_wire.Exited.of(ex))).to_exit() == ex
    fin = IterationFinished("sweep", 3, 3, 1.0, 2.0, "n0[0]", "/wd", 1, None, False, TAIL)
    ok = IterationFinished("sweep", 4, 0, 1.0, 2.0, "n0[0]", "/wd")
    assert batchwire.decode_frame(batchwire.encode_batch([fin, ok])) == ([fin, ok], [])  # compact form, both lengths
    assert wire.decode(wire.encode(fin)) == fin
    bad = json.loads(batchwire.encode_batch([fin, ok]))
    bad[0][-1] = 7  # a tail that is not text is dropped with its reason, the rest is kept
    msgs, errors = batchwire.decode_frame(json.dumps(bad).encode())
    assert msgs == [ok] and "IterationFinished" in errors[0]


def test_job_info_lists_failed_iterations_with_exit_code_reason_and_stderr(tmp_path: Path) -> None:
    core = _core(tmp_path)
    _submit(core, {"name": "sweep", "iteration": {"stop": 4}, "execution": {"exec": "/bin/true"}},
            {"name": "one", "execution": {"exec": "/bin/true"}})
    _run(core, "sweep", 0, 0)
    actions = _run(core, "sweep", 1, 3, TAIL)
    _run(core, "sweep", 2, 143, None, "wall time of 1s exceeded")
    _run(core, "sweep", 3, 0)
    _run(core, "one", 0, 1, "oops")
    info = _info(core, "sweep")
    assert info["status"] == "FAILED"
    assert info["failures"] == [{"iteration": 1, "exit_code": 3, "stderr": TAIL},
                                {"iteration": 2, "exit_code": 143, "reason": "wall time of 1s exceeded"}]
    assert _info(core, "one")["failures"] == [{"exit_code": 1, "stderr": "oops"}]  # no iteration key
    assert info["messages"] == "sweep:1: exit code 3\nsweep:2: wall time of 1s exceeded"  # QCG's key unchanged
    # the tail is journaled before the iteration's record, so that a resume shows it too
    recs = [a.data for a in actions if isinstance(a, Record)]
    assert recs[0].startswith(b"J ") and b'"t":"stderr"' in recs[0] and recs[1].startswith(b"I ")


def test_only_the_first_failures_are_kept(tmp_path: Path) -> None:
    core = _core(tmp_path)
    _submit(core, {"name": "many", "iteration": {"stop": MAX_FAILURES + 30}, "execution": {"exec": "/bin/true"}})
    for it in range(MAX_FAILURES + 30):
        actions = _run(core, "many", it, 2, f"err {it}")
        stderr_records = [a for a in actions if isinstance(a, Record) and b'"stderr"' in a.data]
        assert len(stderr_records) == (1 if it < MAX_FAILURES else 0)
    failures = _info(core, "many")["failures"]
    assert [f["iteration"] for f in failures] == list(range(MAX_FAILURES))


def test_report_and_summary_say_what_the_failure_wrote(tmp_path: Path) -> None:
    core = _core(tmp_path)
    _submit(core, {"name": "sweep", "iteration": {"stop": 2}, "execution": {"exec": "/bin/true"}})
    _run(core, "sweep", 0, 3, TAIL)
    _run(core, "sweep", 1, 0)
    rec = core.registry.get("sweep")
    assert rec is not None
    entry = job_entry(rec)
    assert entry["failures"] == [{"iteration": 0, "exit_code": 3, "stderr": TAIL}]
    text = _text(entry)
    assert "    failed: sweep:0 exit code 3\n" in text
    assert "      | ValueError: bad input\n" in text
    assert first_failure(core.registry) == "; first failure: sweep:0 exit code 3: ValueError: bad input"


def test_a_resume_rebuilds_the_failures_with_their_stderr(tmp_path: Path) -> None:
    core = _core(tmp_path)
    records: List[bytes] = []
    records += [a.data for a in _submit(core, {"name": "sweep", "iteration": {"stop": 3},
                                               "execution": {"exec": "/bin/true"}}) if isinstance(a, Record)]
    for it, code, tail in ((0, 3, TAIL), (1, 4, None), (2, 0, None)):
        records += [a.data for a in _run(core, "sweep", it, code, tail) if isinstance(a, Record)]
    run = tmp_path / "run"
    run.mkdir()
    j = journal.Journal(str(run / "journal"), header={"run": "r"})
    j.write(records)
    j.close()
    again = _core(tmp_path)
    restore(again, str(run), 10.0)
    assert _info(again, "sweep")["failures"] == _info(core, "sweep")["failures"] == [
        {"iteration": 0, "exit_code": 3, "stderr": TAIL}, {"iteration": 1, "exit_code": 4}]
