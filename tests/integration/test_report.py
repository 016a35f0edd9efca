"""``hpilot report`` / ``hpilot processes`` on real run directories, and on bad ones.

One real run (module fixture) with ``--enable-rt-stats --enable-proc-stats`` on two
virtual nodes feeds every command; each test checks figures against what the run
really did (task counts, the wrapper's times, the cores), not just that something
was printed.  Bad run directories are made by cutting a real one.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from hpilot.governor.reports import plots
from hpilot.governor.reports.rundata import load

from tests.conftest import latest_run, run_hpilot, submit, write_requests

pytestmark = pytest.mark.integration

HAVE_MPL = True
try:
    import matplotlib  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_MPL = False
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib not installed (pip install 'hpilot[report]')")


def hp(args: List[str], cwd: Path, expect: int = 0, env: Dict[str, str] | None = None
       ) -> subprocess.CompletedProcess:
    proc = run_hpilot(args, cwd, timeout=60, env=env)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == expect, f"exit {proc.returncode}\n{out}"
    return proc


def report_json(cwd: Path, run: Path, *cmd: str) -> Dict[str, Any]:
    return json.loads(hp(["report", str(run), *cmd, "--json"], cwd).stdout)


JOBS = [
    {"name": "many", "iteration": {"stop": 40}, "execution": {"exec": "/bin/true"}},
    {"name": "pairs", "iteration": {"stop": 4}, "execution": {"exec": "/bin/sleep", "args": ["0.4"]},
     "resources": {"numCores": {"exact": 2}}},
    {"name": "single", "execution": {"exec": "/bin/sh", "args": ["-c", "sleep 1.5; true"]}},
    {"name": "broken", "execution": {"exec": "/bin/sh", "args": ["-c", "exit 3"]}},
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("reportrun")
    write_requests(wd / "jobs.json", submit(*JOBS))
    hp(["run", "jobs.json", "--nodes", "n1:2,n2:2", "--enable-rt-stats", "--enable-proc-stats",
        "--proc-stats-interval", "0.05", "--report-format", "json"], wd, expect=1)
    return wd


def test_run_dir_has_the_stats_files(real_run: Path) -> None:
    run = latest_run(real_run)
    wrapped = [json.loads(x) for p in (run / "rtstats").glob("wrapper-*.jsonl") for x in p.read_text().splitlines()]
    launched = [json.loads(x) for p in (run / "rtstats").glob("launch-*.jsonl") for x in p.read_text().splitlines()]
    assert len(wrapped) == len(launched) == 46
    assert len({r["task"] for r in wrapped}) == 46
    assert list((run / "procstats").glob("procs-*.jsonl"))


def test_stats(real_run: Path) -> None:
    d = report_json(real_run, latest_run(real_run), "stats")
    fs = json.loads((latest_run(real_run) / "final_status").read_text())
    assert d["total_jobs"] == 4 and d["failed_jobs"] == 1
    assert d["total_tasks"] == 46 and d["failed_tasks"] == 1
    assert d["total_cores"] == 4 and d["total_nodes"] == 2
    assert d["service_runtime_s"] == pytest.approx(fs["finished"] - fs["started"], abs=1e-3)
    # how long they are is for python -m bench (W0); here: parts of the run, not more
    assert 0 <= d["init_overhead_s"] <= d["service_runtime_s"] and 0 <= d["finish_overhead_s"] <= d["service_runtime_s"]
    assert d["total_overhead_s"] == pytest.approx(d["init_overhead_s"] + d["finish_overhead_s"], abs=2e-3)
    assert d["overhead_core_hours"] == pytest.approx(d["total_overhead_s"] * 4 / 3600, abs=1e-4)
    text = hp(["report", str(real_run), "stats"], real_run).stdout  # a working directory: its newest run
    assert "total jobs: 4" in text and "overhead ratio pct" in text


def test_launch_stats_match_the_records(real_run: Path) -> None:
    d = report_json(real_run, latest_run(real_run), "launch-stats")
    assert d["tasks"] == 46 and d["tasks_without_wrapper_record"] == 0
    # the wrapper starts after the spawn and the launcher sees the exit after the stop; how much
    # later is measured by python -m bench wrapper (median start overhead)
    assert d["start_overhead_s"]["median"] > 0
    assert d["finish_overhead_s"]["median"] >= 0
    run = load(str(latest_run(real_run)))
    real = [t.stop - t.start for t in run.tasks if t.stop is not None and t.start is not None]
    assert d["average_real_run_time_s"] == pytest.approx(sum(real) / len(real), abs=1e-5)


def test_rusage_and_details(real_run: Path) -> None:
    d = report_json(real_run, latest_run(real_run), "rusage", "--details")
    assert d["used_cores"] == 4 and d["total_cores"] == 4
    assert set(d["nodes"]) == {"n1", "n2"} and all(len(v) == 2 for v in d["nodes"].values())
    pct = [c["utilization_pct"] for v in d["nodes"].values() for c in v]
    assert d["average_core_utilization_pct"] == pytest.approx(sum(pct) / 4, abs=0.02)
    # pairs: 4 x 0.4 s on 2 cores, single 0.5 s: at least 3.7 core-seconds busy
    busy = sum(d["service_runtime_s"] - c["unused_s"] for v in d["nodes"].values() for c in v)
    assert busy >= 3.7
    assert d["cpu_user_s"] >= 0 and d["max_rss_kb"] > 0
    text = hp(["report", str(real_run), "rusage", "--details"], real_run).stdout
    assert "n1" in text and "unused" in text


def test_efficiency(real_run: Path) -> None:
    d = report_json(real_run, latest_run(real_run), "efficiency")
    assert d["used_cores"] == 4 and 0 < d["average_core_efficiency_pct"] <= 100


def test_jobs_and_text_listings(real_run: Path) -> None:
    jobs = {j["name"]: j for j in report_json(real_run, latest_run(real_run), "jobs")["jobs"]}
    assert set(jobs) == {"many", "pairs", "single", "broken"}
    assert jobs["broken"]["state"] == "FAILED" and jobs["broken"]["exit_code"] == 3
    assert jobs["many"]["iterations"]["total"] == 40
    tasks = report_json(real_run, latest_run(real_run), "text")["tasks"]
    assert len(tasks) == 46 and {t["task"] for t in tasks} >= {"many:0", "pairs:3", "single"}
    pairs = [t for t in tasks if t["task"].startswith("pairs:")]
    assert all(t["cores"] == 2 and t["runtime_s"] >= 0.39 for t in pairs)
    text = hp(["report", str(real_run), "text"], real_run).stdout
    assert len(text.splitlines()) == 47
    assert "SUCCEED" in hp(["report", "jobs", str(real_run)], real_run).stdout  # QCG's order works too


def _png_size(path: Path) -> tuple:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _assert_png_inches(path: Path, inches: Tuple[float, float]) -> Tuple[int, int]:
    """The PNG is ``inches`` at plots.DPI.  Matplotlib up to 3.9 truncates a size in pixels,
    later ones round it (2.3 in at 100 dpi: 229 or 230 px), so the pixel may differ by one."""
    px = _png_size(path)
    want = [x * plots.DPI for x in inches]
    assert all(abs(p - x) < 1 for p, x in zip(px, want)), f"{path.name}: {px} px, expected {want}"
    return px


@needs_mpl
def test_gantt_png_svg_pdf(real_run: Path, tmp_path: Path) -> None:
    run = latest_run(real_run)
    for ext, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"g{ext}"
        hp(["report", str(run), "gantt", str(out)], real_run)
        assert out.stat().st_size > 1000 and out.read_bytes()[:5].startswith(magic)
    data = report_json(real_run, run, "gantt")
    assert data["rows"] == ["n1:0", "n1:1", "n2:0", "n2:1"]
    assert len({b["task"] for b in data["bars"]}) == 46
    per_row: Dict[int, int] = {}
    for b in data["bars"]:
        per_row[b["row"]] = per_row.get(b["row"], 0) + 1
    w, h = plots.figure_size(4, max(per_row.values()), legend=True)
    _assert_png_inches(tmp_path / "g.png", (w, h))
    # no core runs two tasks at once
    for r in range(4):
        spans = sorted((b["start"], b["end"]) for b in data["bars"] if b["row"] <= r < b["row"] + b["rows"])
        assert all(a[1] <= b[0] + 0.02 for a, b in zip(spans, spans[1:]))


@needs_mpl
def test_gantt_gaps(real_run: Path, tmp_path: Path) -> None:
    run = latest_run(real_run)
    out = tmp_path / "gaps.png"
    hp(["report", str(run), "gantt-gaps", str(out)], real_run)
    assert out.stat().st_size > 1000
    d = report_json(real_run, run, "gantt-gaps")
    ru = report_json(real_run, run, "rusage", "--details")
    unused = sum(c["unused_s"] for v in ru["nodes"].values() for c in v)
    assert d["idle_core_s"] == pytest.approx(unused, abs=0.01)


@needs_mpl
def test_big_gantt_is_sized_by_content(tmp_path: Path) -> None:
    """2000 tasks on 40 nodes x 24 cores (a synthetic run directory): a taller image.
    How long it takes is measured by ``python -m bench`` (bench/wrapper.py, gantt_seconds)."""
    run = tmp_path / "big"
    (run / "rtstats").mkdir(parents=True)
    t0 = 1_700_000_000.0
    nodes = [{"name": f"node{i:02d}", "cores": list(range(24))} for i in range(40)]
    (run / "final_status").write_text(json.dumps({"started": t0, "finished": t0 + 200, "resources": {
        "nodes": nodes, "total_cores": 960}, "total_jobs": 2, "jobs": {"SUCCEED": 2}}))
    launch, wrap = [], []
    for i in range(2000):
        node = nodes[i % 40]["name"]
        slot = (i // 40) % 24
        b = t0 + 1 + (i // 960) * 90 + slot * 0.01
        task = f"{'a' if i % 2 else 'b'}:{i}"
        launch.append({"v": 1, "task": task, "nodes": node, "per_node": "1", "cpus": None, "ncores": 1,
                       "pid": 1000 + i, "spawn": b, "spawn_mono": b - t0, "end": b + 80, "end_mono": b + 80 - t0,
                       "exit": 0, "reason": None})
        wrap.append({"v": 1, "task": task, "host": node, "start": b + 0.001, "stop": b + 79.9,
                     "start_mono": b - t0 + 0.001, "stop_mono": b - t0 + 79.9, "exit": 0, "signal": 0})
    (run / "rtstats" / "launch-x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in launch))
    (run / "rtstats" / "wrapper-x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in wrap))
    out = tmp_path / "big.png"
    hp(["report", str(run), "gantt", str(out), "--view", "bars"], tmp_path)
    _, h = _assert_png_inches(out, plots.figure_size(960, 3, legend=True))
    assert h > 2000  # 960 rows get room
    d = report_json(tmp_path, run, "rusage")
    assert d["used_cores"] == 960
    # past 300 cores the default is the density view: one row per node, a fixed readable size
    said = hp(["report", str(run), "gantt", str(tmp_path / "dense.png")], tmp_path).stdout
    assert "view density" in said and "rows 40" in said
    assert _png_size(tmp_path / "dense.png")[1] < h


def test_processes_tree_and_apps(real_run: Path) -> None:
    run = latest_run(real_run)
    tree = json.loads(hp(["processes", str(run), "tree", "single", "--json"], real_run).stdout)
    (task,) = tree["tasks"]
    root = task["tree"][0]
    assert root["name"].startswith("hpilot-wrapper")
    sh = root["children"][0]
    assert sh["name"] == "sh" and sh["children"][0]["name"] == "sleep"
    text = hp(["processes", str(run), "tree", "single"], real_run).stdout
    assert "job single" in text and "sleep" in text
    # 'single' (1.5 s) and not 'pairs' (0.4 s): on a loaded machine a 0.4 s task may be sampled only
    # before its exec (named bash) or only as it exits (a zombie's memory reads 0)
    apps = json.loads(hp(["processes", str(run), "apps", "single", "--json"], real_run).stdout)
    assert apps["found"] == 1 and [p["name"] for p in apps["processes"]] == ["sleep"], apps["processes"]
    assert all(p["cpu_affinity"] and p["peak_rss"] > 0 for p in apps["processes"]), apps["processes"]
    text = hp(["processes", str(run), "apps", "pairs:0"], real_run).stdout
    assert "target processes" in text and "cpu affinity" in text
    bad = hp(["processes", str(run), "tree", "nosuchjob"], real_run, expect=2)
    assert "no process samples for 'nosuchjob'" in bad.stderr and "pairs" in bad.stderr


# ---- bad run directories ----


def copy_run(real_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(latest_run(real_run), dst)
    return dst


def test_missing_and_not_a_run_dir(tmp_path: Path) -> None:
    p = hp(["report", str(tmp_path / "nope"), "stats"], tmp_path, expect=2)
    assert "no such directory" in p.stderr
    p = hp(["report", str(tmp_path), "stats"], tmp_path, expect=2)
    assert "not an hpilot run directory" in p.stderr
    (tmp_path / "f").write_text("")
    assert "not a directory" in hp(["report", str(tmp_path / "f"), "stats"], tmp_path, expect=2).stderr
    (tmp_path / "q" / ".qcgpjm-service-x").mkdir(parents=True)
    assert "QCG-PilotJob" in hp(["report", str(tmp_path / "q"), "stats"], tmp_path, expect=2).stderr


def test_partial_run_killed_mid_way(real_run: Path, tmp_path: Path) -> None:
    run = copy_run(real_run, tmp_path)
    (run / "final_status").unlink()
    rep = run / "jobs.report"
    rep.write_text(rep.read_text()[:-40])  # last line cut
    for name in ("wrapper", "launch"):
        (f,) = run.glob(f"rtstats/{name}-*.jsonl")
        lines = f.read_text().splitlines()
        f.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:30])  # two records lost, one cut
    p = hp(["report", str(run), "stats"], tmp_path)
    assert "final_status: missing" in p.stderr and "cut short" in p.stderr
    assert "total jobs: 3" in p.stdout and "service started: -" not in p.stdout
    ls = json.loads(hp(["report", str(run), "launch-stats", "--json"], tmp_path).stdout)
    assert ls["tasks"] == 43
    hp(["report", str(run), "rusage"], tmp_path)
    hp(["report", str(run), "efficiency"], tmp_path)


def test_run_without_wrapper_records(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", submit(*JOBS))
    hp(["run", "jobs.json", "--nodes", "2"], wd, expect=1)  # text jobs.report, no rt-stats
    p = hp(["report", str(wd), "launch-stats"], wd, expect=2)
    assert "--enable-rt-stats" in p.stderr and "Still available" in p.stderr and "Traceback" not in p.stderr
    p = hp(["report", str(wd), "stats"], wd)
    assert "no wrapper records" in p.stderr and "total jobs: 4" in p.stdout and "failed jobs: 1" in p.stdout
    assert "from the journal" in p.stderr
    jobs = json.loads(hp(["report", str(wd), "jobs", "--json"], wd).stdout)["jobs"]
    assert {j["name"]: j["state"] for j in jobs}["broken"] == "FAILED"  # parsed from the text report
    listing = json.loads(hp(["report", str(wd), "text", "--json"], wd).stdout)
    assert listing["source"] == "journal"  # every task, iterations too: the launcher's times
    assert {t["task"] for t in listing["tasks"]} == {"single", "broken", *(f"many:{i}" for i in range(40)),
                                                     *(f"pairs:{i}" for i in range(4))}
    assert {t["task"]: t["exit_code"] for t in listing["tasks"]}["broken"] == 3
    p = hp(["processes", str(wd), "tree", "single"], wd, expect=2)
    assert "--enable-proc-stats" in p.stderr


def test_run_without_wrapper_records_or_journal(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", submit(*JOBS))
    hp(["run", "jobs.json", "--nodes", "2", "--no-journal"], wd, expect=1)
    tasks = json.loads(hp(["report", str(wd), "text", "--json"], wd).stdout)["tasks"]
    assert {t["task"] for t in tasks} == {"single", "broken"}  # only non-iterative jobs have allocations


def test_older_version_run_dir(real_run: Path, tmp_path: Path) -> None:
    run = copy_run(real_run, tmp_path)
    shutil.rmtree(run / "rtstats")
    shutil.rmtree(run / "procstats")
    fs = json.loads((run / "final_status").read_text())
    del fs["resources"]
    (run / "final_status").write_text(json.dumps(fs))
    p = hp(["report", str(run), "stats"], tmp_path)
    assert "no resources (older hpilot?)" in p.stderr
    assert "total jobs: 4" in p.stdout
    p = hp(["report", str(run), "launch-stats"], tmp_path, expect=2)
    assert "needs the wrapper's and the launcher's records" in p.stderr


def test_gantt_bad_arguments(real_run: Path, tmp_path: Path) -> None:
    run = latest_run(real_run)
    assert "unknown image format" in hp(["report", str(run), "gantt", str(tmp_path / "x.txt")],
                                        tmp_path, expect=2).stderr
    assert "give the output file" in hp(["report", str(run), "gantt"], tmp_path, expect=2).stderr
    assert "does not exist" in hp(["report", str(run), "gantt", str(tmp_path / "no" / "x.png")],
                                  tmp_path, expect=2).stderr


def test_without_matplotlib_says_how_to_get_it(real_run: Path, tmp_path: Path) -> None:
    block = tmp_path / "block"
    (block / "matplotlib").mkdir(parents=True)
    (block / "matplotlib" / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")])}
    p = hp(["report", str(latest_run(real_run)), "gantt", str(tmp_path / "g.png")], tmp_path, expect=2, env=env)
    assert "pip install 'hpilot[report]'" in p.stderr
    assert not (tmp_path / "g.png").exists()
    data = json.loads(hp(["report", str(latest_run(real_run)), "gantt", "--json"], tmp_path, env=env).stdout)
    assert len(data["bars"]) >= 46  # the data needs no matplotlib


def test_bad_wrapper_path_is_bad_input(tmp_path: Path) -> None:
    write_requests(tmp_path / "jobs.json", submit({"name": "a", "execution": {"exec": "/bin/true"}}))
    p = hp(["run", "jobs.json", "--enable-rt-stats", "--wrapper-rt-stats", str(tmp_path / "nope")], tmp_path,
           expect=2)
    assert "--wrapper-rt-stats" in p.stderr and "no such file" in p.stderr
