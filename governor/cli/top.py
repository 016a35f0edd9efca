"""``hpilot top``: a live dashboard of a running hpilot, fed by its events.

It subscribes to the run's events (every run publishes them on its local socket,
service/local.py) and asks for one compact ``overview`` answer (core/overview.py)
when events arrive, at most a few times a second, and once a second for the clock:
so a quiet run costs one small request a second, and a busy one is drawn as it moves.
Rates and ETAs come from the last ten seconds of those answers.

Drawn with rich (``rich.live.Live``): a well-kept library that handles terminal
sizes, colours, redraws and terminals that cannot do them; we write no escape codes.
rich is imported by this command only, never by ``hpilot status`` or a run.  Textual
was the other candidate; it is a full application framework with its own event loop,
which would fight the ZeroMQ poll this command sleeps in, for a screen that only
needs to be redrawn and to hear ``q``.

Keys: ``q`` (or Ctrl-C) quits.  ``--once`` prints one screen and exits (also for
scripts and for a terminal that is not one); ``--json`` prints one overview as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import click
from hpilot.governor.cli.client import address_opt, connect
from hpilot.governor.cli.connect import Client
from hpilot.governor.errors import UserError

WINDOW = 10.0  # seconds of history behind a rate
MIN_REDRAW = 0.25  # at most four redraws a second, however many events arrive
FINAL_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED", "INTERRUPTED")
SPARK = " ▁▂▃▄▅▆▇█"


@click.command()
@click.option("--interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Redraw at least this often (events redraw sooner).")
@click.option("--once", is_flag=True, help="Print one screen and exit.")
@address_opt
@click.option("--json", "as_json", is_flag=True, help="Print one overview as JSON and exit.")
def top(interval: float, once: bool, address: Optional[str], as_json: bool) -> None:
    """A live dashboard: jobs with progress and rates, partitions and nodes with cores in
    use, failures with their reasons, ETA.  q quits."""
    c = connect(address, timeout=5.0)
    if as_json:
        click.echo(json.dumps(c.data({"request": "overview", "limit": 1000, "failures": 20}), indent=2))
        return
    from rich.console import Console

    console = Console()
    view = View(_where(c.target.run_dir) or c.target.address)
    if once or not console.is_terminal:
        view.add(_ask(c, console.size.height))
        console.print(view.render(console.size.width))
        return
    _live(c, view, console, max(0.1, interval))


def _ask(c: Client, height: int) -> Dict[str, Any]:
    return dict(c.data({"request": "overview", "limit": max(5, height - 16), "failures": 5}))


def _live(c: Client, view: View, console: Any, interval: float) -> None:
    from rich.live import Live

    c.subscribe([b""])  # every event; without events (an old service) the clock still redraws
    with _keys() as key, Live(console=console, auto_refresh=False, screen=True, transient=False) as live:
        last = 0.0
        ended = False
        while True:
            now = time.monotonic()
            if not ended:
                try:
                    view.add(_ask(c, console.size.height))
                except UserError:  # no answer: the run has ended (or hangs); say so, keep the last screen
                    view.ended = ended = True
            live.update(view.render(console.size.width), refresh=True)
            last = now
            deadline = last + interval
            while time.monotonic() < deadline:
                if key(0) in ("q", "Q"):
                    return
                if c.sub is not None and not ended:
                    if c.events(min(0.1, deadline - time.monotonic())) and time.monotonic() - last >= MIN_REDRAW:
                        break
                elif key(min(0.1, max(0.0, deadline - time.monotonic()))) in ("q", "Q"):
                    return


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """``key(timeout)``: a key pressed on the terminal, or None (cbreak mode while open)."""
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield lambda timeout: None
        return
    import termios
    import tty

    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def key(timeout: float) -> Optional[str]:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


class View:
    """What is on the screen: the last overview and the history behind rates."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.data: Optional[Dict[str, Any]] = None
        self.history: Deque[Tuple[float, int, Dict[str, int]]] = deque()
        self.ended = False

    def add(self, data: Dict[str, Any]) -> None:
        self.data = data
        t = float(data["time"])
        done = {j["name"]: _done(j["counts"]) for j in data["list"]}
        self.history.append((t, _done(data["iterations"]), done))
        while len(self.history) > 2 and self.history[1][0] <= t - WINDOW:
            self.history.popleft()

    def rate(self, job: Optional[str] = None) -> Optional[float]:
        """Iterations finished per second over the last WINDOW seconds (None: too early to say)."""
        if len(self.history) < 2:
            return None
        t0, total0, jobs0 = self.history[0]
        t1, total1, jobs1 = self.history[-1]
        if t1 - t0 < 0.5:
            return None
        if job is None:
            return (total1 - total0) / (t1 - t0)
        if job not in jobs0 or job not in jobs1:
            return None
        return (jobs1[job] - jobs0[job]) / (t1 - t0)

    # ---- drawing ----

    def render(self, width: int) -> Any:
        from rich.console import Group
        from rich.text import Text

        d = self.data
        if d is None:
            return Text("waiting for the first answer ...")
        parts: List[Any] = [self._header(d), self._jobs(d, width)]
        parts.append(self._resources(d, width))
        if d.get("failures"):
            parts.append(self._failures(d))
        parts.append(Text("q quits" + ("   the run has ended: this is its last state" if self.ended else ""),
                          style="dim"))
        return Group(*parts)

    def _header(self, d: Dict[str, Any]) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        its = d["iterations"]
        total, done = sum(its.values()), _done(its)
        rate = self.rate()
        left = its["running"] + its["queued"]
        head = Table.grid(padding=(0, 1), expand=True)
        head.add_column(ratio=1)
        head.add_column(justify="right")
        uptime = _clock(d["time"] - d["started"])
        state = " finishing" if d.get("finishing") else ""
        head.add_row(Text.assemble(("hpilot ", "bold"), (self.where, "cyan")),
                     Text(f"up {uptime}{state}", style="dim"))
        res = d["resources"]
        line = Text.assemble(
            (f"{done}/{total}", "bold"), " iterations done  ", _counts(its),
            f"   cores {res['used_cores']}/{res['total_cores']}",
            f"   {_rate(rate)}", f"   ETA {_eta(left, rate)}")
        grid = Table.grid(expand=True)
        grid.add_column()
        grid.add_row(head)
        grid.add_row(ProgressBar(total=max(total, 1), completed=done))
        grid.add_row(line)
        return grid

    def _jobs(self, d: Dict[str, Any], width: int) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        jobs = d["jobs"]
        title = f"jobs: {jobs['total']}, {jobs['active']} not finished"
        if len(d["list"]) < jobs["total"]:
            title += f" (showing {len(d['list'])})"
        t = Table(title=title, title_justify="left", expand=True, box=None, header_style="bold")
        longest = max([len(j["name"]) for j in d["list"]] + [3])
        t.add_column("JOB", no_wrap=True, overflow="ellipsis", min_width=min(longest, 16), max_width=28)
        t.add_column("STATE", no_wrap=True, min_width=9)
        t.add_column("PROGRESS", ratio=1, min_width=8)
        t.add_column("DONE", justify="right", no_wrap=True, min_width=4)
        t.add_column("RATE", justify="right", no_wrap=True, min_width=6)
        t.add_column("ETA", justify="right", no_wrap=True, min_width=7)
        t.add_column("OUTCOMES", ratio=2, overflow="fold")
        for j in d["list"]:
            c = j["counts"]
            done, total = _done(c), j["total"]
            rate = self.rate(j["name"]) if j["state"] not in FINAL_STATES else None
            t.add_row(j["name"], Text(j["state"], style=STATE_STYLE.get(j["state"], "")),
                      ProgressBar(total=max(total, 1), completed=done), f"{done}/{total}",
                      _rate(rate) if rate is not None else "", _eta(c["running"] + c["queued"], rate)
                      if j["state"] not in FINAL_STATES else "", _counts(c))
        return t

    def _resources(self, d: Dict[str, Any], width: int) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        res = d["resources"]
        parts: List[Any] = []
        t = Table(title="partitions and nodes", title_justify="left", expand=True, box=None, header_style="bold")
        t.add_column("PARTITION", no_wrap=True)
        t.add_column("CORES IN USE", ratio=1, min_width=10)
        t.add_column("USED", justify="right", no_wrap=True)
        t.add_column("NODES", ratio=2, overflow="fold")
        for p in sorted(res["partitions"], key=lambda p: p["name"]):
            state = " (draining)" if p.get("draining") else ""
            t.add_row(p["name"] + state, ProgressBar(total=max(p["total_cores"], 1), completed=p["used_cores"]),
                      f"{p['used_cores']}/{p['total_cores']}", _nodes(p["nodes"], width))
        for name, why in (res.get("lost_partitions") or {}).items():
            t.add_row(Text(name, style="red"), "", "", Text(f"lost: {why}", style="red"))
        parts.append(t)
        if not res["partitions"]:
            parts.append(Text("no partition has registered yet", style="yellow"))
        return Group(*parts)

    def _failures(self, d: Dict[str, Any]) -> Any:
        from rich.table import Table
        from rich.text import Text

        t = Table(title="failures", title_justify="left", expand=True, box=None, header_style="bold red")
        t.add_column("JOB", no_wrap=True, max_width=28)
        t.add_column("FAILED", justify="right")
        t.add_column("LAST REASONS", ratio=1, overflow="ellipsis")
        for f in d["failures"]:
            t.add_row(f["job"], str(f["failed"]), Text("; ".join(m.split("\n", 1)[0] for m in f["messages"])))
        return t


