"""Client commands for a running hpilot, like a batch system's CLI.

``hpilot submit|status|info|list|cancel|remove|resources|wait|finish`` (and ``top``,
in top.py).  Every running hpilot answers them from its working directory
(connect.py says how it is found).  Tables for people, ``--json`` for scripts.

Exit status: 0 done; 1 ``wait``: a job did not succeed; 2 bad input, a refused
request, or no service to ask; 3 an internal error; 124 ``wait --timeout`` ran out
(as GNU timeout).  This module imports only click, ZeroMQ and what each command
uses, so that a client command starts within a few times a bare Python.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import click
from hpilot.governor.cli.base import Command
from hpilot.governor.cli.connect import Client, ServiceGone, find
from hpilot.governor.cli.sweep import sweep_options
from hpilot.governor.errors import UserError

STATES = ("QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED", "FAILED", "CANCELED", "OMITTED")
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")
TIMED_OUT = 124  # `wait --timeout` ran out: the jobs are still running
ALL = 100_000  # the overview's most jobs in one answer


def connect(address: Optional[str], timeout: float = 30.0) -> Client:
    return Client(find(address), timeout)


def out(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else human(data))


def table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def counts_text(c: Optional[Dict[str, int]], skip: Sequence[str] = ()) -> str:
    from hpilot.governor.core.counts import text

    return text({k: v for k, v in (c or {}).items() if k not in skip}, "")


def job_row(name: str, state: str, c: Optional[Dict[str, int]], message: str = "") -> tuple:
    """JOB, STATE, SUCCEEDED (of all), OTHER (the other categories), MESSAGE."""
    if c is None:
        return (name, state, "-", "", message)
    total = sum(c.values())
    return (name, state, f"{c.get('succeeded', 0)}/{total}", counts_text(c, ("succeeded",)), message)


JOB_HEAD = ("JOB", "STATE", "SUCCEEDED", "OTHER", "MESSAGE")


def _short(msg: Any, width: int = 60) -> str:
    text = str(msg or "").split("\n", 1)[0]
    return text if len(text) <= width else text[: width - 3] + "..."


address_opt = click.option("--address", default=None, metavar="ADDRESS|DIR",
                           help="The service: tcp://host:port, ipc://path, or a working/run directory "
                                "[default: the newest run in this directory].")
json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


# ---- submit ----


@click.command(cls=Command, takes_command=True)
@click.argument("file", required=False)
@address_opt
@json_opt
@sweep_options
def submit(file: Optional[str], address: Optional[str], as_json: bool, **sweep: Any) -> None:
    """Submit jobs: from FILE (a request file, a submit request or a list of jobs; - reads
    stdin), or one command line after -- (with --array / --each-line: a sweep)."""
    from hpilot.governor.cli import sweep as sw

    command = click.get_current_context().meta.get("command")
    if command:
        if file is not None:
            raise UserError(f"give a request file or a command after --, not both ({file!r} and the command)")
        c = connect(address)
        names = set(c.data({"request": "listJobs"})["jobs"])
        jobs = [sw.job_from_command(command, sw.SweepOptions.from_kw(sweep), os.getcwd(), taken=names)]
    else:
        if file is None:
            raise UserError("nothing to submit: give a request file (- for stdin), or a command after --")
        sw.SweepOptions.from_kw(sweep).refuse_without_command()
        jobs = sw.jobs_from_file(file)
        c = connect(address)
    data = c.data({"request": "submit", "jobs": jobs})
    names = data.get("jobs", [])
    out(names, as_json, lambda n: f"{len(n)} job(s) submitted: {', '.join(n)}")


# ---- status, list, info ----


@click.command()
@click.argument("jobs", nargs=-1)
@click.option("--partitions", is_flag=True, help="Each partition's nodes, cores in use, iterations held and done.")
@address_opt
@json_opt
def status(jobs: Sequence[str], partitions: bool, address: Optional[str], as_json: bool) -> None:
    """The run (iterations by outcome, cores in use) and its jobs; or the given jobs."""
    c = connect(address)
    if partitions:
        _partitions(c.data({"request": "overview", "limit": 0, "failures": 0}), as_json)
        return
    if not jobs:
        ov = c.data({"request": "overview", "limit": ALL, "failures": 0})
        out(ov, as_json, lambda d: _status_text(d, c.target.run_dir))
        return
    ov = c.data({"request": "overview", "jobs": list(jobs), "failures": 0})
    found = job_map(ov["list"])
    data = {n: found.get(n, {"status": "UNKNOWN", "message": f"job {n!r} does not exist"})
            for n in jobs}
    rows = [job_row(n, e["status"], e.get("counts"), _short(e.get("message"))) for n, e in data.items()]
    out(data, as_json, lambda _: table(rows, JOB_HEAD))
    if ov["unknown"]:
        sys.exit(2)


def job_map(entries: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Overview entries as {name: {status, total, counts, message}} (what --json prints)."""
    out = {}
    for j in entries:
        e = {"status": j["state"], "total": j["total"], "counts": j["counts"]}
        if j.get("message"):
            e["message"] = j["message"]
        out[j["name"]] = e
    return out


