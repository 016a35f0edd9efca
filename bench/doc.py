"""docs/benchmarks.md from the results of one ``python -m bench all`` run.

Every figure in the document is read from the results (see bench/all.py for their shape);
the prose here is static and cites no figures of its own, so the document cannot drift
from the run that wrote it.  A section whose suite was skipped or failed says so, and the
targets it would have measured say "not measured".
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from bench.targets import Results, evaluate, suite

DEMAND_CORES = 131_072  # issue #8's question: 0.1 s tasks on 1,024 nodes x 128 cores
DEMAND_TASK_S = 0.1
CORES_PER_NODE = 128
SLURM_SKIPPED = "skipped: no Slurm cluster (start it with bash tests/slurm/start.sh)"


def render(res: Results) -> str:
    """The whole document."""
    sections: List[Callable[[Results], str]] = [
        _header, _machine, _main, _wrapper, _agents, _governor_notes, _compare, _scale, _profile, _targets]
    return "\n\n".join(s(res).strip("\n") for s in sections) + "\n"


def _table(head: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _unavailable(res: Results, name: str, slurm: bool = False) -> Optional[str]:
    """The sentence for a section that did not run, or None when it did."""
    s = res.get(name)
    if not isinstance(s, dict):
        return "*Not run in this run.*"
    if "skipped" in s:
        return f"**{SLURM_SKIPPED}** ({s['skipped']})." if slurm else f"**Skipped:** {s['skipped']}."
    if "error" in s:
        return f"**Could not run:** `{s['error']}`"
    return None


def _header(res: Results) -> str:
    banner = ("> **Quick run (`--quick`)**: small sizes and a single repeat, for testing the benchmark "
              "itself. These are **not the published figures**; run the command without `--quick` for them.\n\n"
              if res.get("quick") else "")
    return f"""# Benchmarks

{banner}<!-- Written by `python -m bench all` (bench/all.py, bench/doc.py); do not edit by hand. -->

Reproduce the whole of this page (from the repository root, after `pip install ".[test]"`;
`bash tests/slurm/start.sh` first for the Slurm sections):

```sh
python -m bench all --write docs/benchmarks.md --repeat 3
python -m bench all --write docs/benchmarks.md --repeat 3 --qcg /path/to/venv/bin/qcg-pm-service
```

This page was written by:

```sh
{res.get("command", "python -m bench all")}
```

Every figure below comes from that one run, which took {res.get("duration_s", 0.0):.0f} s; the results are
also in `{res.get("json_path", "docs/bench-results.json")}`. Each workload is the median of
{res.get("repeat", 1)} run(s). These machines are shared and noisy, so compare the ratios rather
than the absolute times. The workloads are QCG-PilotJob request files (`bench/workloads.py`);
all of them use `--nodes 2` except W4, which uses `--nodes 16`."""


def _machine(res: Results) -> str:
    m, fl = res.get("machine", {}), res.get("floor", {})
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg", [])) or "unknown"
    c = (f"the C `posix_spawn` loop took {fl['c_s']:.3f} s ({fl['tasks'] / fl['c_s']:.0f}/s)."
         if fl.get("c_s") else "no C compiler was found, so there is no C loop.")
    return f"""## Machine and floor

Machine: {m.get("platform", "?")}, {m.get("cpus", "?")} CPUs, Python {m.get("python", "?")}, \
{m.get("date_utc", "?")}; load average at the start (1, 5, 15 min): {load}.

Floor: {fl.get("tasks", 0)} x `/bin/true` with `xargs -P {fl.get("cores", 2)}` took {fl.get("xargs_s", 0.0):.3f} s \
({fl.get("tasks", 0) / max(fl.get("xargs_s", 1.0), 1e-9):.0f}/s); {c}"""


def _main(res: Results) -> str:
    from bench.__main__ import render as render_rows

    q = res.get("qcg")
    qcg = (f"QCG-PilotJob {q.get('version', '(version unknown)')} (`{q['path']}`) ran the same request files; "
           "its rows are marked [QCG-PilotJob]. It skips M1, because its `cancelJob` is \"not supported\"."
           if q else "Run with `--qcg PATH` (the `qcg-pm-service` of a QCG-PilotJob installed in its own venv) "
           "to add its rows to the same table; this run had none.")
    rows = res.get("main") or []
    table = render_rows(rows) if rows else "*No rows: the main suites did not run.*"
    errors = res.get("main_errors") or {}
    failed = "".join(f"\n- **{k} could not run:** `{v}`" for k, v in errors.items())
    return f"""## All workloads (W0-W4, M1, API, journal, governor)

