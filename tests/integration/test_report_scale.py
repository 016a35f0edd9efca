"""``hpilot report ... cores | throughput | gantt`` at scale.

A real run in governor mode (real processes on 40 virtual nodes, two partition managers)
checks the figures against what ran; a synthesized run directory of 100,000 tasks on
1,000 nodes (a journal and final_status written with hpilot's own record functions:
running 100,000 tasks here would take the test minutes) checks that the plots render at
that size and stay readable: a fixed size, one row per node.  How fast they render is
measured in bench/ (docs/benchmarks.md), never asserted here.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hpilot.governor.core import records

from tests.conftest import run_hpilot, submit, write_requests

pytestmark = pytest.mark.integration
mpl = pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install 'hpilot[report]')")


def hp(args: List[str], cwd: Path) -> str:
    proc = run_hpilot(args, cwd, timeout=110)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def png_size(path: Path) -> tuple:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("scalerun")
    write_requests(wd / "jobs.json", submit(
        {"name": "short", "iteration": {"stop": 120}, "execution": {"exec": "/bin/sleep", "args": ["0.05"]}},
        {"name": "wide", "iteration": {"stop": 20}, "execution": {"exec": "/bin/sleep", "args": ["0.2"]},
         "resources": {"numCores": {"exact": 2}}, "dependencies": {"after": ["short"]}}))
    nodes = ",".join(["2"] * 40)
    proc = run_hpilot(["run", "jobs.json", "--nodes", nodes, "--partition-nodes", "20", "--report-format", "json"],
                      wd, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return wd


def test_busy_cores_of_a_real_governor_run_are_per_partition(real: Path, tmp_path: Path) -> None:
    d = json.loads(hp(["report", ".", "cores", "--json"], real))
    assert [(g["name"], g["nodes"], g["cores"]) for g in sorted(d["groups"], key=lambda g: g["name"])] == [
        ("p1", 20, 40), ("p2", 20, 40)]
    tasks = json.loads(hp(["report", ".", "text", "--json"], real))["tasks"]
    assert len(tasks) == 140
    core_s = sum(t["cores"] * t["runtime_s"] for t in tasks)
    assert d["busy_core_s"] == pytest.approx(core_s, rel=1e-3)  # the journal's start and end of each task
    assert sum(d["total_busy"]) * d["bin_s"] == pytest.approx(core_s, rel=1e-3)
    said = hp(["report", ".", "cores", str(tmp_path / "cores.png")], real)
    assert "groups 2" in said and png_size(tmp_path / "cores.png") == (1300, 550)


def test_throughput_of_a_real_run(real: Path, tmp_path: Path) -> None:
    d = json.loads(hp(["report", ".", "throughput", "--json"], real))
    assert {j["name"]: j["done"][-1] for j in d["jobs"]} == {"short": 120, "wide": 20}
    short = next(j for j in d["jobs"] if j["name"] == "short")
    first_wide = next(i for i, v in enumerate(next(j for j in d["jobs"] if j["name"] == "wide")["done"]) if v)
    assert short["done"][first_wide] == 120  # wide ran after short: its dependency
    hp(["report", ".", "throughput", str(tmp_path / "t.svg")], real)
    assert (tmp_path / "t.svg").read_bytes()[:5] == b"<?xml"


def test_gantt_of_a_real_run_bars_or_density(real: Path, tmp_path: Path) -> None:
    assert "bars" in hp(["report", ".", "gantt", str(tmp_path / "g.png")], real)  # 80 cores: bars
    said = hp(["report", ".", "gantt", str(tmp_path / "d.png"), "--view", "density"], real)
    assert "view density" in said and "rows 40" in said  # 40 nodes: a row each
    d = json.loads(hp(["report", ".", "gantt", "--view", "density", "--json"], real))
    assert d["by"] == "node" and [b["name"] for b in d["partitions"]] == ["p1", "p2"]
    assert all(0.0 <= v <= 1.0 for row in d["grid"] for v in row)


# ---- 100,000 tasks on 1,000 nodes ----

N_TASKS, N_NODES, CORES = 100_000, 1000, 4


def synthesize(run: Path) -> Dict[str, Any]:
    """Four jobs on 1,000 nodes of 4 cores in 4 partitions, each core kept busy by a queue of
    tasks of random lengths; returns what was written (for the checks)."""
    rnd = random.Random(15)
    run.mkdir(parents=True)
    t0 = 1_800_000_000.0
    nodes = [f"node{i:04d}" for i in range(N_NODES)]
    jobs = [("prepare", 4_000), ("simulate", 60_000), ("analyse", 20_000), ("reduce", 16_000)]
    lines = [records.frame("H", json.dumps({"version": records.VERSION})),
             records.json_record({"t": "submit", "time": t0, "values": {}, "jobs": [
                 {"name": j, "iteration": {"stop": n}, "execution": {"exec": "x"}} for j, n in jobs]})]
    free = [t0 + rnd.uniform(0.5, 3.0) for _ in range(N_NODES * CORES)]  # when each core is next free
    core_s = 0.0
    k = 0
    for job, n in jobs:
        for it in range(n):
            core = k % len(free)
            k += 1
            start = free[core]
            end = start + rnd.uniform(5, 60) * (0.3 if job == "prepare" else 1.0)
            free[core] = end + rnd.uniform(0.0, 0.5)
            core_s += end - start
            alloc = f"{nodes[core // CORES]}[{core % CORES}]"
            lines.append(records.finished_record(job, it, "SUCCEED" if it % 997 else "FAILED", 0 if it % 997 else 1,
                                                 start, end, alloc, "/wd", None))
    (run / "journal").write_bytes(b"".join(lines))
    finished = max(free) + 1
    (run / "final_status").write_text(json.dumps({
        "started": t0, "finished": finished, "total_jobs": 4, "jobs": {"FAILED": 4},
        "resources": {"nodes": [{"name": x, "cores": list(range(CORES))} for x in nodes],
                      "total_cores": N_NODES * CORES},
        "partitions": {f"p{i + 1}": nodes[i * 250:(i + 1) * 250] for i in range(4)}}))
    return {"core_s": core_s, "span": finished - t0}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("big") / "run"
    (run.parent / "written.json").write_text(json.dumps(synthesize(run)))
    return run


def test_a_gantt_of_100000_tasks_on_1000_nodes_is_a_density_view(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "gantt.png"
    said = hp(["report", str(big), "gantt", str(out)], tmp_path)
    assert "view density" in said and "rows 1000" in said and "tasks 100000" in said
    w, h = png_size(out)
    assert (w, h) == (1400, 1150)  # a fixed, readable size: not a 34-inch barcode


def test_cores_and_throughput_of_100000_tasks(big: Path, tmp_path: Path) -> None:
    d = json.loads(hp(["report", str(big), "cores", "--json"], tmp_path))
    assert [g["name"] for g in d["groups"]] == ["p1", "p2", "p3", "p4"]
    assert all(g["cores"] == 1000 for g in d["groups"]) and d["tasks"] == N_TASKS
    assert len(d["times"]) <= 600 and max(d["total_busy"]) <= N_NODES * CORES + 1e-6
    written = json.loads((big.parent / "written.json").read_text())
    assert d["busy_core_s"] == pytest.approx(written["core_s"], rel=1e-6)
    assert d["span_s"] == pytest.approx(written["span"])
    t = json.loads(hp(["report", str(big), "throughput", "--json"], tmp_path))
    assert {j["name"]: j["done"][-1] for j in t["jobs"]} == {"simulate": 60_000, "analyse": 20_000,
                                                             "reduce": 16_000, "prepare": 4_000}
    for kind in ("cores", "throughput"):
        hp(["report", str(big), kind, str(tmp_path / f"{kind}.png")], tmp_path)
        assert png_size(tmp_path / f"{kind}.png")[0] == 1300