def _status_text(d: Dict[str, Any], run_dir: Optional[str]) -> str:
    its = d["iterations"]
    res = d["resources"]
    jobs = d["jobs"]
    states = ", ".join(f"{n} {s}" for s, n in sorted(jobs["states"].items()))
    lines = []
    if run_dir:
        lines.append(f"run:        {run_dir}")
    lines.append(f"iterations: {sum(its.values())}: {counts_text(its) or 'none'}")
    lines.append(f"jobs:       {jobs['total']}" + (f" ({states})" if states else ""))
    lines.append(f"cores:      {res['used_cores']}/{res['total_cores']} in use"
                 + (" (finishing)" if d.get("finishing") else ""))
    for p in res.get("partitions", []):
        for n in p["nodes"]:
            if n.get("down"):
                lines.append(f"down:       {n['name']}: {n['down']}")
    rows = [job_row(j["name"], j["state"], j["counts"], _short(j.get("message"))) for j in d["list"]]
    lines += ["", table(rows, JOB_HEAD)]
    return "\n".join(lines)


def _partitions(ov: Dict[str, Any], as_json: bool) -> None:
    res = ov["resources"]
    if "lost_partitions" not in res:
        raise UserError("this service is not a governor: it has no partitions (start it with --governor)")
    now = ov["time"]
    parts = res["partitions"]
    rows = [(p["name"], ",".join(n["name"] for n in p["nodes"]), f"{p['used_cores']}/{p['total_cores']}",
             p.get("held") or 0, p.get("done") or 0,
             f"{(p.get('done') or 0) / max(1e-9, now - p['joined']):.1f}/s" if p.get("joined") else "-",
             "draining" if p.get("draining") else "up") for p in parts]
    rows += [(name, "-", "-", "-", "-", "-", f"lost: {why}") for name, why in res["lost_partitions"].items()]
    out(res, as_json, lambda _: table(rows, ("PARTITION", "NODES", "CORES USED", "HELD", "DONE", "RATE", "STATE")))


@click.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES, case_sensitive=False),
              help="Only jobs in this state (repeatable).")