STATE_STYLE = {"SUCCEED": "green", "FAILED": "red", "CANCELED": "yellow", "OMITTED": "magenta",
               "EXECUTING": "cyan", "QUEUED": "dim"}
COUNT_STYLE = {"succeeded": "green", "failed": "red", "canceled": "yellow", "interrupted": "yellow",
               "not_started": "magenta", "running": "cyan", "queued": "dim"}


def _done(c: Dict[str, int]) -> int:
    return sum(n for k, n in c.items() if k not in ("running", "queued"))


def _counts(c: Dict[str, int]) -> Any:
    from rich.text import Text

    out = Text()
    for k, n in c.items():
        if n:
            if out:
                out.append(", ")
            out.append(f"{n} {k.replace('_', ' ')}", style=COUNT_STYLE.get(k, ""))
    return out


def _nodes(nodes: List[Dict[str, Any]], width: int) -> Any:
    """A few nodes by name with cores in use; many as one cell each (more ink: more cores in use)."""
    from rich.text import Text

    if len(nodes) * 14 <= max(40, width // 2):
        return Text("  ".join(f"{n['name']} {n['used']}/{n['cores']}" for n in nodes))
    out = Text()
    for n in nodes:
        frac = n["used"] / n["cores"] if n["cores"] else 0.0
        out.append(SPARK[min(len(SPARK) - 1, round(frac * (len(SPARK) - 1)))] if n["used"] else "·",
                   style="cyan" if n["used"] else "dim")
    busy = sum(1 for n in nodes if n["used"])
    out.append(f"  {busy}/{len(nodes)} nodes busy")
    return out


def _where(run_dir: Optional[str]) -> Optional[str]:
    """The run dir, relative when it is below the current directory (the header stays short)."""
    if run_dir is None:
        return None
    rel = os.path.relpath(run_dir)
    return rel if not rel.startswith("..") else run_dir


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _rate(rate: Optional[float]) -> str:
    if rate is None:
        return "-/s"
    return f"{rate:.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


def _eta(left: int, rate: Optional[float]) -> str:
    if left == 0:
        return "done"
    if not rate or rate <= 0:
        return "-"
    return _clock(left / rate)
