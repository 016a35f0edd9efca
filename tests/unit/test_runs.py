"""Runs in columns read back exactly what was written, like a dict of records would."""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest
from hpilot.governor.core.runs import CHUNK, MAX_RUNS, IterRun, Runs, runs_in
from hypothesis import given, settings
from hypothesis import strategies as st

FIELDS = ("allocation", "wd", "scheduled", "started", "finished", "exit_code", "reason", "attempts", "pid",
          "partition")


def _record(run: Any) -> Dict[str, Any]:
    return {f: getattr(run, f) for f in FIELDS}


def test_a_view_writes_through_to_the_columns() -> None:
    runs = Runs(100, 5)
    assert not runs and len(runs) == 0 and runs.span() is None and list(runs) == []
    run = IterRun("n1[0:1]", "/wd", 1.0, 1.5)
    run.pid, run.partition = 4242, "p2"
    runs[102] = run
    view = runs[102]
    assert (view.finished, view.exit_code, view.reason, view.runtime) == (None, None, None, None)
    view.finished, view.exit_code, view.reason = 3.5, 7, "wall time"
    again = runs.get(102)
    assert _record(again) == {"allocation": "n1[0:1]", "wd": "/wd", "scheduled": 1.0, "started": 1.5,
                              "finished": 3.5, "exit_code": 7, "reason": "wall time", "attempts": 1,
                              "pid": 4242, "partition": "p2"}
    assert again.runtime == 2.0 and runs.span() == (1.5, 3.5)
    again.reason = None
    assert runs[102].reason is None
    with pytest.raises(KeyError):
        runs[99]  # outside the job's iterations
    with pytest.raises(KeyError):
        runs[105] = IterRun("a", "b", 0.0, 0.0)
    assert 102 in runs and 101 not in runs and "x" not in runs and len(runs) == 1


def _column_bytes(runs: Runs) -> int:
    return sum(t.itemsize * len(t) + i.itemsize * len(i) for t, i in runs._chunks.values())