@address_opt
@json_opt
def list_jobs(states: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """All jobs, optionally only those in some states."""
    entries = connect(address).data({"request": "overview", "limit": ALL, "failures": 0})["list"]
    entries.sort(key=lambda j: j["submitted"])
    wanted = {s.upper() for s in states}
    listing = {n: e for n, e in job_map(entries).items() if not wanted or e["status"] in wanted}
    rows = [job_row(n, e["status"], e.get("counts"), _short(e.get("message"))) for n, e in listing.items()]
    out(listing, as_json, lambda _: table(rows, JOB_HEAD))


@click.command()
@click.argument("job")
@click.option("--iterations", is_flag=True, help="Also list every iteration.")
@address_opt
@json_opt
def info(job: str, iterations: bool, address: Optional[str], as_json: bool) -> None:
    """Details of one job: state, counts, where it ran, history, iterations."""
    c = connect(address)
    data = c.data({"request": "jobInfo", "jobNames": [job], "params": {"withChilds": iterations}})
    entry = data["jobs"][job]
    if entry.get("status") != 0:
        raise UserError(entry.get("message", f"job {job} not found"))
    info = dict(entry["data"])
    for j in c.data({"request": "overview", "jobs": [job], "failures": 0})["list"]:
        info["counts"] = j["counts"]  # hpilot's honest counts beside QCG's answer
    out(info, as_json, _info_text)


def _info_text(d: Dict[str, Any]) -> str:
    lines = [f"job:        {d['jobName']}", f"state:      {d['status']}"]
    rt = d.get("runtime", {})
    for key, label in (("allocation", "allocation"), ("wd", "wd"), ("rtime", "runtime"), ("exit_code", "exit code"),
                       ("reason", "reason")):
        if key in rt:
            lines.append(f"{label + ':':<12}{rt[key]}")
    if "iterations" in d:
        it = d["iterations"]
        lines.append(f"iterations: {it['total']} ({it['start']}..{it['stop'] - 1}): "
                     f"{counts_text(d.get('counts')) or 'none'}")
    if d.get("messages"):
        lines.append("messages:   " + d["messages"].replace("\n", "\n            "))
    for f in d.get("failures", []):  # each failed iteration's last stderr lines (hpilot log has the rest)
        it = f":{f['iteration']}" if "iteration" in f else ""
        why = f" ({f['reason']})" if f.get("reason") else ""
        lines.append(f"failed:     {d['jobName']}{it} exit code {f.get('exit_code')}{why}")
        lines.extend(f"            | {ln}" for ln in (f.get("stderr") or "").splitlines())
    lines.append("history:" + d.get("history", "").replace("\n", "\n  "))
    for c in d.get("childs", []):
        crt = c.get("runtime", {})
        why = f"  {crt['reason']}" if crt.get("reason") else ""
        lines.append(f"  [{c['iteration']}] {c['state']:<9} {crt.get('allocation', '')} {crt.get('rtime', '')}{why}")
    return "\n".join(lines)


# ---- cancel, remove, resources, finish ----


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@address_opt
@json_opt
def cancel(jobs: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """Cancel jobs: queued iterations never start, running ones are killed, dependants are OMITTED."""
    data = connect(address).data({"request": "cancelJob", "jobNames": list(jobs)})
    _refused(data)
    out(data, as_json, lambda d: f"{d['canceled']} job(s) canceled")


def _refused(data: Dict[str, Any]) -> None:
    """QCG-PilotJob answers code 0 and lists the names it could not act on: for us that is exit 2."""
    errors = data.get("errors")
    if errors:
        raise UserError("; ".join(str(m) for m in errors.values()) if isinstance(errors, dict) else str(errors))


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@address_opt
@json_opt
def remove(jobs: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """Forget finished jobs (their names can then be used again)."""
    data = connect(address).data({"request": "removeJob", "jobNames": list(jobs)})
    _refused(data)
    out(data, as_json, lambda d: f"{d['removed']} job(s) removed")


@click.command()
@address_opt
@json_opt
def resources(address: Optional[str], as_json: bool) -> None:
    """Cores and nodes of the service: total, used, free."""
    data = connect(address).data({"request": "resourcesInfo"})
    out(data, as_json, lambda d: (f"nodes: {d['total_nodes']}  cores: {d['total_cores']}  "
                                  f"used: {d['used_cores']}  free: {d['free_cores']}"
                                  + "".join(f"\nout of service: {node}: {why}"
                                            for node, why in d.get("down_nodes", {}).items())))


@click.command()
@address_opt
@json_opt
def finish(address: Optional[str], as_json: bool) -> None:
    """Stop the service (running tasks are killed)."""
    answer = connect(address).call({"request": "finish"})
    if answer.get("code") != 0:
        raise UserError(str(answer.get("message")))
    out({"finishing": True}, as_json, lambda _: "the service is finishing")


# ---- wait ----


@click.command()
@click.argument("jobs", nargs=-1)
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help=f"Give up after this many seconds (exit {TIMED_OUT}, as GNU timeout).")
@click.option("--progress/--no-progress", "progress", default=None,
              help="A live progress line on stderr [default: on a terminal].")
@address_opt
@json_opt
def wait(jobs: Sequence[str], timeout: Optional[float], progress: Optional[bool], address: Optional[str],
         as_json: bool) -> None:
    """Wait until the given jobs (default: all) finish, counting iterations; exit 1 if a job did not succeed."""
    c = connect(address)
    c.subscribe([b"job", b"iteration"])  # woken by events; a status query every few seconds guards a lost one
    show = sys.stderr.isatty() and not as_json if progress is None else progress
    deadline = None if timeout is None else time.monotonic() + timeout
    line = _Line(enabled=show)
    try:
        while True:
            try:
                names, its, active = _wait_state(c, list(jobs))
            except ServiceGone:  # a run that finished while we waited: its run dir tells how
                names, its, active = _ended_state(c.target.run_dir, list(jobs))
            line.show(its, active)
            if not active:
                break
            left = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
            if left <= 0:
                line.close()
                if not jobs:  # while waiting for all, only their number was asked for: now their names
                    listed = c.data({"request": "overview", "limit": ALL, "failures": 0})["list"]
                    active = [j["name"] for j in listed if j["state"] not in FINAL] or active
                click.echo(f"hpilot: wait: {timeout:g}s passed; still running: {_some(active)}", err=True)
                sys.exit(TIMED_OUT)
            c.events(left)
            time.sleep(0.05 if line.enabled else 0)  # let a burst of events pass before asking again
    finally:
        line.close()
    bad = {n: s for n, s in names.items() if s != "SUCCEED"}
    summary = {"jobs": names, "iterations": its}
    out(summary, as_json, lambda _: f"{len(names)} job(s) finished: {len(names) - len(bad)} SUCCEED"
        + "".join(f"\n  {n}: {st}" for n, st in bad.items())
        + f"\niterations: {sum(its.values())}: {counts_text(its) or 'none'}")
    if bad:
        sys.exit(1)


def _some(names: List[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _wait_state(c: Client, jobs: List[str], final: bool = False) -> tuple:
    """({job: state}, iterations by category, [jobs not finished]) of the jobs waited for.

    Waiting for all jobs asks for totals only (whatever the number of jobs), and for
    the list of jobs once they are all done (``final``)."""
    from hpilot.governor.core.counts import add, empty

    if jobs:
        ov = c.data({"request": "overview", "jobs": jobs, "failures": 0})
        if ov["unknown"]:
            raise UserError("; ".join(f"job {n!r} does not exist" for n in ov["unknown"]))
        its = empty()
        for j in ov["list"]:
            add(its, j["counts"])
    else:
        ov = c.data({"request": "overview", "limit": ALL if final else 0, "failures": 0})
        its = ov["iterations"]
        if ov["jobs"]["active"] and not final:
            return {}, its, [f"{ov['jobs']['active']} job(s)"]  # who, once it matters (--timeout)
        if not final:
            return _wait_state(c, jobs, final=True)
    states = {j["name"]: j["state"] for j in sorted(ov["list"], key=lambda j: j["submitted"])}
    active = [n for n, s in states.items() if s not in FINAL]
    return states, its, active


def _ended_state(run_dir: Optional[str], jobs: List[str]) -> tuple:
    """What ``_wait_state`` says, from the jobs.report of a run that has ended."""
    from hpilot.governor.core.counts import CATEGORY, add, empty
    from hpilot.governor.core.states import JobState
    from hpilot.governor.reports.rundata import RunDirError, load

    if run_dir is None:
        raise UserError("the service has ended")
    try:
        run = load(run_dir)
    except (RunDirError, OSError) as e:
        raise UserError(f"the service has ended, and its run dir cannot be read: {e}") from None
    report = {n: j for n, j in run.jobs.items() if not jobs or n in jobs}
    states = {n: report[n].state if n in report else "UNKNOWN" for n in (jobs or list(report))}
    its = empty()
    for j in report.values():
        if j.counts:
            add(its, j.counts)
        elif j.state in JobState.__members__:
            its[CATEGORY[JobState(j.state)]] += 1
    return states, its, []


class _Line:
    """``[#####.....] 1234/10000 iterations done (1200 succeeded, 34 failed); waiting for sweep``"""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.drawn = False

    def show(self, its: Dict[str, int], active: List[str]) -> None:
        if not self.enabled:
            return
        from hpilot.governor.core.counts import FINAL_CATEGORIES, done, text

        total, finished = sum(its.values()), done(its)
        width = 30
        filled = int(width * finished / total) if total else width
        finals = text({k: its[k] for k in FINAL_CATEGORIES}, "none yet")
        sys.stderr.write(f"\r\x1b[2K[{'#' * filled}{'.' * (width - filled)}] {finished}/{total} iterations done "
                         f"({finals})" + (f"; waiting for {_some(active, 3)}" if active else ""))
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


COMMANDS = {"submit": submit, "status": status, "list": list_jobs, "info": info, "cancel": cancel,
            "remove": remove, "resources": resources, "wait": wait, "finish": finish}
