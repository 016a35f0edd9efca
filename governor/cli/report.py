"""``hpilot report RUNDIR COMMAND`` and ``hpilot processes RUNDIR tree|apps JOB``.

RUNDIR is a run directory (``<wd>/.hpilot/<run-id>``) or a working directory (its
newest run).  QCG-PilotJob's order (``report stats RUNDIR``) works too.  What a run
does not have (no wrapper records, killed mid-run, an older hpilot) is said in a
``note:`` line on stderr, and a command that cannot be answered at all says what is
missing and what can still be shown -- exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import click
from hpilot.governor.errors import UserError

if TYPE_CHECKING:  # the report code is imported when a report command runs, not by every `hpilot run`
    from hpilot.governor.reports.rundata import RunData

PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


class _RunDirFirst(click.Group):
    """Accept both ``report RUNDIR stats`` and QCG-PilotJob's ``report stats RUNDIR``."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        pos = [i for i, a in enumerate(args) if not a.startswith("-")]
        if len(pos) >= 2 and args[pos[0]] in self.commands and args[pos[1]] not in self.commands:
            i, j = pos[0], pos[1]
            args = list(args)
            args[i], args[j] = args[j], args[i]
        return super().parse_args(ctx, args)


def _load(ctx: click.Context, lanes: bool = True) -> RunData:
    """The run (loaded once); ``lanes``: with a Task each and its cores (the per-core views and
    the listings need them; the binned plots read the journal's columns)."""
    from hpilot.governor.reports.rundata import RunDirError, ensure_lanes, load

    obj = ctx.find_object(dict)
    assert obj is not None
    if "run" in obj and lanes:
        ensure_lanes(obj["run"])
    if "run" not in obj:
        try:
            obj["run"] = load(obj["rundir"], lanes, objects=lanes)
        except RunDirError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"{obj['rundir']}: cannot read: {e}") from None
        for note in obj["run"].notes:
            click.echo(f"hpilot report: note: {note}", err=True)
    run: RunData = obj["run"]
    return run


def _emit(data: Dict[str, Any], as_json: bool, text: Callable[[Dict[str, Any]], str]) -> None:
    click.echo(json.dumps(data, indent=1) if as_json else text(data))


def _answer(ctx: click.Context, compute: Callable[[RunData], Dict[str, Any]], as_json: bool,
            text: Optional[Callable[[Dict[str, Any]], str]] = None) -> None:
    from hpilot.governor.reports import metrics
    from hpilot.governor.reports.rundata import MissingData

    text = text or metrics.render
    run = _load(ctx)
    try:
        data = compute(run)
    except MissingData as e:
        raise UserError(str(e)) from None
    _emit(data, as_json, text)


def _m() -> Any:
    from hpilot.governor.reports import metrics

    return metrics


json_flag = click.option("--json", "as_json", is_flag=True, default=False, help="Print the figures as JSON.")


@click.group(cls=_RunDirFirst)
@click.argument("rundir", type=str)
@click.pass_context
def report(ctx: click.Context, rundir: str) -> None:
    """Figures of a run: RUNDIR is a run directory or a working directory (its newest run)."""
    ctx.ensure_object(dict)["rundir"] = rundir


def _iterations_cell(row: Dict[str, Any]) -> Optional[str]:
    """``12/40 succeeded (2 canceled, 26 not started)``; older runs: QCG's finished/total."""
    it, c = row.get("iterations"), row.get("counts")
    if not it:
        return None
    if not c:
        return f"{it.get('finished')}/{it.get('total')}"
    rest = {k: v for k, v in c.items() if k != "succeeded"}
    from hpilot.governor.core.counts import text

    extra = text(rest, "")
    return f"{c.get('succeeded', 0)}/{it.get('total')} succeeded" + (f" ({extra})" if extra else "")


@report.command()
@json_flag
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Jobs, failures, cores, nodes, service start/finish, init/finish overhead."""
    _answer(ctx, lambda run: _m().stats(run), as_json)


@report.command("launch-stats")
@json_flag
@click.pass_context
def launch_stats(ctx: click.Context, as_json: bool) -> None:
    """Start and finish overheads per task (needs --enable-rt-stats)."""
    _answer(ctx, lambda run: _m().launch_stats(run), as_json)


@report.command()
@click.option("--details", is_flag=True, default=False, help="Utilisation of every core.")
@json_flag
@click.pass_context
def rusage(ctx: click.Context, details: bool, as_json: bool) -> None:
    """Used cores, average core utilisation, the tasks' CPU time and memory."""
    _answer(ctx, lambda run: _m().rusage(run, details), as_json, lambda d: _m().render_rusage(d))


@report.command()
@json_flag
@click.pass_context
def efficiency(ctx: click.Context, as_json: bool) -> None:
    """Core utilisation within each core's active window (scheduling gaps left out)."""
    _answer(ctx, lambda run: _m().efficiency(run), as_json)


@report.command()
@json_flag
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """One line per job: state, start, finish, run time, allocation or iterations."""
    def text(d: Dict[str, Any]) -> str:
        rows = [dict(r, iterations=_iterations_cell(r)) for r in d["jobs"]]
        return _m().render_table(rows, ["name", "state", "started", "finished", "runtime_s", "allocation",
                                           "iterations", "exit_code"])

    _answer(ctx, lambda run: _m().jobs_listing(run), as_json, text)


@report.command()
@json_flag
@click.pass_context
def text(ctx: click.Context, as_json: bool) -> None:
    """One line per task: where and when it ran, its exit and overheads."""
    def render(d: Dict[str, Any]) -> str:
        return _m().render_table(d["tasks"], ["task", "nodes", "cores", "start", "stop", "runtime_s",
                                                 "exit_code", "start_overhead_s", "finish_overhead_s"])

    _answer(ctx, lambda run: _m().tasks_listing(run), as_json, render)