{qcg}

{table}{failed}

Notes on the columns:

- **Wall time** covers the whole command, including Python start-up, the
  imports and writing the reports.
- **x floor** is the wall time divided by the `xargs` floor.
- **Makespan** runs from the first task start to the last task end, taken from
  `jobs.report`.
- **Peak MB** is the maximum RSS of the hpilot process (`wait4`).
- The N rows (issue #13, bench/wire.py) run inside a private network namespace: `d0` is
  an address that exists only there, so "off loopback" (CURVE) never uses an address
  of the machine; `lost`, the flood's latencies and the hostile traffic sent are in
  `docs/bench-results.json`.
- E-W1 compares W1 with each launcher's guard (the default) and without it, alternating in
  one run (the guard is what kills a launcher's tasks when the launcher dies: README,
  "When the allocation ends"); E-stop is a SIGTERM with 1,000 tasks running, timed to the
  end of a run that `hpilot resume` can carry on (exit 75, checked).
- The API rows run the real `LocalManager` from the benchmark's process; J-W1
  compares W1 with and without the journal; J-replay is the real resume code over a
  journal written with hpilot's own writer.
- The G rows are governor mode with dry-run tasks (`--dry-run-tasks 0`: no process; a
  task "succeeds" as soon as its partition manager starts it), so they measure the
  control plane: the governor, routing by credit, the wire and the partition managers,
  local processes over `--nodes 8,8,8,8,8,8,8,8 --partition-nodes 8/N`.  G-1 to G-8 are
  compared with one another, so their runs alternate (1, 2, 4, 8, 1, 2, ...), at least
  five rounds whatever `--repeat` says: each row is the median of its runs."""


def _wrapper(res: Results) -> str:
    from bench.wrapper import table

    body = _unavailable(res, "wrapper") or _table(["measure", "value", "target", "met"],
                                                  [list(r) for r in table(res["wrapper"])])
    g = suite(res, "gantt")
    gantt = (f"`hpilot report RUN gantt` of 2000 tasks on 40 nodes x 24 cores (960 rows), on a synthetic run "
             f"directory, took {g['png_s']:.2f} s to a PNG and {g['pdf_s']:.2f} s to a PDF, including Python "
             "start-up. All bars go into one `PolyCollection`."
             if g and g.get("png_s") is not None and g.get("pdf_s") is not None
             else f"Gantt timing: {_unavailable(res, 'gantt') or 'a report command failed'}")
    return f"""## Wrapper overhead (`--enable-rt-stats`, issue #6)

W1 (1 job x 2000 iterations of `/bin/true`, `--nodes 2`) runs alternately without and with
`--enable-rt-stats`. The start overhead runs from the moment the launcher is about to spawn
to the moment the wrapper starts the task, both read on the node's monotonic clock, over all
tasks of the runs with rt-stats. The records are counted in each run's `rtstats/`.

{body}

Where the extra time goes:

- The wrapper is one more process per task: one more spawn and reap, which cannot go
  away as long as the task runs as the wrapper's child.
- The wrapper is linked statically when the compiler allows it, which saves the
  dynamic loader on every task.
- The wrapper marks every inherited descriptor above 2 close-on-exec with one
  `close_range` call, so the launcher skips its per-task scan of `/proc/self/fd`.
- The record pipe is not polled. A wrapper writes its record before it exits, so
  the launcher drains the pipe when it reaps exits, and a record costs no extra
  wake-up of the service loop.

{gantt}"""


def _agents(res: Results) -> str:
    a = _unavailable(res, "agents", slurm=True)
    if a is None:
        r = res["agents"]
        a = _table(["mode", "elapsed s", "tasks/s"], [
            [f"local ({r['cpus']} CPUs)", f"{r['local_s']:.3f}", f"{r['local_tasks_per_s']}"],
            ["4 agents (salloc -N 4 --ntasks-per-node=2)", f"{r['agents_s']:.3f}", f"{r['agents_tasks_per_s']}"],
        ]) + (f"\n\n- agents / local throughput: **{r['ratio']:.2f}** (target >= 0.60);\n"
              f"- agent start for 4 nodes (4 `srun --overlap` steps, to the last greeting): "
              f"**{r['agent_start_s']:.2f} s** (target < 2 s).")
    g = _unavailable(res, "slurm_governor", slurm=True)
    if g is None:
        r = res["slurm_governor"]
        met = "met" if r["ratio"] >= 1.0 and r["all_succeeded"] else "**not met**"
        g = _table(["mode", "elapsed s", "tasks/s"], [
            ["one manager (salloc -N 4 --ntasks-per-node=2)", f"{r['one_s']:.3f}", f"{r['one_tasks_per_s']}"],
            [f"`--slurm-partition-nodes {r['partition_nodes']}` (governor + 2 partition managers)",
             f"{r['governor_s']:.3f}", f"{r['governor_tasks_per_s']}"],
        ]) + (f"\n\nEvery iteration SUCCEED: {'yes' if r['all_succeeded'] else '**no**'}. Governor mode / one "
              f"manager throughput: **{r['ratio']:.2f}**; the target (issue #5: no lower than one manager) is {met}.")
    return f"""## Node agents on the local Slurm cluster (issue #4)

The same 2000 `/bin/true`, in local mode (`--resources local`, this machine's CPUs) and
inside `salloc -N 4 --ntasks-per-node=2` through one agent per node (the local cluster of
`tests/slurm/start.sh`: 4 nodes on this same machine). Throughput is 2000 / the service's own
elapsed time from `final_status`, agent start-up included (bench/agents.py).

{a}

Each task is one `Launch` frame (its whole environment, as JSON) out and `Started` +
`Exited` back. Sending the environment as a difference from one the agent already has
would be the next step.

### Governor mode on the same cluster (issue #5)

W1 (2000 `/bin/true`) inside `salloc -N 4 --ntasks-per-node=2`, alternately by one manager
and with `--slurm-partition-nodes 2` (a governor that starts two partition managers with
srun). Times are the service's own elapsed time from `final_status`, including starting the
agents and the partition managers (bench/slurm_governor.py).

{g}"""


def _governor_notes(res: Results) -> str:
    rows = [r for r in res.get("main", []) if str(r.get("workload", "")).startswith("G-")
            and str(r["workload"])[2:].isdigit()]
    phases = ""
    if rows:
        phases = "\n\n" + _table(["partitions", "iterations/s (wall)", "start-up to last registration s",
                                   "steady iterations/s", "governor CPU µs/task, whole run",
                                   "governor CPU µs/task, steady"], [
            [r["workload"][2:], f"{r['tasks_per_s']:.0f}",
             f"{r['register_s']:.2f}" if r.get("register_s") is not None else "-",
             f"{r['steady_per_s']:.0f}" if r.get("steady_per_s") else "-",
             f"{r['gov_cpu_us_per_task']:.2f}" if r.get("gov_cpu_us_per_task") is not None else "-",
             f"{r['gov_steady_cpu_us_per_task']:.2f}" if r.get("gov_steady_cpu_us_per_task") is not None
             else "-"] for r in rows] + [
            ["flat: one manager", f"{r['tasks_per_s']:.0f}", "-", "-",
             f"{r['gov_cpu_us_per_task']:.2f} (partition included)" if r.get("gov_cpu_us_per_task") is not None
             else "-", "-"] for r in res.get("main", []) if r.get("workload") == "G-flat"]) + """

The steady phase runs from "every partition registered" to the governor's "finishing"
(its service.log notes the governor's CPU time at both, and the iterations finished at the
first), and its CPU per task is per iteration finished in it; start-up runs from the first
partition manager's start to the last registration (its tasks started meanwhile count in
the steady rate, which runs from the first registration). The whole run's
governor CPU (its final_status) adds its own start-up (imports, starting each partition
manager, each registration), a fixed cost per run and per partition; the steady phase is
what each iteration costs it. All are medians over the runs. The flat row is the same
100,000 iterations through one manager, its partition in the same process: its CPU per
task is the governor's and the partition's together, on one CPU."""
    return f"""## Governor mode notes (issue #5)

- Routing is by credit: a partition may hold twice its cores, or what it finishes in
  0.3 s at its measured rate if that is more (longer than a busy partition's report
  period plus a round trip, so it does not run dry before each refill); a partition that
  ends its whole buffer before its rate is measured doubles it at once. Refills go in
  batches once half of that is free, and only then: a partition more than half full is
  not topped up when another reports (except at the end of a job, where every partition
  with room shares what is left). The governor's cost is per message, so this keeps the
  messages per task about the same with 1 or 8 partitions.
- A partition's reports travel as one frame of compact records, decoded with one
  `json.loads` at the governor: its progress (starts and plain successes) at most every
  0.1 s, an exception (a failure, a cancel, a drop, a node's change) at once, and
  everything at once when the partition has nothing queued and nothing to do. A partition
  used to send a frame whenever it was idle, which with real tasks meant about one frame
  per task end; the simulation's partitions follow the same rule.
- The governor keeps each iteration's run in columns (`governor/core/runs.py`: 48 bytes per
  iteration, plus one byte of state), not as an object per run.
- On this machine the governor and all N partition managers share the same 2 CPUs, so
  more partitions means more processes competing for them: each partition manager's
  start (a Python process, its imports, its registration) and its loop passes take CPU
  from the others. A machine with a core per partition manager is not measured here.{phases}{_real_rows(res)}"""


def _real_rows(res: Results) -> str:
    """G-REAL: real processes, where a partition is idle between its tasks' ends."""
    rows = [r for r in res.get("main", []) if str(r.get("workload", "")).startswith("G-REAL-")]
    if not rows:
        return ""
    return "\n\n" + _table(["partitions", "tasks/s (wall)", "governor CPU µs/task, steady"], [
        [r["workload"][len("G-REAL-"):], f"{r['tasks_per_s']:.0f}",
         f"{r['gov_steady_cpu_us_per_task']:.1f}" if r.get("gov_steady_cpu_us_per_task") is not None else "-"]
        for r in rows]) + """

G-REAL runs real processes (`sleep 0.2`) on the same 64 cores. Their partitions are idle
between their tasks' ends, so their frames are set by the report rule above, not by a
burst's pace: before that rule (a frame whenever the partition was idle) a partition sent
about a frame per task end. The governor's CPU per task here is per frame, not per iteration."""


def _compare(res: Results) -> str:
    head = """## Before and after, in the same run (issues #11, #16)

`--before PYTHON` names a Python with an earlier hpilot installed; each round runs every
workload once with it and once with this one, alternating which goes first
(bench/compare.py), so both meet the same load. Medians over the rounds."""
    c = res.get("compare")
    if not isinstance(c, dict) or "rows" not in c:
        why = (c or {}).get("skipped") or (c or {}).get("error") or "not run"
        return f"{head}\n\nNot measured: {why}."
    rows = [[r["workload"], f"{r['tasks']:,}", f"{r['before_s']:.3f} s", f"{r['after_s']:.3f} s",
             f"{r['ratio']:.3f}x", f"{r['before_per_s']:,}", f"{r['after_per_s']:,}"] for r in c["rows"]]
    return f"""{head} Before: `{c["before"]}`, {c["rounds"]} rounds.

{_table(["workload", "tasks", "before", "after", "after / before (time)", "before (tasks/s)",
         "after (tasks/s)"], rows)}"""


def scale_analysis(s: Dict[str, Any], floor: Dict[str, Any]) -> Dict[str, Any]:
    """What saturates first, at the largest size simulated: the governor (its saturation rate,
    every partition answering at once) or the partition managers (one manager's rate)."""
    sat = max(s["saturation"], key=lambda r: r["nodes"])
    gov_rate = float(sat["tasks_per_s"])
    short = [r for r in s["rows"] if r["shape"] == "governor" and r["workload"] == "0.1s"]
    part = max(short or [r for r in s["rows"] if r["shape"] == "governor"], key=lambda r: r["nodes"])
    part_rate = 1e6 / part["part_us_per_task"]  # one manager: its CPU over its own tasks is the same per task
    spawn_rates = [floor["tasks"] / floor[k] for k in ("xargs_s", "c_s") if floor.get(k)]
    return {
        "demand_per_s": DEMAND_CORES / DEMAND_TASK_S, "gov_rate": gov_rate, "gov_us": sat["gov_us_per_task"],
        "sat_nodes": sat["nodes"], "busy_cores": gov_rate * DEMAND_TASK_S,
        "busy_nodes": gov_rate * DEMAND_TASK_S / CORES_PER_NODE, "min_task_s": DEMAND_CORES / gov_rate,
        "part_rate": part_rate, "part_us": part["part_us_per_task"],
        "spawn_min": min(spawn_rates) if spawn_rates else None, "spawn_max": max(spawn_rates) if spawn_rates else None,
    }


def _scale_table(s: Dict[str, Any]) -> str:
    comp = {(c["workload"], c["nodes"]): c for c in s.get("comparison", [])}
    rows = sorted((r for r in s["rows"] if r["shape"] == "governor"), key=lambda r: (r["workload"], r["nodes"]))
    out = []
    for r in rows:
        c = comp.get((r["workload"], r["nodes"]), {})
        out.append([r["workload"], f"{r['nodes']:,}", f"{r['partitions']}", f"{r['tasks']:,}",
                    f"{r['gov_us_per_task']:.2f}", f"{c.get('flat_gov_us_per_task', float('nan')):.2f}",
                    f"{r['part_us_per_task']:.1f}", f"{r['messages_per_task']:.3f}",
                    f"{r['makespan_s']:,.2f} s", f"{c.get('flat_makespan_s', float('nan')):,.2f} s",
                    f"{c.get('difference_pct', float('nan')):+.2f}%"])
    return _table(["workload", "nodes", "partitions", "iterations", "governor µs/task", "flat: governor µs/task",
                   "partitions µs/task (sum)", "messages/task", "makespan", "flat makespan",
                   "governor vs flat"], out)


def _saturation_table(s: Dict[str, Any]) -> str:
    return _table(["nodes", "partitions", "iterations reported", "governor µs/task", "governor tasks/s"], [
        [f"{r['nodes']:,}", f"{r['partitions']}", f"{r['tasks']:,}", f"{r['gov_us_per_task']:.2f}",
         f"{r['tasks_per_s']:,}"] for r in sorted(s["saturation"], key=lambda r: r["nodes"])])


def _scale(res: Results) -> str:
    head = """## Scale simulation: what the hierarchy costs (issues #8, #16)

What it simulates (bench/scale.py, `python -m bench.scale`):

- Allocations of virtual nodes with 128 cores each, one job of 8 iterations per core,
  run through the real `GovernorCore` and real `PartitionCore`s on a virtual clock: no
  sockets, no processes, but exactly the events and messages of a real run.
- Every workload twice in the same run: through the governor and partitions of 16
  nodes (routed by credit), and through **one flat partition of all the nodes** with the
  same policy, as a single manager runs (the baseline). The difference in makespan is what
  the hierarchy costs.
- A partition works in loop passes of 10 ms (virtual): it takes the pass's ends, places
  what fits and sends the pass's reports together, as a partition manager does; a message
  between governor and partition takes one pass (the flat partition shares the governor's
  process and loop).
- Workloads: tasks of 0.1 s and 1 s (uniform within 10 %), where control-plane cost shows,
  and lognormal tasks (median 60 s, sigma 0.8, capped at 1 h), the usual shape of a sweep.
- CPU figures are each core's thread CPU time, not wall time, so they hold on a loaded
  machine. The saturation rows feed the governor alone with every partition reporting a
  full load of ends and starts at once: its own ceiling.

Each run is its own process (its peak RSS is its own)."""
    missing = _unavailable(res, "scale")
    if missing:
        return f"{head}\n\n{missing}"
    s = res["scale"]
    plot = f"\n\n![scale simulation]({s['plot_rel']})" if s.get("plot_rel") else ""
    sizes = sorted({r["nodes"] for r in s["rows"]})
    return f"""{head}

Sizes {", ".join(f"{n:,}" for n in sizes)} nodes took {s["wall_s"]:.0f} s in all; the results are in
`{s["json"]}`.

{_scale_table(s)}

The governor alone, every partition answering at once:

{_saturation_table(s)}{plot}

{_scale_notes(s)}

{_saturation(s, res.get("floor", {}))}"""


def _scale_notes(s: Dict[str, Any]) -> str:
    lognormal = [r for r in s["rows"] if r["workload"] == "lognormal" and r["shape"] == "governor"]
    long_tail = max((r.get("longest_task_s", 0.0) for r in lognormal), default=0.0)
    return f"""How to read it:

- **Per batch, not per iteration.** A partition's starts and plain successes of one pass
  reach the governor as one batch per job, in columns (governor/core/batches.py); only
  exceptions (a failure, a cancel, an iteration something waits on) are handled one by one.
  So the governor's cost per task falls as batches grow: short tasks at a large size make
  big batches. Long tasks make batches of one or two (few end in any 10 ms), and the cost
  per task is the cost per batch, at a rate no governor notices.
- **Messages per task** count the governor's messages both ways, batches included.
- **The makespan difference** is the hierarchy's whole cost on the schedule: the round trip
  of credit and reports (a pass each way) and routing in batches of the partitions' credit,
  against a single list scheduler that sees every core. At the end of a job the governor
  hands out what is left so that every partition was given the same share of the job per
  core (governor/core/placement.py): with equal tasks, a partition given a few more per core
  than the others would run a last wave of its own (before this, 1 s tasks ended 2.4% later
  than the flat partition at 1,024 nodes). With lognormal tasks the longest task
  ({long_tail / 60:.0f} min here) sets the makespan in both shapes."""


def _saturation(s: Dict[str, Any], floor: Dict[str, Any]) -> str:
    a = scale_analysis(s, floor)
    spawn = (f"spawning on the nodes runs at {a['spawn_min']:,.0f}-{a['spawn_max']:,.0f}/s on this 2-CPU machine "
             f"(the floor), {a['spawn_min'] * 1024 / 1e6:.1f}-{a['spawn_max'] * 1024 / 1e6:.1f} million/s over "
             "1,024 such nodes, and a 128-core node spawns faster."
             if a["spawn_min"] else "the spawn floor was not measured in this run.")
    node_cores = 16 * CORES_PER_NODE
    lines = [
        f"**What saturates first.** Tasks of {DEMAND_TASK_S} s on {DEMAND_CORES:,} cores need "
        f"{a['demand_per_s'] / 1e6:.2f} million starts per second.",
        f"At {a['sat_nodes']:,} nodes the governor costs {a['gov_us']:.2f} µs of CPU per task when every partition "
        f"reports at once, so it takes up to {a['gov_rate']:,.0f} tasks/s: about {a['busy_cores']:,.0f} busy cores "
        f"with {DEMAND_TASK_S} s tasks ({a['busy_nodes']:,.0f} nodes of {CORES_PER_NODE} cores); with all "
        f"{DEMAND_CORES // CORES_PER_NODE:,} nodes, tasks of {a['min_task_s']:.2f} s or longer keep it below one core.",
        f"A partition manager costs {a['part_us']:.1f} µs per task, so one saturates near {a['part_rate']:,.0f} "
        f"tasks/s: that is the first limit for a partition of 16 such nodes ({node_cores:,} cores) with tasks "
        f"shorter than {node_cores / a['part_rate']:.2f} s, where smaller partitions help.",
        f"And {spawn}",
    ]
    return "\n".join(lines)


def _profile_table(p: Dict[str, Any]) -> str:
    return _table(["function", "own s", "share", "calls"], [
        [f"`{t['function']}`", f"{t['own_s']:.3f}", f"{100 * t['share']:.1f}%", f"{t['calls']:,}"]
        for t in p["top"]])


def _profile(res: Results) -> str:
    head = """## Where the time goes

`python -m bench all` profiles the hot paths with cProfile (bench/profile.py) and shows,
for each, the functions with the most own time and their share of the profiled total.
cProfile slows every Python call down, so the µs per task here are higher than the
scale simulation's unprofiled figures; the shares are what to read."""
    missing = _unavailable(res, "profile")
    if missing:
        return f"{head}\n\n{missing}"
    p = res["profile"]
    sp, sc, ro, jo = p["spawn"], p["scheduler"], p["routing"], p["journal"]
    return f"""{head}

### Spawning: W1 through the local launcher

`hpilot run` of {sp["tasks"]:,} `/bin/true` on `--nodes 2` under `python -m cProfile`: \
{sp["total_s"]:.3f} s of own time in all.

{_profile_table(sp)}

- `os.posix_spawn` is **{100 * sp["posix_spawn_share"]:.0f}%** of it. With vfork semantics it blocks until the
  child has exec'd, so this includes loading `/bin/true`.
- The rest, less waiting in `poll` and less start-up and shutdown (the whole of a
  profiled W0 run: {sp.get("startup_s", 0.0):.3f} s), is hpilot's own work: **{sp["own_us_per_task"]:.0f} µs per task**
  under the profiler, for the governor, partition and launcher cores, environment
  building, the pidfd/epoll reaping and the reports.

Two design choices matter most here:

1. Spawning goes through `posix_spawn`, not `subprocess.Popen`, which spent as long in
   Python (mostly encoding every task's environment) as in the exec itself; `posix_spawn`
   does that conversion in C. It cannot `chdir`, so hpilot uses it when the task runs in
   the service's working directory (the CLI `chdir`s into `--wd`) and falls back to
   `Popen(cwd=...)` otherwise.
2. Exits are not polled. Each child has a pidfd in one epoll set, and the service
   sleeps in `zmq.Poller` on that set's descriptor.

W0 stays small because networkx ({1000 * p["networkx_import_s"]:.0f} ms to import here) is only imported when
a job has dependencies.

### Scheduler: the partition cores

The `PartitionCore`s of a scale simulation of {sc["nodes"]} nodes ({sc["tasks"]:,} tasks, \
{sc["partitions"]} partition(s)): {sc["us_per_task"]:.1f} µs per task under the profiler.

{_profile_table(sc)}

### Routing: the governor core and its Router

The `GovernorCore` of the same simulation: {ro["us_per_task"]:.1f} µs per task under the profiler.

{_profile_table(ro)}

### Journal: writing and replaying

hpilot's journal writer over {jo["records"]:,} finished-iteration records ({jo["write_s"]:.2f} s under the
profiler), then the resume replay of that journal ({jo["replay_s"]:.2f} s): {jo["us_per_record"]:.1f} µs per
record for both.

{_profile_table(jo)}"""


def _targets(res: Results) -> str:
    rows = evaluate(res)
    cells = [[f"#{t['issue']}", t["what"], t["target"], t["value"] if t["value"] is not None else "not measured",
              {True: "yes", False: "NO"}.get(t["met"], "-") if t["met"] is not None else "-",
              t["reason"] or ""] for t in rows]
    missed = sum(1 for t in rows if t["met"] is False)
    unmeasured = sum(1 for t in rows if t["met"] is None)
    return f"""## Targets

Every speed and scale target of issues #2 to #8 and #11 to #16, from this run: {len(rows) - missed - unmeasured} met,
{missed} missed, {unmeasured} not measured (a section that was skipped or failed above says why).
A missed target says why in the last column.

{_table(["issue", "what", "target", "measured", "met", "why not"], cells)}"""
