"""ProcSampler records a process again when it execs (same pid and start time, new program)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hpilot.launcher.procstats import ProcSampler

pytestmark = pytest.mark.shell  # real processes: not in the core tier

EXEC_ON_LINE = "import os, sys; sys.stdin.readline(); os.execvp('sleep', ['sleep', '30'])"


def test_exec_rewrites_static_facts(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", EXEC_ON_LINE], stdin=subprocess.PIPE)
    try:
        sampler = ProcSampler(str(tmp_path), "t", 0.1, host="h")
        assert sampler.sample([("job:0", proc.pid)]) == 1
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while psutil.Process(proc.pid).name() != "sleep":
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.01)
        sampler.sample([("job:0", proc.pid)])
        sampler.sample([("job:0", proc.pid)])
        sampler.close()
    finally:
        proc.kill()
        proc.wait()
    recs = [json.loads(line) for line in Path(sampler.path).read_text().splitlines()]
    assert len(recs) == 3
    static = [r for r in recs if "name" in r]
    assert [r["name"] for r in static][1:] == ["sleep"] and static[0]["name"] != "sleep"
    assert static[1]["cmdline"] == ["sleep", "30"]
    assert all(r["pid"] == proc.pid and r["cpu_times"] for r in recs)