def _drawing(kind: str, run: RunData, view: str) -> Any:
    """(draw(run, out), data(run)) of a plot; ``gantt`` picks its view by the number of cores."""
    from hpilot.governor.reports import overview, plots, timeline
    from hpilot.governor.reports.rundata import ensure_lanes

    if kind == "gantt":
        rows = sum(len(cores) for _, cores in run.nodes)
        if view == "density" or (view == "auto" and rows > overview.DENSITY_FROM_ROWS):
            if len(run.nodes) < timeline.NODE_ROWS_FROM:  # rows of a node's cores: where each task ran
                ensure_lanes(run)
            return overview.density_plot, timeline.density
        ensure_lanes(run)
        return plots.gantt, plots.gantt_data
    if kind == "cores":
        return overview.cores_plot, timeline.busy_cores
    if kind == "throughput":
        return overview.throughput_plot, timeline.throughput
    ensure_lanes(run)
    return plots.gantt_gaps, plots.gaps_data


def _said(kind: str, info: Dict[str, Any]) -> str:
    if "bars" in info or "gaps" in info:
        return (f"{kind}: {info['file']} ({info['rows']} cores, {info.get('bars', info.get('gaps'))} bars, "
                f"{info['size_in'][0]}x{info['size_in'][1]} in)")
    return f"{kind}: {info['file']} (" + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info.items()
                                                   if k != "file" and v is not None) + ")"


def _plot(ctx: click.Context, out: Optional[str], as_json: bool, kind: str, view: str = "auto") -> None:
    from hpilot.governor.reports import plots

    if out is None and not as_json:
        raise UserError(f"{kind}: give the output file (OUT.png, .svg or .pdf), or --json for the data")
    if out is not None and os.path.splitext(out)[1].lower() not in PLOT_FORMATS:
        raise UserError(f"{kind}: {out}: unknown image format; use one of {', '.join(PLOT_FORMATS)}")
    run = _load(ctx, lanes=False)
    if not run.task_count:
        raise UserError(f"{kind}: no per-task records to draw (no journal, no rtstats/ and no job with an "
                        "allocation in jobs.report). Still available: stats, jobs")
    draw, data = _drawing(kind, run, view)
    if out is not None:
        d = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(d):
            raise UserError(f"{kind}: {out}: the directory {d} does not exist")
        try:
            info = draw(run, out)
        except plots.NoMatplotlib as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"{kind}: cannot write {out}: {e.strerror or e}") from None
        if not as_json:
            click.echo(_said(kind, info))
    if as_json:
        _emit(data(run), True, _m().render)


@report.command()
@click.argument("out", required=False)
@click.option("--view", type=click.Choice(["auto", "bars", "density"]), default="auto", show_default=True,
              help="bars: a row per core, a bar per task; density: a row per node, coloured by its busy cores; "
                   "auto: bars up to 300 cores, density past them.")
@json_flag
@click.pass_context
def gantt(ctx: click.Context, out: Optional[str], view: str, as_json: bool) -> None:
    """Timeline of the tasks on every core, coloured by job (OUT: .png, .svg or .pdf)."""
    _plot(ctx, out, as_json, "gantt", view)


@report.command()
@click.argument("out", required=False)
@json_flag
@click.pass_context
def cores(ctx: click.Context, out: Optional[str], as_json: bool) -> None:
    """Busy cores over time, per node group (partition) and in total (OUT: .png, .svg or .pdf)."""
    _plot(ctx, out, as_json, "cores")


@report.command()
@click.argument("out", required=False)
@json_flag
@click.pass_context
def throughput(ctx: click.Context, out: Optional[str], as_json: bool) -> None:
    """Tasks finished per second and in total, per job, over time (OUT: .png, .svg or .pdf)."""
    _plot(ctx, out, as_json, "throughput")


@report.command("gantt-gaps")
@click.argument("out", required=False)
@json_flag
@click.pass_context
def gantt_gaps(ctx: click.Context, out: Optional[str], as_json: bool) -> None:
    """Timeline of the idle time of every core (OUT: .png, .svg or .pdf)."""
    _plot(ctx, out, as_json, "gantt-gaps")


@click.group(cls=_RunDirFirst)
@click.argument("rundir", type=str)
@click.pass_context
def processes(ctx: click.Context, rundir: str) -> None:
    """Process trees of tasks (needs --enable-proc-stats): RUNDIR tree JOB, RUNDIR apps JOB."""
    ctx.ensure_object(dict)["rundir"] = rundir


def _procs(ctx: click.Context, job: str, as_json: bool, which: str) -> None:
    from hpilot.governor.reports import processes as pr
    from hpilot.governor.reports.rundata import MissingData

    run = _load(ctx)
    try:
        chosen = pr.select(pr.load_procs(run), job)
    except MissingData as e:
        raise UserError(str(e)) from None
    if which == "tree":
        _emit(pr.tree(chosen), as_json, pr.render_tree)
    else:
        _emit(pr.apps(chosen), as_json, pr.render_apps)


@processes.command()
@click.argument("job")
@json_flag
@click.pass_context
def tree(ctx: click.Context, job: str, as_json: bool) -> None:
    """The process tree of JOB (a task id job:N, or a job name for all its iterations)."""
    _procs(ctx, job, as_json, "tree")


@processes.command()
@click.argument("job")
@json_flag
@click.pass_context
def apps(ctx: click.Context, job: str, as_json: bool) -> None:
    """The application processes of JOB with affinity, CPU times and memory."""
    _procs(ctx, job, as_json, "apps")
