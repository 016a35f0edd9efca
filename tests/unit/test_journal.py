"""The journal's format survives any cut or damage, and a restore rebuilds the core from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from hpilot.governor.core.governor import (
    ClientRequest,
    FromPart,
    GovernorCore,
    Record,
    SendToPartition,
)
from hpilot.governor.core.states import JobState
from hpilot.governor.service import journal
from hpilot.governor.service.resume import ResumeError, find_run, restore, resume_plan
from hpilot.partition.messages import IterationFinished, IterationStarted, Work

from tests.unit.cores import make_core


def _write(path: Path, records: List[bytes]) -> None:
    j = journal.Journal(str(path), header={"run": "t"})
    j.write(records)
    j.close()


SAMPLE = [
    journal.json_record({"t": "cancel", "time": 1.0, "jobs": ["a"]}),
    journal.started_record("sweep", 3, 4242, 10.5),
    journal.finished_record("sweep", 3, "SUCCEED", 0, 10.5, 11.25, "n0[1]", "/tmp/w\tith tab", None),
    journal.finished_record("sweep", 4, "FAILED", 3, 10.5, 11.5, "n0[0]", "/w", "exit\nreason \\ here"),
]


def test_records_round_trip_with_escaped_fields(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _write(path, SAMPLE)
    rep = journal.read(str(path))
    assert rep.dropped == 0 and rep.header["version"] == journal.VERSION
    kinds = [k for k, _ in rep.records]
    assert kinds == ["J", "S", "I", "I"]
    assert rep.records[1][1] == ("sweep", 3, 4242, 10.5)
    assert rep.records[2][1] == ("sweep", 3, "SUCCEED", 0, 10.5, 11.25, "n0[1]", "/tmp/w\tith tab", None)
    assert rep.records[3][1][8] == "exit\nreason \\ here"


def test_a_cut_at_any_byte_replays_exactly_the_whole_records_before_it(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _write(path, SAMPLE)
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    cut_path = tmp_path / "cut"
    for cut in range(header_end, len(data) + 1):
        cut_path.write_bytes(data[:cut])
        rep = journal.read(str(cut_path))
        whole = sum(1 for e in ends[1:] if e <= cut)
        assert len(rep.records) == whole, f"cut at byte {cut}"
        assert rep.dropped == (0 if cut in ends else 1), f"cut at byte {cut}"


def test_a_reopened_journal_ends_a_torn_line_first_keeping_a_record_short_only_of_its_newline(
        tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _write(path, SAMPLE)
    data = path.read_bytes()
    last = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut, kept in ((len(data) - 1, len(SAMPLE)), (len(data) - 5, len(SAMPLE) - 1)):
        path.write_bytes(data[:cut])
        journal.Journal(str(path)).close()  # what a resume does before it reads
        rep = journal.read(str(path))
        assert len(rep.records) == kept, f"cut at byte {cut}"
        assert rep.dropped == len(SAMPLE) - kept
        assert path.read_bytes()[last:].count(b"\n") == 1


def test_a_cut_inside_the_header_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _write(path, SAMPLE)
    (tmp_path / "cut").write_bytes(path.read_bytes()[:5])
    with pytest.raises(journal.JournalError):
        journal.read(str(tmp_path / "cut"))


def test_garbage_tail_and_damaged_middle_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _write(path, SAMPLE)
    lines = path.read_bytes().split(b"\n")
    damaged = bytearray(lines[2])
    damaged[-1] ^= 0x01  # one flipped bit in record 2's body
    lines[2] = bytes(damaged)
    path.write_bytes(b"\n".join(lines) + b"\x00\xffgarbage\nmore garbage")
    rep = journal.read(str(path))
    assert [k for k, _ in rep.records] == ["J", "I", "I"]
    assert rep.dropped == 3  # the flipped record, the garbage line, the torn tail
    assert rep.problems


def test_other_version_and_not_a_journal_give_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.write_bytes(journal.frame("H", '{"version": 99}'))
    with pytest.raises(journal.JournalError, match="version 99"):
        journal.read(str(path))
    path.write_text("hello\n")
    with pytest.raises(journal.JournalError, match="not an hpilot journal"):
        journal.read(str(path))


def test_find_run_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="not an hpilot run directory"):
        find_run(str(tmp_path))
    with pytest.raises(ResumeError, match="no such directory"):
        find_run(str(tmp_path / "nope"))


# ---- restore: a scenario recorded by one core is rebuilt in another ----


def _core(root: Path) -> GovernorCore:
    core = make_core(root, nodes="n1:4")
    core.journaling = True
    return core


def _submit(core: GovernorCore, jobs: List[Dict[str, Any]], out: List[Any]) -> None:
    out.extend(core.handle(ClientRequest({"request": "submit", "jobs": jobs}, 100.0)))


def _finish(core: GovernorCore, job: str, it: int, code: int, out: List[Any]) -> None:
    out.extend(core.handle(FromPart("p0", IterationStarted(job, it, "n1[0]", "/w", 101.0, 101.0, 1, 77))))
    out.extend(core.handle(FromPart("p0", IterationFinished(job, it, code, 101.0, 102.0, "n1[0]", "/w", 1))))


def test_restore_rebuilds_states_and_runs_only_what_is_left(tmp_path: Path) -> None:
    E = {"exec": "/bin/true"}
    first = _core(tmp_path)
    out: List[Any] = []
    _submit(first, [
        {"name": "sweep", "iteration": {"stop": 5}, "execution": E},
        {"name": "after", "execution": E, "dependencies": {"after": ["sweep"]}},
        {"name": "bad", "execution": E},
        {"name": "dep_of_bad", "execution": E, "dependencies": {"after": ["bad"]}},
        {"name": "gone", "execution": E},
    ], out)
    for it in (0, 1, 3):
        _finish(first, "sweep", it, 0, out)
    _finish(first, "bad", 0, 1, out)
    _finish(first, "gone", 0, 0, out)
    out.extend(first.handle(ClientRequest({"request": "removeJob", "jobNames": ["gone"]}, 103.0)))
    run = tmp_path / ".hpilot" / "r1"
    run.mkdir(parents=True)
    _write(run / "journal", [a.data for a in out if isinstance(a, Record)])

    second = make_core(tmp_path, nodes="n1:4")
    actions, plan = restore(second, str(run), 200.0)
    second.validate()
    reg = second.registry
    assert "gone" not in reg
    assert reg.jobs["bad"].state is JobState.FAILED
    assert reg.jobs["dep_of_bad"].state is JobState.OMITTED
    assert reg.jobs["sweep"].state is JobState.EXECUTING
    assert [reg.jobs["sweep"].it_state(i) for i in range(5)] == [
        JobState.SUCCEED, JobState.SUCCEED, JobState.QUEUED, JobState.SUCCEED, JobState.QUEUED]
    work = [a.message for a in actions if isinstance(a, SendToPartition)]
    assert len(work) == 1 and isinstance(work[0], Work)
    assert work[0].spec.job == "sweep" and tuple(work[0].iterations) == (2, 4)
    assert reg.jobs["after"].unmet == 1 and not reg.jobs["after"].dispatched
    assert plan.iterations_done == 5 and plan.to_run == 3 and plan.orphans == []
    assert second.rcnt == first.rcnt
    # the plan alone, without a service
    dry = resume_plan(str(run))
    assert (dry.jobs, dry.jobs_done, dry.to_run) == (plan.jobs, plan.jobs_done, plan.to_run)


def test_restore_reports_iterations_that_were_running_as_orphans(tmp_path: Path) -> None:
    first = _core(tmp_path)
    out: List[Any] = []
    _submit(first, [{"name": "s", "iteration": {"stop": 2}, "execution": {"exec": "/bin/true"}}], out)
    out.extend(first.handle(FromPart("p0", IterationStarted("s", 0, "n1[0]", "/w", 1.0, 1.0, 1, 999))))
    run = tmp_path / "run"
    run.mkdir()
    _write(run / "journal", [a.data for a in out if isinstance(a, Record)])
    second = make_core(tmp_path, nodes="n1:4")
    actions, plan = restore(second, str(run), 5.0)
    assert plan.orphans == [(999, 1.0)]
    work = [a.message for a in actions if isinstance(a, SendToPartition)]
    assert tuple(work[0].iterations) == (0, 1)  # the running one runs again


def test_replayed_runs_read_back_like_built_ones(tmp_path: Path) -> None:
    """Replayed runs stay compact until read; every way of reading them gives the run."""
    from hpilot.governor.core.runs import IterRun, Runs

    runs = Runs(0, 10)
    runs[0] = IterRun("n1[0]", "/w", 1.0, 1.0, 2.0, 0, None)
    runs.add_compact(1, ("sweep", 1, "FAILED", 3, 5.0, 7.5, "n1[1]", "/w2", "exit 3"))
    runs.add_compact(2, ("sweep", 2, "SUCCEED", 0, 8.0, 9.0, "n1[2]", "/w2", None))
    assert len(runs) == 3 and 1 in runs and 5 not in runs and runs
    one = runs.get(1)
    assert one is not None
    assert (one.allocation, one.wd, one.started, one.finished, one.exit_code, one.reason) == (
        "n1[1]", "/w2", 5.0, 7.5, 3, "exit 3")
    assert runs[1].reason == "exit 3" and len(runs) == 3  # loaded once, counted once
    assert runs.get(5) is None and runs.get(5, "x") == "x" and runs.get(10) is None
    with pytest.raises(KeyError):
        runs[5]
    runs[2] = IterRun("n9[0]", "/w3", 10.0, 10.0)  # a newer run replaces the compact one
    assert runs[2].allocation == "n9[0]" and runs[2].finished is None and len(runs) == 3
    assert sorted(runs) == [0, 1, 2] and sorted(r.allocation for r in runs.values()) == ["n1[0]", "n1[1]", "n9[0]"]


def test_restored_iterations_keep_their_runtime_for_queries(tmp_path: Path) -> None:
    from hpilot.governor.core.queries import job_info

    first = _core(tmp_path)
    out: List[Any] = []
    _submit(first, [{"name": "s", "iteration": {"stop": 3}, "execution": {"exec": "/bin/true"}}], out)
    _finish(first, "s", 0, 0, out)
    _finish(first, "s", 2, 4, out)
    run = tmp_path / "run"
    run.mkdir()
    _write(run / "journal", [a.data for a in out if isinstance(a, Record)])
    second = make_core(tmp_path, nodes="n1:4")
    restore(second, str(run), 5.0)
    info = job_info(second.registry.jobs["s"], with_childs=True)
    childs = {c["iteration"]: c for c in info["childs"]}
    assert childs[0]["runtime"]["exit_code"] == "0" and childs[0]["runtime"]["allocation"] == "n1[0]"
    assert childs[2]["runtime"]["exit_code"] == "4" and childs[2]["state"] == "FAILED"
    assert "runtime" not in childs[1] and childs[1]["state"] == "QUEUED"
