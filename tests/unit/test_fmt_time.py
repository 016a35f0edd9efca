"""fmt_time formats each second once: it must give exactly what datetime gives."""

from __future__ import annotations

from datetime import datetime

import pytest
from hpilot.governor.core.registry import fmt_time
from hypothesis import given, settings
from hypothesis import strategies as st


def _plain(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.parametrize("ts", [0.0, 1.0, 1764600000.0, 1764600000.9999995, 1764600000.9999994,
                                1764600000.0000005, 1764600000.5, 1764600001.999999, 2 ** 31 + 0.25,
                                1764600000 + 0.1 + 0.2])
def test_the_edges_of_a_second_round_as_datetime_rounds(ts: float) -> None:
    assert fmt_time(ts) == _plain(ts)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0.0, max_value=4_000_000_000.0, allow_nan=False, allow_infinity=False))
def test_any_time_reads_as_datetime_gives_it(ts: float) -> None:
    assert fmt_time(ts) == _plain(ts)
    assert fmt_time(ts) == _plain(ts), "the second time, from the cache"


def test_a_time_datetime_refuses_is_refused() -> None:
    with pytest.raises((ValueError, OverflowError)):
        fmt_time(float("nan"))
