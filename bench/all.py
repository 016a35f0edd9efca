"""``python -m bench all``: every suite in one run, and docs/benchmarks.md written from it.

Runs the floor, the main table (W0-W4, M1, API, journal, governor; QCG-PilotJob's rows
with ``--qcg``), the wrapper suite, the Slurm suites (node agents; governor mode against
one manager) when the local cluster answers, the scale simulation and the profiles, then
writes the results as JSON and renders the document from exactly those results
(bench/doc.py).  A suite that cannot run is recorded with its reason; the document says
so and its targets are "not measured".

Exit status: 0 when everything ran (missed targets are in the table, not in the status),
1 when some suite failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from bench import doc
from bench.__main__ import FLOOR_TASKS, SUITES, floor_c, floor_xargs, machine_info, measure
from bench.workloads import WORKLOADS

CORES = 2  # the workloads use --nodes 2; the floor gets the same parallelism
QUICK_WRAPPER_RUNS = 1
FULL_WRAPPER_RUNS = 10


def parse(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench all", description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE.md", default=None,
                    help="the document to write (default docs/benchmarks.md; with --quick, a temp dir)")
    ap.add_argument("--json", metavar="FILE", default=None,
                    help="the results as JSON (default: bench-results.json next to the document)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per measurement, median reported (default 3; "
                    "1 with --quick)")
    ap.add_argument("--qcg", default=None, metavar="PATH", help="qcg-pm-service of an installed QCG-PilotJob")
    ap.add_argument("--from-json", metavar="FILE", default=None,
                    help="run nothing: write the document again from the results of an earlier run")
    ap.add_argument("--before", default=None, metavar="PYTHON",
                    help="a Python with an earlier hpilot installed: W1, API and G-1M of both, alternating, in "
                    "this run (bench/compare.py); without it that section says so")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one repeat, scale results in a temp dir: tests the benchmark, not hpilot")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def _outputs(args: argparse.Namespace, scratch: str) -> None:
    """Fill in --write and --json: docs/ for a full run, a scratch dir for a quick one."""
    if args.write is None:
        args.write = os.path.join(scratch, "benchmarks.md") if args.quick else os.path.join("docs", "benchmarks.md")
    if args.json is None:
        args.json = os.path.join(os.path.dirname(args.write) or ".", "bench-results.json")


def guarded(what: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Run one suite; a failure becomes {"error": ...} so that the others still run and the doc says so."""
    print(f"bench all: {what} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - any failure of a suite is reported, not fatal
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    print(f"bench all: {what} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


def qcg_info(path: Optional[str]) -> Optional[Dict[str, str]]:
    """The QCG-PilotJob version, asked of the Python next to its qcg-pm-service."""
    if not path:
        return None
    py = os.path.join(os.path.dirname(path), "python")
    code = "import importlib.metadata as m; print(m.version('qcg-pilotjob'))"
    try:
        out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=30)
        version = out.stdout.strip() if out.returncode == 0 else "(version unknown)"
    except OSError:
        version = "(version unknown)"
    return {"path": path, "version": version}


def run_main(args: argparse.Namespace, workdir: str, fx: float, hpilot: List[str]) -> Dict[str, Any]:
    """The main table, suite by suite, so that one failure loses only its own rows."""
    rows: List[Dict[str, Any]] = []
    errors: Dict[str, str] = {}
    for name in list(WORKLOADS) + list(SUITES):
        w1 = next((r["wall_s"] for r in rows if r["workload"] == "W1"), None)

        def one(n: str = name, w: Optional[float] = w1) -> Dict[str, Any]:
            return {"rows": measure([n], args.repeat, workdir, hpilot, fx, args.qcg, args.quick, w)}

        got = guarded(name, one)
        if "error" in got:
            errors[name] = got["error"]
        else:
            rows.extend(got["rows"])
    return {"main": rows, "main_errors": errors}


def run_slurm(repeat: int) -> Dict[str, Any]:
    """The agents and governor-mode suites, or the reason both are skipped."""
    from bench.agents import measure as agents
    from bench.agents import slurm_reason
    from bench.slurm_governor import measure as slurm_governor

    why = slurm_reason()
    if why:
        return {"agents": {"skipped": why}, "slurm_governor": {"skipped": why}}
    return {"agents": guarded("agents", lambda: agents(repeat)),
            "slurm_governor": guarded("slurm governor", lambda: slurm_governor(repeat))}


def run_scale(quick: bool, out_dir: str, doc_dir: str) -> Dict[str, Any]:
    """The simulation; its JSON and plot go next to the document (a scratch dir with --quick)."""
    from bench import scale

    sizes = scale.QUICK_SIZES if quick else scale.SIZES
    t0 = time.perf_counter()
    result = scale.run_sizes(sizes, echo=False)
    result["comparison"] = scale.compare(result)
    wall = time.perf_counter() - t0
    path = os.path.join(out_dir, "scale.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    plot: Optional[str] = os.path.join(out_dir, "scale.png")
    try:
        scale.plot(result, os.path.join(out_dir, "scale.png"))
    except ImportError:  # matplotlib is an extra: the table stands without the plot
        plot = None
    return {**result, "wall_s": round(wall, 1), "sizes": sizes, "json": path,
            "plot": plot, "plot_rel": os.path.relpath(plot, doc_dir) if plot else None}


def collect(args: argparse.Namespace, workdir: str, scale_dir: str) -> Dict[str, Any]:
    """Every suite, in the order of the document."""
    from bench import profile, wrapper

    hpilot = [sys.executable, "-m", "hpilot.governor"]
    res: Dict[str, Any] = {"quick": args.quick, "repeat": args.repeat, "machine": machine_info(),
                           "qcg": qcg_info(args.qcg)}
    fx = floor_xargs(CORES, args.repeat)
    res["floor"] = {"tasks": FLOOR_TASKS, "cores": CORES, "xargs_s": round(fx, 4),
                    "c_s": _round(floor_c(CORES, args.repeat, workdir))}
    res.update(run_main(args, workdir, fx, hpilot))
    runs = QUICK_WRAPPER_RUNS if args.quick else FULL_WRAPPER_RUNS
    res["wrapper"] = guarded("wrapper", lambda: wrapper.measure(runs, hpilot))
    res["gantt"] = guarded("gantt", lambda: wrapper.gantt_seconds(workdir, hpilot))
    res.update(run_slurm(args.repeat))
    doc_dir = os.path.dirname(os.path.abspath(args.write))
    res["scale"] = guarded("scale simulation", lambda: run_scale(args.quick, scale_dir, doc_dir))
    res["profile"] = guarded("profiles", lambda: profile.run(args.quick))
    res["compare"] = run_compare(args)
    return res


def run_compare(args: argparse.Namespace) -> Dict[str, Any]:
    """Before and after in the same run (--before): each round runs both installs, alternating."""
    if not args.before:
        return {"skipped": "no --before PYTHON given (an earlier hpilot to compare with)"}
    from bench import compare

    def go() -> Dict[str, Any]:
        rounds = 1 if args.quick else max(3, args.repeat)
        rows = compare.compare(args.before, sys.executable, rounds, ["W1", "API", "G-1M"],
                               g1m_iters=100_000 if args.quick else 1_000_000)
        return {"before": args.before, "rounds": rounds, "rows": rows}

    return guarded("before/after", go)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 4)


def failures(res: Dict[str, Any]) -> List[str]:
    """The suites that could not run (skips for a missing Slurm cluster are not failures)."""
    bad = [f"{k}: {v}" for k, v in res.get("main_errors", {}).items()]
    return bad + [f"{k}: {v['error']}" for k, v in res.items() if isinstance(v, dict) and "error" in v]


def rerender(args: argparse.Namespace) -> int:
    """--from-json: the document of an earlier run, e.g. after a change to the prose in bench/doc.py."""
    with open(args.from_json) as f:
        res = json.load(f)
    with open(args.write, "w") as f:
        f.write(doc.render(res))
    print(f"bench all: wrote {args.write} from {args.from_json}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    scratch = tempfile.mkdtemp(prefix="hpilot-bench-all-") if args.quick else ""
    _outputs(args, scratch)
    if args.from_json:
        return rerender(args)
    command = "python -m bench all " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-") as workdir:
        scale_dir = scratch if args.quick else (os.path.dirname(args.write) or ".")
        res = collect(args, workdir, scale_dir)
    res.update(command=command.strip(), duration_s=round(time.time() - t0, 1), json_path=args.json)
    from bench.targets import evaluate

    res["targets"] = evaluate(res)
    for path in (args.write, args.json):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    with open(args.write, "w") as f:
        f.write(doc.render(res))
    print(f"bench all: wrote {args.write} and {args.json} in {res['duration_s']:.0f} s"
          + (f"; scale results in {scale_dir}" if args.quick else ""), file=sys.stderr)
    bad = failures(res)
    for line in bad:
        print(f"bench all: could not run {line}", file=sys.stderr)
    return 1 if bad else 0
