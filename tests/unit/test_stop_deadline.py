"""governor/service/stop.py: the allocation's end is read again, and a moved end moves the stop."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest
from hpilot.governor.service import stop
from hpilot.governor.service.stop import Deadline, EndWatch


def _slurm_says(monkeypatch: pytest.MonkeyPatch, window: Optional[Tuple[float, float]]) -> None:
    monkeypatch.setattr(stop, "job_window", lambda job: window)


def test_an_unchanged_or_unknown_end_keeps_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    d = Deadline(1000.0, 940.0, 60.0, "7")
    _slurm_says(monkeypatch, (0.0, 1000.0))
    assert d.reread() is d
    _slurm_says(monkeypatch, None)  # scontrol failed, or the job is unknown: the end read first holds
    assert d.reread() is d
    assert Deadline(1000.0, 940.0, 60.0).reread().end == 1000.0  # no job: nothing to ask


def test_a_moved_end_moves_the_stop_by_as_much(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    d = Deadline(1000.0, 940.0, 60.0, "7")
    _slurm_says(monkeypatch, (0.0, 1015.0))  # suspended for 15 s
    moved = d.reread()
    assert (moved.end, moved.stop_at, moved.margin, moved.job) == (1015.0, 955.0, 60.0, "7")
    assert "the allocation's end moved" in caplog.text
    watch = EndWatch(d)
    _slurm_says(monkeypatch, (0.0, 1090.0))  # scontrol update TimeLimit: 90 s more
    assert watch() == 1030.0 and watch.deadline.end == 1090.0
