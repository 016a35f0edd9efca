"""The governor core's fixtures, shared by the tests of its parts (test_governor_core.py,
test_interrupt.py): a core in each shape, checked with ``validate()`` after every test; and
the governor's partition links on loopback, closed after each test (test_forwarded_queries.py,
test_partition_exits.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.unit.cores import SHAPES

if TYPE_CHECKING:
    from hpilot.governor.service.partitions import PartitionLinks

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


@pytest.fixture
def links(tmp_path: Path) -> Iterator[PartitionLinks]:
    """A governor's partition links (its ROUTER on loopback): a shell test's, so mark it so."""
    from hpilot.governor.service.partitions import PartitionLinks

    lk = PartitionLinks("127.0.0.1", str(tmp_path), 1.0)
    try:
        yield lk
    finally:
        lk.close(0)
