"""What a person sees in a real terminal (tmux: keys sent with send-keys, the screen read with
capture-pane): ``hpilot top`` on a running hpilot, and the progress line ``hpilot run`` draws
by default on a terminal (``--no-progress`` hides it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.conftest import HPILOT, wait_for, write_requests

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")]


class Tmux:
    """One detached tmux session on a server of its own (other tmux users are not touched)."""

    def __init__(self, name: str, cwd: Path, command: str, width: int = 120, height: int = 40) -> None:
        self.server = f"hpilot-test-{os.getpid()}-{name}"
        env = " ".join(f"{k}={v}" for k, v in (("PATH", os.environ.get("PATH", "")),
                                                ("PYTHONPATH", os.environ.get("PYTHONPATH", ""))))
        shell = _quote(command + "; echo EXIT=$?; sleep 600")
        # the pane's own size, not the COLUMNS/LINES this process may have inherited
        self._tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "-c", str(cwd),
                   f"env -u COLUMNS -u LINES {env} TERM=xterm-256color bash --norc -c {shell}")
        self.name = name

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", self.name)  # -J: wrapped lines joined

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=30)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _cmd(*args: str) -> str:
    return " ".join(_quote(a) for a in [*HPILOT, *args])


@pytest.fixture
def terminals() -> Iterator[List[Tmux]]:
    opened: List[Tmux] = []
    yield opened
    for t in opened:
        t.close()


@pytest.fixture
def run_in_background(tmp_path: Path) -> Iterator[Path]:
    """A governor-mode run of a 60-iteration sweep (one iteration fails) on two partitions."""
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", [
        {"request": "submit", "jobs": [
            {"name": "sweep", "iteration": {"stop": 60},
             "execution": {"exec": "bash", "args": ["-c", "sleep 1; [ ${it} -ne 1 ]"]}},
            {"name": "post", "execution": {"exec": "true"}, "dependencies": {"after": ["sweep"]}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}])
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "n1:2,n2:2", "--partition-nodes", "1"],
                            cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (wd / ".hpilot" / "latest" / "local").exists(), 30, "the run to be watchable")
        yield wd
    finally:
        subprocess.run(HPILOT + ["finish"], cwd=wd, capture_output=True, timeout=30)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_top_in_a_terminal(run_in_background: Path, terminals: List[Tmux]) -> None:
    t = Tmux("top", run_in_background, _cmd("top", "--interval", "0.5"))
    terminals.append(t)

    def shows_everything() -> bool:
        s = t.screen()
        return ("failures" in s and "sweep:1: exit code 1" in s and re.search(r"\d+/s", s) is not None
                and "EXECUTING" in s  # and a success: sweep:0 ends with sweep:1, in the same or the next report
                and re.search(r"\d+ succeeded", s) is not None)

    wait_for(shows_everything, 40, "top to show jobs, rates and the failure")
    screen = t.screen()
    assert re.search(r"^hpilot .*\.hpilot/\S+ +up \d+:\d\d:\d\d", screen, re.M), screen
    assert re.search(r"\d+/61 iterations done .*\d+ succeeded, 1 failed", screen), screen
    assert re.search(r"cores \d/4", screen) and re.search(r"ETA (\d+:\d\d:\d\d|-)", screen), screen
    assert re.search(r"^ *sweep +EXECUTING .* \d+/60 ", screen, re.M), screen
    assert re.search(r"^ *post +OMITTED .* 1 not started", screen, re.M), screen  # sweep:1 failed
    assert re.search(r"^ *p1 .* \d/2 +n1 \d/2", screen, re.M) and re.search(r"^ *p2 .* n2 \d/2", screen, re.M), screen
    assert "Traceback" not in screen
    before = re.search(r"(\d+)/61 iterations done", screen)
    assert before is not None
    # it moves by itself (fed by the run's events)
    wait_for(lambda: (m := re.search(r"(\d+)/61 iterations done", t.screen())) is not None
             and int(m.group(1)) > int(before.group(1)), 20, "the count to move")
    t.keys("q")
    wait_for(lambda: "EXIT=0" in t.screen(), 15, "top to quit on q")


def test_top_once_and_json(run_in_background: Path) -> None:
    wait_for(lambda: b"sweep" in subprocess.run(HPILOT + ["top", "--once"], cwd=run_in_background,
                                                 capture_output=True, timeout=30).stdout, 30, "a screen")
    once = subprocess.run(HPILOT + ["top", "--once"], cwd=run_in_background, capture_output=True, text=True,
                          timeout=30)
    assert once.returncode == 0 and "partitions and nodes" in once.stdout, once.stderr
    js = subprocess.run(HPILOT + ["top", "--json"], cwd=run_in_background, capture_output=True, text=True, timeout=30)
    import json

    data = json.loads(js.stdout)
    assert {p["name"] for p in data["resources"]["partitions"]} == {"p1", "p2"}
    assert sum(data["iterations"].values()) == 61


def test_run_shows_progress_on_a_terminal(tmp_path: Path, terminals: List[Tmux]) -> None:
    t = Tmux("run", tmp_path, _cmd("run", "--nodes", "2", "--array", "0-5", "--", "sleep", "0.3"))
    terminals.append(t)
    wait_for(lambda: "EXIT=0" in t.screen(), 60, "the run to end")
    screen = t.screen()
    assert re.search(r"hpilot: run dir \S+; watch it with `hpilot top` or `hpilot status`", screen), screen
    assert re.search(r"\[#+\] 6/6 done \(6 succeeded\) 0 running 0 queued", screen), screen
    quiet = Tmux("quiet", tmp_path, _cmd("run", "--no-progress", "--nodes", "2", "--array", "0-5", "--", "true"))
    terminals.append(quiet)
    wait_for(lambda: "EXIT=0" in quiet.screen(), 60, "the quiet run to end")
    assert "done (" not in quiet.screen() and "6 succeeded" in quiet.screen()


def test_python_is_the_one_under_test() -> None:
    assert HPILOT[0] == sys.executable
