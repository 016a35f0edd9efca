"""Client commands for a running service, like a batch system's CLI.

``hpilot submit|status|info|list|cancel|remove|resources|wait|finish``.  The
service is found from ``--address``, then ``HPILOT_ADDRESS``/``QCG_PM_ZMQ_ADDRESS``,
then the newest service started in the current directory.  Tables for people,
``--json`` for scripts.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import click
from hpilot.governor.service.startup import UserError

FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


def _connect(address: Optional[str], events: bool = False) -> Any:
    from hpilot.governor.api.jobs import QCGPJMAError
    from hpilot.governor.api.manager import Manager, find_service

    key_file = None
    if address is None:
        address = os.environ.get("HPILOT_ADDRESS") or os.environ.get("QCG_PM_ZMQ_ADDRESS")
    if address is None:
        found = find_service()
        if found is None:
            raise UserError("no running hpilot service found: give --address, set HPILOT_ADDRESS, "
                            "or run this in the working directory of `hpilot service --net`")
        address, key_file = found["address"], found.get("key_file")  # off loopback: the run's client key
    cfg = {"request_timeout": 30, "subscribe": events}
    try:
        return Manager(address, cfg, keys=key_file)
    except QCGPJMAError as e:
        raise UserError(f"cannot talk to the service at {address}: {e}") from None


def _call(fn: Callable[[], Any]) -> Any:
    from hpilot.governor.api.jobs import QCGPJMAError

    try:
        return fn()
    except QCGPJMAError as e:
        raise UserError(str(e)) from None


def _out(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else human(data))


def _table(rows: Sequence[Sequence[str]], head: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _iters(entry: Dict[str, Any]) -> str:
    it = entry.get("iterations")
    return f"{it['finished']}/{it['total']}" if it else "-"


def _partitions(res: Dict[str, Any], as_json: bool) -> None:
    import time

    parts = res.get("partitions")
    if parts is None:
        raise UserError("this service is not a governor: it has no partitions (start it with --governor)")
    now = time.time()
    rows = [(p["name"], ",".join(p.get("nodes", [])), f"{p.get('used_cores', 0)}/{p.get('total_cores', 0)}",
             p.get("outstanding", 0), p.get("done", 0),
             f"{p.get('done', 0) / max(1e-9, now - p.get('joined', now)):.1f}/s" if p.get("joined") else "-",
             "draining" if p.get("draining") else "up") for p in parts]
    rows += [(name, "-", "-", "-", "-", "-", f"lost: {why}") for name, why in res.get("lost_partitions", {}).items()]
    _out(parts, as_json, lambda _: _table(rows, ("PARTITION", "NODES", "CORES USED", "HELD", "DONE", "RATE",
                                                 "STATE")))


address_opt = click.option("--address", default=None, help="Service address (tcp://host:port).")
json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.command()
@click.argument("file")
@address_opt
@json_opt
def submit(file: str, address: Optional[str], as_json: bool) -> None:
    """Submit the jobs in FILE (a request file, a submit request, or a list of jobs)."""
    from hpilot.governor.api.jobs import Jobs

    jobs = _call(lambda: Jobs().load_from_file(file))
    m = _connect(address)
    names = _call(lambda: m.submit(jobs))
    _out(names, as_json, lambda n: f"{len(n)} job(s) submitted: {', '.join(n)}")


@click.command()
@click.argument("jobs", nargs=-1)
@click.option("--partitions", is_flag=True, help="Governor mode: each partition's nodes, load and rate.")
@address_opt
@json_opt
def status(jobs: Sequence[str], partitions: bool, address: Optional[str], as_json: bool) -> None:
    """State of the given jobs (all jobs without names)."""
    m = _connect(address)
    if partitions:
        _partitions(_call(m.resources), as_json)
        return
    if not jobs:
        listing = _call(m.list)
        rows = [(n, e["status"], _iters(e), e.get("messages", "")) for n, e in listing.items()]
        _out(listing, as_json, lambda _: _table(rows, ("JOB", "STATE", "ITERATIONS", "MESSAGE")))
        return
    data = _call(lambda: m.status(list(jobs)))["jobs"]
    named = [(n, e["data"]["status"] if e.get("status") == 0 else "UNKNOWN",
              e.get("data", {}).get("messages", e.get("message", ""))) for n, e in data.items()]
    _out(data, as_json, lambda _: _table(named, ("JOB", "STATE", "MESSAGE")))
    if any(e.get("status") != 0 for e in data.values()):
        sys.exit(2)


@click.command("list")
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable).")
@address_opt
@json_opt
def list_jobs(states: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """All jobs, optionally only those in some states."""
    m = _connect(address)
    listing = _call(m.list)
    wanted = {s.upper() for s in states}
    listing = {n: e for n, e in listing.items() if not wanted or e["status"] in wanted}
    rows = [(n, e["status"], _iters(e)) for n, e in listing.items()]
    _out(listing, as_json, lambda _: _table(rows, ("JOB", "STATE", "ITERATIONS")))


@click.command()
@click.argument("job")
@click.option("--iterations", is_flag=True, help="Also list every iteration.")
@address_opt
@json_opt
def info(job: str, iterations: bool, address: Optional[str], as_json: bool) -> None:
    """Details of one job: state, where it ran, history, iterations."""
    m = _connect(address)
    entry = _call(lambda: m.info([job], withChilds=iterations))["jobs"][job]
    if entry.get("status") != 0:
        raise UserError(entry.get("message", f"job {job} not found"))
    _out(entry["data"], as_json, _info_text)


def _info_text(d: Dict[str, Any]) -> str:
    lines = [f"job:        {d['jobName']}", f"state:      {d['status']}"]
    rt = d.get("runtime", {})
    for key, label in (("allocation", "allocation"), ("wd", "wd"), ("rtime", "runtime"), ("exit_code", "exit code")):
        if key in rt:
            lines.append(f"{label + ':':<12}{rt[key]}")
    if "iterations" in d:
        it = d["iterations"]
        lines.append(f"iterations: {it['total']} ({it['finished']} finished, {it['failed']} not succeeded)")
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
        lines.append(f"  [{c['iteration']}] {c['state']:<9} {crt.get('allocation', '')} {crt.get('rtime', '')}")
    return "\n".join(lines)


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@address_opt
@json_opt
def cancel(jobs: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """Cancel jobs: queued ones never start, running ones are killed, dependants are OMITTED."""
    m = _connect(address)
    data = _call(lambda: m.cancel(list(jobs)))
    _out(data, as_json, lambda d: f"{d['canceled']} job(s) canceled")


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@address_opt
@json_opt
def remove(jobs: Sequence[str], address: Optional[str], as_json: bool) -> None:
    """Forget finished jobs (their names can then be used again)."""
    m = _connect(address)
    data = _call(lambda: m.remove(list(jobs)))
    _out(data, as_json, lambda d: f"{d['removed']} job(s) removed")


@click.command()
@address_opt
@json_opt
def resources(address: Optional[str], as_json: bool) -> None:
    """Cores and nodes of the service: total, used, free."""
    m = _connect(address)
    data = _call(m.resources)
    _out(data, as_json, lambda d: (f"nodes: {d['total_nodes']}  cores: {d['total_cores']}  "
                                   f"used: {d['used_cores']}  free: {d['free_cores']}"))


@click.command()
@click.argument("jobs", nargs=-1)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 3).")
@address_opt
@json_opt
def wait(jobs: Sequence[str], timeout: Optional[float], address: Optional[str], as_json: bool) -> None:
    """Wait until the given jobs (default: all) finish, with a progress line; exit 1 if any did not succeed."""
    from hpilot.governor.api.jobs import TimeoutElapsed

    m = _connect(address, events=True)
    names = list(jobs) or list(_call(m.list))
    progress = _Progress(len(names), enabled=not as_json and sys.stderr.isatty())
    try:
        states = _call(lambda: m.wait4(names, timeout, on_progress=progress.show if progress.enabled else None))
    except TimeoutElapsed as e:
        raise click.exceptions.Exit(3) from e
    finally:
        progress.close()
    bad = {n: s for n, s in states.items() if s != "SUCCEED"}
    _out(states, as_json, lambda s: f"{len(s)} job(s) finished: {len(s) - len(bad)} SUCCEED"
         + "".join(f"\n  {n}: {st}" for n, st in bad.items()))
    if bad:
        sys.exit(1)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0

    def show(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        width = 30
        filled = int(width * done / self.total) if self.total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} jobs finished")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@click.command()
@address_opt
def finish(address: Optional[str]) -> None:
    """Stop the service (running tasks are killed)."""
    m = _connect(address)
    _call(m.finish)
    click.echo("the service is finishing")


def register(cli: click.Group) -> None:
    for cmd in (submit, status, list_jobs, info, cancel, remove, resources, wait, finish):
        cli.add_command(cmd)
