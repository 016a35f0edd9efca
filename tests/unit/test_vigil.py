"""launcher/vigil.py: a watcher's own pause is not its peers' silence."""

from __future__ import annotations

import logging

import pytest
from hpilot.launcher.vigil import Vigil, excused

LOG = logging.getLogger("test")


def test_passes_within_the_longest_wait_are_not_a_pause() -> None:
    v = Vigil(2.0, LOG, "it", "its peers'")
    assert [v.away(t) for t in (100.0, 101.0, 103.0, 104.9)] == [0.0, 0.0, 0.0, 0.0]


def test_a_long_gap_is_a_pause_less_what_the_watcher_may_have_listened(caplog: pytest.LogCaptureFixture) -> None:
    v = Vigil(2.0, LOG, "it", "its peers'")
    v.away(100.0)
    assert v.away(109.0) == pytest.approx(7.0)
    assert caplog.messages == ["it did not run for 9.0s (the machine stalled, or the job was suspended): not counted "
                               "as its peers' silence"]
    assert v.away(110.0) == 0.0  # counted once


def test_a_peer_is_excused_the_pause_but_never_heard_in_the_future() -> None:
    assert excused(95.0, 7.0, 109.0) == 102.0
    assert excused(108.5, 7.0, 109.0) == 109.0
    assert excused(95.0, 0.0, 109.0) == 95.0
