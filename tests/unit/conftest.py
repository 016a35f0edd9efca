"""The governor core's fixtures, shared by the tests of its parts (test_governor_core.py,
test_interrupt.py): a core in each shape, checked with ``validate()`` after every test."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.unit.cores import SHAPES

if TYPE_CHECKING:
    from tests.unit.test_governor_core import Gov


@pytest.fixture(params=SHAPES)
def gov(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gov]:
    from tests.unit.test_governor_core import Gov

    g = Gov(tmp_path, request.param)
    yield g
    g.core.validate()


@pytest.fixture
def gov1(tmp_path: Path) -> Iterator[Gov]:
    """For what only one shape shows (the other shape's test says what it shows instead)."""
    from tests.unit.test_governor_core import Gov

    g = Gov(tmp_path, "one")
    yield g
    g.core.validate()