def test_a_million_runs_cost_columns_not_objects() -> None:
    n = 1_000_000
    runs = Runs(0, n)
    runs[0] = IterRun("n1[0]", "/wd", 0.0, 0.0)
    runs[1] = IterRun("n1[1]", "/wd", 0.0, 0.0)
    assert _column_bytes(runs) == 48 * CHUNK  # two runs: one chunk, not the whole job
    for it in range(0, n, CHUNK // 2):
        runs[it] = IterRun("n1[0]", "/wd", 1.0, 1.0)
    assert _column_bytes(runs) == 48 * n  # the last chunk is cut to the job's end
    assert len(runs) == len(range(0, n, CHUNK // 2)) + 1
    assert list(runs)[:4] == [0, 1, CHUNK // 2, CHUNK] and list(runs)[-1] == n - n % (CHUNK // 2)


_opt_int = st.one_of(st.none(), st.integers(-(2 ** 31) + 1, 2 ** 31 - 1))
_time = st.floats(0, 1e10, allow_nan=False)
_run = st.builds(
    lambda a, w, s, t, f, e, r, att, pid, part: (a, w, s, t, f, e, r, att, pid, part),
    st.sampled_from(["n1[0]", "n2[1:2]", ""]), st.sampled_from(["/a", "/b"]), _time, _time,
    st.one_of(st.none(), _time), _opt_int, st.one_of(st.none(), st.text(max_size=5)),
    st.integers(1, 3), st.one_of(st.none(), st.integers(0, 2 ** 31 - 1)),
    st.one_of(st.none(), st.sampled_from(["p1", "p2"])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(5, 14), st.integers(CHUNK, CHUNK + 14)), _run), max_size=30))
def test_columns_behave_like_a_dict_of_records(writes: Any) -> None:
    runs = Runs(5, 10 + CHUNK)  # two chunks, the second cut short
    model: Dict[int, Dict[str, Any]] = {}
    for it, (a, w, s, t, f, e, r, att, pid, part) in writes:
        run = IterRun(a, w, s, t, f, e, r)
        run.attempts, run.pid, run.partition = att, pid, part
        runs[it] = run
        model[it] = _record(run)
    assert sorted(runs) == sorted(model) and len(runs) == len(model)
    for it, rec in model.items():
        assert _record(runs[it]) == rec
    starts = [r["started"] for r in model.values()]
    ends = [r["finished"] for r in model.values() if r["finished"] is not None]
    want: Optional[Any] = (min(starts), max(ends) if ends else None) if model else None
    assert runs.span() == want


def test_span_reads_replayed_runs_in_place() -> None:
    runs = Runs(0, 4)
    runs.add_compact(1, ("j", 1, "SUCCEED", 0, 5.0, 9.0, "n1[0]", "/w", None))
    runs.add_compact(2, ("j", 2, "FAILED", 1, 4.0, 6.0, "n1[1]", "/w", "exit 1"))
    assert runs.span() == (4.0, 9.0) and runs._compact is not None and len(runs._compact) == 2  # not loaded
    runs[0] = IterRun("n1[2]", "/w", 1.0, 2.0)
    assert runs.span() == (2.0, 9.0)
    runs[0].finished = 12.0
    assert runs.span() == (2.0, 12.0)


def test_start_and_finish_write_the_columns_directly() -> None:
    runs = Runs(0, 3)
    assert runs.finish(1, 5.0, 0, None) is None  # never started
    runs.start(1, "n1[0]", "/w", 1.0, 2.0, 77, "p1")
    assert _record(runs[1]) == {"allocation": "n1[0]", "wd": "/w", "scheduled": 1.0, "started": 2.0,
                                "finished": None, "exit_code": None, "reason": None, "attempts": 1, "pid": 77,
                                "partition": "p1"}
    assert runs.finish(1, 4.0, 3, "exit 3") == 2.0
    assert (runs[1].finished, runs[1].exit_code, runs[1].reason) == (4.0, 3, "exit 3")
    runs.start(1, "n2[1]", "/w", 6.0, 6.5, None, "p2")  # re-run elsewhere: a second attempt, a clean record
    assert _record(runs[1])["attempts"] == 2 and runs[1].reason is None and runs[1].finished is None
    runs.add_compact(2, ("j", 2, "SUCCEED", 0, 8.0, 9.0, "n1[1]", "/w2", None))
    runs.start(2, "n1[1]", "/w2", 10.0, 10.0, 5, None)  # a replayed run started again after a resume
    assert runs[2].attempts == 2 and len(runs) == 2
    assert runs.finish(99, 1.0, 0, None) is None


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_run_of_iterations_is_written_as_one_by_one(data: Any) -> None:
    """start_many/finish_many of consecutive iterations write strided slices; what they write
    is what the per-iteration path writes (chunk edges, re-runs, pids, mixed strings)."""
    first = data.draw(st.integers(-5, 5))
    count = CHUNK + 50
    fast, slow = Runs(first, count), Runs(first, count)
    for _ in range(data.draw(st.integers(1, 4))):
        lo = data.draw(st.integers(0, count - 1))
        n = data.draw(st.integers(1, min(count - lo, CHUNK + 10)))
        its = tuple(range(first + lo, first + lo + n))
        if data.draw(st.booleans()):  # a batch of a few runs, where grants meet
            keep = data.draw(st.lists(st.integers(0, n - 1), max_size=4))
            gaps = set(keep)
            its = tuple(it for k, it in enumerate(its) if k not in gaps) or its[:1]
            n = len(its)
        allocs = tuple(data.draw(st.sampled_from(["n0[0]", "n0[1]", "n1[0]"])) if data.draw(st.booleans())
                       else "n0[0]" for _ in range(n))
        wds = tuple("/w" if k % 7 else "/x" for k in range(n)) if data.draw(st.booleans()) else ("/w",) * n
        sched = tuple(float(k) for k in range(n))
        began = tuple(k + 0.5 for k in range(n))
        pids = tuple(None if k % 3 == 0 else 100 + k for k in range(n)) if data.draw(st.booleans()) else (None,) * n
        fast.start_many(its, allocs, wds, sched, began, pids, "p1")
        for k, it in enumerate(its):  # one by one: the general path
            slow.start(it, allocs[k], wds[k], sched[k], began[k], pids[k], "p1")
        if data.draw(st.booleans()):
            ends = tuple(k + 1.0 for k in range(n))
            fast.finish_many(its, ends, began, allocs, wds)
            for k, it in enumerate(its):
                slow.finish(it, ends[k], 0, None)
    assert len(fast) == len(slow)
    assert {it: _record(r) for it, r in fast.items()} == {it: _record(r) for it, r in slow.items()}
    assert fast.span() == slow.span()


def test_a_run_with_an_iteration_never_started_finishes_on_the_general_path() -> None:
    runs = Runs(0, 10)
    runs.start_many((2, 3), ("a", "b"), ("/w", "/w"), (1.0, 1.0), (1.5, 1.5), (None, None), None)
    runs.finish_many((2, 3, 4), (2.0, 2.0, 2.0), (1.5, 1.5, 1.8), ("a", "b", "c"), ("/w", "/w", "/w"))
    assert [runs[i].finished for i in (2, 3, 4)] == [2.0, 2.0, 2.0]
    assert runs[4].started == 1.8 and runs[4].allocation == "c" and runs[4].exit_code == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 60), max_size=40))
def test_runs_in_cuts_a_batch_at_its_seams_or_refuses_it(its: Any) -> None:
    pieces = runs_in(its, -3, 64)
    increasing = all(a < b for a, b in zip(its, its[1:]))
    if not its or not increasing:
        assert pieces is None
        return
    if pieces is None:  # only when it has more runs than the fast path takes
        assert sum(1 for a, b in zip(its, its[1:]) if b != a + 1) + 1 > MAX_RUNS
        return
    assert [it for i, j in pieces for it in range(its[i], its[i] + j - i)] == list(its)
    assert all(its[j - 1] - its[i] == j - 1 - i for i, j in pieces)
    assert len(pieces) == sum(1 for a, b in zip(its, its[1:]) if b != a + 1) + 1  # one per run, none split
    assert runs_in(its, its[0] + 1, 64) is None and runs_in(its, -3, its[-1] + 3) is None  # outside the job
