"""The governor notices a partition manager of its own that exited, but asks at most every
EXITS_EVERY: a busy governor's loop passes once per partition frame, and a wait for every
child in every pass was a cost per frame that grew with the number of partitions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hpilot.governor.service.partitions import EXITS_EVERY, PartitionLinks

pytestmark = [pytest.mark.shell, pytest.mark.timeout(30)]


def test_an_exit_is_seen_at_the_next_check_and_not_asked_for_in_between(links: PartitionLinks) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    links.procs["p1"] = p
    links.local.add("p1")
    try:
        t0 = 1000.0
        links.tick(t0)  # asked: it runs
        assert "p1" not in links._reported
        assert p.stdin is not None
        p.stdin.close()
        p.wait(10)
        links.tick(t0 + EXITS_EVERY / 2)  # too soon after the last check: not asked
        assert "p1" not in links._reported
        links.tick(t0 + EXITS_EVERY)
        assert "p1" in links._reported  # never registered: nothing to lose, but it is known gone
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
