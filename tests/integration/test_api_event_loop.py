"""The API inside a running asyncio event loop, which is what a Jupyter kernel is.

QCG-PilotJob's API fails there ("This event loop is already running"); hpilot's
uses blocking ZeroMQ sockets and no event loop of its own, so it just works.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hpilot.governor import Executor, Jobs, LocalManager

pytestmark = pytest.mark.integration


def test_manager_calls_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def notebook_cell() -> dict:
        assert asyncio.get_running_loop().is_running()
        m = LocalManager(["--nodes", "2", "--wd", str(tmp_path)])
        try:
            m.submit(Jobs().add(name="j", exec="/bin/true"))
            return m.wait4("j", timeout=30)
        finally:
            m.finish()

    assert asyncio.run(notebook_cell()) == {"j": "SUCCEED"}


def test_executor_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def notebook_cell() -> dict:
        with Executor(wd=str(tmp_path), resources="2") as ex:
            return ex.submit("true", name="e").result(timeout=30)

    assert asyncio.run(notebook_cell()) == {"e": "SUCCEED"}
