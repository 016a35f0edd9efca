"""docs/benchmarks.md is rendered from results alone (bench/doc.py): no benchmark runs here.

A small synthetic results structure, shaped like ``python -m bench all``'s JSON, must come
out with every figure in it, a missed target marked NO with its reason, skipped Slurm
sections saying so, and a quick run announcing itself.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List

import pytest

from bench import doc, scale
from bench.targets import TARGETS, evaluate

pytestmark = pytest.mark.timeout(60)


def _row(name: str, wall: float, tasks: int = 0, **extra: Any) -> Dict[str, Any]:
    r = {"workload": name, "description": f"{name} desc", "tasks": tasks, "wall_s": wall,
         "tasks_per_s": round(tasks / wall, 1) if tasks else None, "peak_mb": 31.0, "makespan_s": None,
         "exit_codes": [1] if name == "M1" else [0], "runs": [wall]}
    r.update(extra)
    return r


def _profile(fn: str) -> Dict[str, Any]:
    return {"total_s": 1.2345, "top": [{"function": fn, "own_s": 0.6789, "share": 0.55, "calls": 2000}]}


def results(quick: bool = False) -> Dict[str, Any]:
    main: List[Dict[str, Any]] = [
        _row("W0", 0.1931), _row("W1", 1.3441, 2000, ratio=1.56), _row("W2", 1.4672, 2000, ratio=1.70),
        _row("W4", 4.2093, 64, makespan_s=4.019), _row("M1", 1.3761, peak_mb=29.0),
        _row("API-lat", 0.0012), _row("API-life", 0.2004), _row("API-W1", 1.4301, 2000, api_vs_file=1.06),
        _row("J-W1", 1.3142, 2000, journal_ratio=1.05, journal_off_s=1.247),
        _row("J-replay", 3.0941),  # missed: target < 3 s
        _row("G-1", 3.541, 100_000), _row("G-2", 4.59, 100_000), _row("G-4", 5.192, 100_000),
        _row("G-8", 6.921, 100_000),  # lower than G-4: the partitions target is missed
        _row("G-1M", 63.535, 1_000_000, peak_mb=309.0), _row("G-DAG", 2.531, 10_000),
        _row("O-W1", 1.4121, 2000, discard_s=1.3511, stream_ratio=1.045, cpu_ratio=1.012, complete_runs=3,
             stream_runs=3),
        _row("P-gantt", 2.7182, 100_000, cpu_s=2.5173), _row("P-cores", 2.1029, 100_000, cpu_s=1.9841),
        _row("P-throughput", 5.3107, 100_000, cpu_s=2.0113),  # missed: target < 5 s
    ]
    scale_rows = [
        {"nodes": n, "shape": shape, "workload": w, "cores": n * 128, "partitions": n // 16 if shape == "governor"
         else 1, "tasks": n * 1024, "gov_us_per_task": g, "part_us_per_task": p, "messages_per_task": m,
         "peak_rss_mb": 100.0, "makespan_s": span, "utilisation": 0.93, "efficiency_vs_ideal": 0.93,
         "longest_task_s": 2400.0 if w == "lognormal" else 1.1}
        for w, n, shape, g, p, m, span in (
            ("1s", 16, "governor", 2.81, 21.5, 0.03, 8.56), ("1s", 16, "flat", 2.64, 19.0, 0.004, 8.51),
            ("1s", 1024, "governor", 1.73, 25.1, 0.011, 8.61), ("1s", 1024, "flat", 1.62, 24.0, 0.001, 8.57),
            ("lognormal", 1024, "governor", 14.9, 30.2, 1.6, 2115.0),
            ("lognormal", 1024, "flat", 12.2, 31.0, 0.9, 2115.0))]
    saturation = [{"nodes": 16, "partitions": 1, "tasks": 6144, "gov_us_per_task": 1.57, "tasks_per_s": 635001},
                  {"nodes": 1024, "partitions": 64, "tasks": 393216, "gov_us_per_task": 1.91, "tasks_per_s": 523560}]
    return {
        "quick": quick, "repeat": 3, "command": "python -m bench all --write docs/benchmarks.md",
        "duration_s": 321.0, "json_path": "docs/bench-results.json",
        "machine": {"platform": "Linux-6.18-x86_64", "cpus": 2, "python": "3.11.7",
                    "date_utc": "2026-11-21 07:36 UTC", "loadavg": [0.42, 0.33, 0.21]},
        "floor": {"tasks": 2000, "cores": 2, "xargs_s": 0.863, "c_s": 0.609},
        "qcg": None, "main": main, "main_errors": {},
        "wrapper": {"tasks": 2000, "runs": 10, "plain_median_s": 1.623, "rtstats_median_s": 2.31, "ratio": 1.423,
                    "median_start_overhead_ms": 0.519, "p95_start_overhead_ms": 1.424, "complete_runs": 10},
        "gantt": {"png_s": 0.81, "pdf_s": 1.13},
        "agents": {"skipped": "no Slurm controller answers"},
        "slurm_governor": {"skipped": "no Slurm controller answers"},
        "scale": {"rows": scale_rows, "saturation": saturation, "comparison": scale.compare(
            {"rows": scale_rows}), "wall_s": 504.0, "json": "docs/scale.json", "plot_rel": "scale.png"},
        "compare": {"skipped": "no --before PYTHON given (an earlier hpilot to compare with)"},
        "profile": {"spawn": {**_profile("{built-in method posix.posix_spawn}"), "tasks": 2000,
                              "posix_spawn_share": 0.57, "own_us_per_task": 151.0},
                    "scheduler": {**_profile("partition/core.py:201(_launch)"), "nodes": 16, "tasks": 16384,
                                  "partitions": 1, "us_per_task": 81.03},
                    "routing": {**_profile("governor/core.py:388(_from_partition)"), "nodes": 16, "tasks": 16384,
                                "partitions": 1, "us_per_task": 63.25},
                    "journal": {**_profile("governor/journal.py:181(_parse_finished)"), "records": 20_000,
                                "write_s": 0.12, "replay_s": 0.18, "us_per_record": 15.0},
                    "networkx_import_s": 0.114},
    }


def _target_line(text: str, what: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| #") and f"| {what} |" in line)


def test_every_figure_appears() -> None:
    text = doc.render(results())
    figures = [
        "0.863", "2317/s", "0.609", "3284/s", "0.42, 0.33, 0.21", "Linux-6.18-x86_64", "3.11.7",
        "2026-11-21 07:36 UTC",  # machine and floor
        "0.193", "1.344", "1488", "1.56", "1.467", "4.209", "4.019", "309", "3.094", "63.535",  # main table
        "1.623", "2.310", "1.42", "0.519", "1.424", "10/10", "0.81 s", "1.13 s",  # wrapper, gantt
        "2.81", "1.73", "+0.47%", "523,560", "1.91", "0.25 s or longer", "1.31 million", "40 min",  # scale
        "57%", "151 µs", "114 ms", "81.0", "63.2", "0.679", "55.0%", "_parse_finished",  # profiles
    ]
    missing = [f for f in figures if f not in text]
    assert not missing, missing


def test_missed_target_says_no_and_why() -> None:
    text = doc.render(results())
    replay = _target_line(text, "resume replay (1,000,000 iterations, 999,000 finished)")
    assert "| 3.094 s | NO |" in replay and "Python" in replay
    parts = _target_line(text, "adding partitions does not lower it (1, 2, 4, 8)")
    assert "| NO |" in parts and "9 processes share 2 CPUs" in parts
    w1 = _target_line(text, "W1 throughput")
    assert "| yes |" in w1 and w1.rstrip().endswith("|  |")  # a met target shows no reason


def test_skipped_slurm_sections_say_so() -> None:
    text = doc.render(results())
    assert text.count(doc.SLURM_SKIPPED) == 2
    for what in ("2000 /bin/true over 4 agents vs local", "agent start, 4 nodes",
                 "Slurm W1, --slurm-partition-nodes 2 vs one manager"):
        line = _target_line(text, what)
        assert "| not measured | - | skipped: no Slurm controller answers |" in line, line


def test_slurm_results_are_rendered_when_present() -> None:
    res = results()
    res["agents"] = {"tasks": 2000, "cpus": 2, "local_s": 1.16, "local_tasks_per_s": 1724, "agents_s": 1.756,
                     "agents_tasks_per_s": 1139, "ratio": 0.66, "agent_start_s": 0.23}
    res["slurm_governor"] = {"tasks": 2000, "partition_nodes": 2, "one_s": 1.59, "one_tasks_per_s": 1258,
                             "governor_s": 2.04, "governor_tasks_per_s": 980, "ratio": 0.779,
                             "all_succeeded": True}
    text = doc.render(res)
    assert doc.SLURM_SKIPPED not in text
    for figure in ("1.160", "1724", "1.756", "1139", "0.66", "0.23 s", "1.590", "1258", "2.040", "980", "0.78"):
        assert figure in text, figure
    assert "| NO |" in _target_line(text, "Slurm W1, --slurm-partition-nodes 2 vs one manager")


def test_quick_banner_only_for_quick_runs() -> None:
    assert "Quick run" not in doc.render(results())
    quick = doc.render(results(quick=True))
    assert "not the published figures" in quick.split("## Machine")[0]


def test_failed_suite_is_reported_and_not_measured() -> None:
    res = copy.deepcopy(results())
    res["wrapper"] = {"error": "RuntimeError: boom"}
    text = doc.render(res)
    assert "Could not run" in text and "boom" in text
    line = _target_line(text, "W1 with --enable-rt-stats vs without")
    assert "| not measured | - | could not run: RuntimeError: boom |" in line, line


def test_every_issue_has_targets() -> None:
    assert {t.issue for t in TARGETS} == {2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16}
    rows = evaluate(results())
    assert all(r["reason"] for r in rows if r["met"] is False)
    assert all(r["reason"] is None for r in rows if r["met"] is True)
    assert all(r["reason"] for r in rows if r["met"] is None)  # not measured: the skip says why


def test_quick_run_shows_the_sizes_it_measured() -> None:
    res = results(quick=True)
    for r in res["main"]:
        if r["workload"] == "G-1M":
            r.update(description="100,000 dry-run iterations over 8 partitions", peak_mb=60.0)
    line = _target_line(doc.render(res), "1,000,000 iterations over 8 partitions")
    assert "60 MB (100,000 dry-run iterations over 8 partitions) | yes |" in line, line


def test_output_and_plot_targets() -> None:
    text = doc.render(results())
    streaming = _target_line(text, "W1 with every task writing a line: output streamed vs discarded")
    assert "1.04x (1.412 s vs 1.351 s; CPU 1.01x; every line read back in 3/3 runs) | yes |" in streaming, streaming
    plots = _target_line(text, "plots of 100,000 tasks on 1,000 nodes (gantt, cores, throughput)")
    assert "gantt 2.72 s (CPU 2.52 s), cores 2.10 s (CPU 1.98 s), throughput 5.31 s (CPU 2.01 s) | NO |" in plots
    res = copy.deepcopy(results())
    next(r for r in res["main"] if r["workload"] == "O-W1")["complete_runs"] = 2  # a lost line misses it
    assert "| NO |" in _target_line(doc.render(res), "W1 with every task writing a line: output streamed vs discarded")


def test_hierarchy_and_before_after_targets() -> None:
    res = copy.deepcopy(results())
    text = doc.render(res)
    assert "| yes |" in _target_line(text, "governor CPU per task, every partition reporting at once (simulation)")
    flat = _target_line(text, "makespan of 1 s tasks, governor against one flat partition (simulation)")
    assert "+0.47% (8.61 s vs 8.57 s, 1,024 nodes) | yes |" in flat, flat
    assert "Not measured: no --before PYTHON given" in text
    assert "| not measured |" in _target_line(text, "G-1M rate against before batches (same run, alternating)")
    res["compare"] = {"before": "/old/bin/python", "rounds": 3, "rows": [
        {"workload": "W1", "tasks": 2000, "before_s": 1.30, "after_s": 1.32, "ratio": 1.015, "speedup": 0.985,
         "before_per_s": 1538, "after_per_s": 1515},
        {"workload": "G-1M", "tasks": 1_000_000, "before_s": 60.0, "after_s": 15.0, "ratio": 0.25, "speedup": 4.0,
         "before_per_s": 16667, "after_per_s": 66667}]}
    text = doc.render(res)
    assert "| W1 | 2,000 | 1.300 s | 1.320 s | 1.015x | 1,538 | 1,515 |" in text
    assert "4.00x (66,667 vs 16,667/s) | yes |" in _target_line(text, "G-1M rate against before batches (same run, "
                                                               "alternating)")
    assert "| yes |" in _target_line(text, "W1, one path against before it (same run, alternating)")
