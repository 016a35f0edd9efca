"""The binned series behind the plots that scale (governor/reports/timeline.py), and the
journal as a source of per-task times (governor/reports/rundata.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import List, Tuple

import pytest
from hpilot.governor.core import records
from hpilot.governor.reports import timeline
from hpilot.governor.reports.rundata import RunData, Task, load

HAVE_NUMPY = timeline.have_numpy()


def brute(intervals: List[Tuple[int, float, float, float]], rows: int, t0: float, width: float, n: int
          ) -> List[List[float]]:
    """The definition: each bin gets weight x (the part of the bin the interval covers)."""
    out = [[0.0] * n for _ in range(rows)]
    for row, b, e, w in intervals:
        for j in range(n):
            lo, hi = t0 + j * width, t0 + (j + 1) * width
            out[row][j] += w * max(0.0, min(e, hi) - max(b, lo)) / width
    return out


@pytest.mark.parametrize("seed", range(8))
def test_binned_is_exact_in_both_implementations(seed: int) -> None:
    rnd = random.Random(seed)
    t0, width, n, rows = 100.0, 0.7, 37, 3
    intervals = []
    for _ in range(200):
        b = rnd.uniform(t0 - 3, t0 + n * width + 3)  # some start before, some end after the window
        intervals.append((rnd.randrange(rows), b, b + rnd.choice([0.0, 0.01, rnd.uniform(0, 9)]), rnd.randint(1, 4)))
    want = brute(intervals, rows, t0, width, n)
    pure = timeline.binned(intervals, rows, t0, width, n, use_numpy=False)
    for got in [pure] + ([timeline.binned(intervals, rows, t0, width, n, use_numpy=True).tolist()]
                         if HAVE_NUMPY else []):
        for r in range(rows):
            assert got[r] == pytest.approx(want[r], abs=1e-9)


@pytest.mark.parametrize("span, bins, width", [
    (10.0, 100, 0.1), (47.0, 600, 0.1), (47.0, 150, 0.5), (3600.0, 600, 10.0), (7200.0, 100, 120.0),
    (86400.0 * 3, 100, 3600.0), (0.01, 100, 0.0001),
])
def test_nice_width(span: float, bins: int, width: float) -> None:
    assert timeline.nice_width(span, bins) == pytest.approx(width)
    assert span / timeline.nice_width(span, bins) <= bins * (1 + 1e-9)


def _run(nodes: int, cores: int, tasks: List[Task], partitions: dict | None = None) -> RunData:
    run = RunData("/nowhere", nodes=[(f"n{i}", list(range(cores))) for i in range(nodes)], tasks=tasks,
                  started=0.0, finished=max((t.end or 0.0) for t in tasks))
    run.partitions = partitions or {}
    return run


def _task(task_id: str, node: str, cores: int, b: float, e: float, lanes: List[int] | None = None) -> Task:
    t = Task(task_id, [(node, cores)], None, b, e)
    t.lanes = {node: lanes if lanes is not None else list(range(cores))}
    return t


def test_busy_cores_add_up_to_the_tasks_core_seconds_per_group() -> None:
    rnd = random.Random(1)
    tasks = [_task(f"j:{i}", f"n{rnd.randrange(40)}", rnd.randint(1, 4), s := rnd.uniform(0, 90),
                   s + rnd.uniform(0.1, 10)) for i in range(2000)]
    run = _run(40, 4, tasks)
    d = timeline.busy_cores(run)
    assert len(d["groups"]) == timeline.MAX_GROUPS  # 40 nodes: runs of 5 consecutive nodes
    assert d["groups"][0]["name"] == "n0..n4 (5 nodes)" and d["groups"][0]["cores"] == 20
    core_s = sum(t.ncores * (t.end - t.spawn) for t in tasks)  # type: ignore[operator]
    assert d["busy_core_s"] == pytest.approx(core_s)
    assert sum(d["total_busy"]) * d["bin_s"] == pytest.approx(core_s, rel=1e-6)
    assert d["utilization_pct"] == pytest.approx(100 * core_s / (160 * d["span_s"]), abs=0.01)
    for g, first in zip(d["groups"], range(0, 40, 5)):
        nodes = {f"n{i}" for i in range(first, first + 5)}
        mine = sum(t.ncores * (t.end - t.spawn) for t in tasks if t.placement[0][0] in nodes)  # type: ignore
        assert len(g["busy"]) == len(d["times"]) and sum(g["busy"]) * d["bin_s"] == pytest.approx(mine, rel=1e-6)


def test_node_groups_are_the_partitions_in_governor_mode() -> None:
    tasks = [_task("a:0", "n0", 1, 0, 1), _task("a:1", "n3", 2, 0, 2)]
    run = _run(4, 2, tasks, {"p1": ["n0", "n1"], "p2": ["n2"]})
    d = timeline.busy_cores(run)
    assert [(g["name"], g["cores"]) for g in d["groups"]] == [("p1", 4), ("p2", 2), ("not in a partition", 2)]
    assert sum(d["groups"][0]["busy"]) * d["bin_s"] == pytest.approx(1.0)
    assert sum(d["groups"][2]["busy"]) * d["bin_s"] == pytest.approx(4.0)
    small = _run(3, 2, tasks[:1])
    assert [g[0] for g in timeline.node_groups(small)] == ["n0", "n1", "n2"]


def test_throughput_counts_every_finished_task_per_job() -> None:
    tasks = [_task(f"big:{i}", "n0", 1, i * 0.01, i * 0.01 + 1) for i in range(500)]
    tasks += [_task(f"small{i}", "n1", 1, 0, 2 + i) for i in range(12)]  # 12 jobs of one task each
    d = timeline.throughput(_run(2, 4, tasks), max_jobs=3)
    names = [j["name"] for j in d["jobs"]]
    assert names[0] == "big" and names[-1] == "other jobs (10)" and len(names) == 4
    assert [j["done"][-1] for j in d["jobs"]] == [500, 1, 1, 10]
    assert sum(sum(j["per_s"]) * d["bin_s"] for j in d["jobs"]) == pytest.approx(512)


def test_density_rows_are_nodes_when_many_and_runs_of_cores_when_few() -> None:
    many = _run(64, 8, [_task("a:0", "n5", 8, 0.0, 10.0), _task("a:1", "n6", 4, 0.0, 5.0)])
    d = timeline.density(many, columns=10)
    assert d["by"] == "node" and len(d["rows"]) == 64 and d["rows"][5] == "n5"
    assert d["grid"][5] == pytest.approx([1.0] * 10)
    assert d["grid"][6] == pytest.approx([0.5] * 5 + [0.0] * 5)
    grouped = timeline.density(many, columns=10, max_rows=16)
    assert len(grouped["rows"]) == 16 and grouped["rows"][1] == "n4..n7"
    assert grouped["grid"][1][0] == pytest.approx((8 + 4) / 32)
    few = _run(2, 300, [_task("b:0", "n1", 3, 0.0, 10.0, lanes=[0, 1, 299])])
    d = timeline.density(few, columns=4)  # 600 cores: rows of 2 cores, 300 rows
    assert d["by"] == "cores" and len(d["rows"]) == 300 and d["rows"][0] == "n0:0-1"
    assert d["row_cores"][0] == 2 and d["rows"][-1] == "n1:298-299"
    first = d["rows"].index("n1:0-1")
    assert d["grid"][first] == pytest.approx([1.0] * 4) and d["grid"][-1] == pytest.approx([0.5] * 4)
    assert sum(map(sum, d["grid"])) == pytest.approx(4 * 1.5)  # nothing else is busy


def _journal(path: Path, lines: List[bytes]) -> None:
    head = records.frame("H", json.dumps({"version": records.VERSION}))
    path.write_bytes(head + b"".join(lines))


def test_the_journal_gives_every_finished_task(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "final_status").write_text(json.dumps({"started": 0.0, "finished": 20.0, "resources": {
        "nodes": [{"name": "n0", "cores": [0, 1]}, {"name": "n1", "cores": [0, 1]}], "total_cores": 4}}))
    submit = records.json_record({"t": "submit", "time": 0.0, "values": {}, "jobs": [
        {"name": "sweep", "iteration": {"stop": 3}, "execution": {"exec": "x"}}, {"name": "one"}]})
    bad = bytearray(records.finished_record("sweep", 2, "SUCCEED", 0, 1.0, 2.0, "n0[0]", "/w", None))
    bad[20] ^= 1  # a damaged record: skipped and counted, never misread
    _journal(run / "journal", [
        submit,
        records.started_record("sweep", 0, 11, 1.0),
        records.finished_record("sweep", 0, "FAILED", 3, 1.0, 4.0, "n0[0:1]", "/w", "a\treason"),
        records.finished_record("sweep", 1, "SUCCEED", 0, 1.0, 3.0, "n1[1]", "/w", None),
        bytes(bad),
        records.finished_record("one", 0, "SUCCEED", 0, 5.0, 6.0, "n0[0],n1[0]", "/w", None),
        records.finished_record("sweep", 1, "SUCCEED", 0, 7.0, 9.0, "n0[1]", "/w", None),  # a re-run: it wins
    ])
    data = load(str(run))
    assert data.task_source == "journal"
    got = {t.task_id: (t.placement, t.spawn, t.end, t.exit_code, t.reason) for t in data.tasks}
    assert got == {"sweep:0": ([("n0", 2)], 1.0, 4.0, 3, "a\treason"),
                   "sweep:1": ([("n0", 1)], 7.0, 9.0, 0, None),
                   "one": ([("n0", 1), ("n1", 1)], 5.0, 6.0, 0, None)}
    assert any("1 record(s) damaged" in n for n in data.notes)
    assert {t.task_id: t.lanes for t in data.tasks}["sweep:1"] == {"n0": [1]}  # its real core id


def test_the_columns_and_the_task_objects_give_the_same_figures(tmp_path: Path) -> None:
    """The binned plots read the journal's columns (no Task objects); the figures are the same."""
    run = tmp_path / "run"
    run.mkdir()
    nodes = [{"name": f"n{i}", "cores": [0, 1, 2, 3]} for i in range(40)]
    (run / "final_status").write_text(json.dumps({"started": 0.0, "finished": 100.0, "resources": {
        "nodes": nodes, "total_cores": 160}, "partitions": {"p2": [f"n{i}" for i in range(20, 40)],
                                                            "p1": [f"n{i}" for i in range(20)]}}))
    rnd = random.Random(3)
    lines = [records.json_record({"t": "submit", "time": 0.0, "values": {}, "jobs": [
        {"name": j, "iteration": {"stop": 300}} for j in ("a", "b")]})]
    for job in ("a", "b"):
        for it in range(300):
            b = rnd.uniform(0, 90)
            lines.append(records.finished_record(job, it, "SUCCEED", 0, b, b + rnd.uniform(0.1, 9),
                                                 f"n{rnd.randrange(40)}[{rnd.randrange(4)}]", "/w", None))
    _journal(run / "journal", lines)
    columns, objects = load(str(run), lanes=False, objects=False), load(str(run))
    assert list(columns.partitions) == ["p1", "p2"]
    assert columns.spans is not None and not columns.tasks and len(objects.tasks) == 600
    for fn in (timeline.busy_cores, timeline.throughput, timeline.density):
        assert fn(columns) == fn(objects), fn.__name__
