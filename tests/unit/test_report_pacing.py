"""When a partition manager's reports go up: progress once per report period, an exception and
an empty queue at once (``PartitionRunner.reports_due``, used by ``PartitionManager._flush``).

The governor pays per frame; before this rule a partition that was not busy sent a frame for
every task end, so a governor of 8 partitions running 0.2 s tasks got about one frame per task.
"""

from __future__ import annotations

import time

import pytest
from hpilot.launcher.dryrun import DryRunLauncher
from hpilot.partition.core import PartitionConfig, PartitionCore
from hpilot.partition.messages import (
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    NodeStatus,
    TaskSpec,
    Work,
    is_exception,
)
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import local_resources
from hpilot.partition.runner import PartitionRunner
from hpilot.partition.spec import Execution, Resources, ResourceSize
from hpilot.partition.variables import compile_template

from bench import scale

PERIOD = 0.1


def sweep(job: str, count: int, cores: int = 1) -> TaskSpec:
    return TaskSpec(job=job, execution=Execution(exec=compile_template("/bin/true")),
                    resources=Resources(cores=ResourceSize(exact=cores)), iterative=True, it_count=count)


def runner(cores: int = 2, delay: float = 3600.0) -> PartitionRunner:
    """A partition of ``cores`` whose tasks "run" ``delay`` seconds (a dry-run launcher)."""
    core = PartitionCore(local_resources(f"n0:{cores}"),
                         PartitionConfig(root_wd="/data/run", env=EnvContext(base_env={"PATH": "/usr/bin"})))
    return PartitionRunner(core, DryRunLauncher(delay))


def test_plain_progress_waits_for_the_period_while_work_is_queued() -> None:
    r = runner()
    r.deliver(Work(sweep("s", 10), range(10), 0.0))
    r.step()
    assert r.has_reports and r.core.queued_iterations == 8 and not r.busy
    assert not r.reports_due(0.0, PERIOD)
    assert not r.reports_due(0.099, PERIOD)
    assert r.reports_due(PERIOD, PERIOD)
    r.core.validate()


def test_a_partition_with_nothing_queued_reports_at_once() -> None:
    """Its queue is empty: the governor's refill, and whoever waits on this work, must not wait."""
    r = runner()
    r.deliver(Work(sweep("s", 2), range(2), 0.0))
    r.step()
    assert r.core.queued_iterations == 0
    assert r.reports_due(0.0, PERIOD)


def test_nothing_waiting_is_never_due() -> None:
    r = runner()
    assert not r.has_reports
    assert not r.reports_due(10.0, PERIOD)


def test_an_exception_goes_up_at_once_and_the_next_progress_waits_again() -> None:
    r = runner(delay=0.05)
    r.deliver(Work(sweep("s", 10), range(10), 0.0))
    r.deliver(Work(sweep("big", 1, cores=4), (0,), 0.0))  # can never fit on 2 cores: dropped
    r.step()
    assert r.core.queued_iterations == 8
    assert r.reports_due(0.0, PERIOD)
    taken = r.take_reports()
    assert any(isinstance(m, IterationsDropped) and m.job == "big" for m in taken)
    deadline = time.time() + 10
    while not r.has_reports and time.time() < deadline:  # the first two end (0.05 s), two more start
        r.step()
    assert r.has_reports and r.core.queued_iterations == 6
    assert not r.reports_due(0.0, PERIOD)
    r.core.validate()


@pytest.mark.parametrize(("report", "exception"), [
    (IterationStarted("s", 0, "n0[0]", "/w", 1.0, 1.0), False),
    (IterationFinished("s", 0, 0, 1.0, 2.0, "n0[0]", "/w"), False),
    (IterationFinished("s", 0, 1, 1.0, 2.0, "n0[0]", "/w"), True),
    (IterationFinished("s", 0, 0, 1.0, 2.0, "n0[0]", "/w", reason="wall time"), True),
    (IterationFinished("s", 0, 0, 1.0, 2.0, "n0[0]", "/w", canceled=True), True),
    (IterationFinished("s", 0, 0, 1.0, 2.0, "n0[0]", "/w", lost=True), True),
    (IterationsDropped("s", (0,), "never fits", 1.0), True),
    (NodeStatus("n0", False, "agent died"), True),
])
def test_what_counts_as_an_exception(report: object, exception: bool) -> None:
    assert is_exception(report) is exception  # type: ignore[arg-type]


def test_the_simulation_reports_as_a_partition_manager_does() -> None:
    """Two partitions of 1 s tasks: progress in one frame per period, and the same makespan as
    one flat partition (sending every pass, as before, took 0.020 messages per task)."""
    gov = scale.simulate(32, "governor", "1s", tasks_per_core=2)
    flat = scale.simulate(32, "flat", "1s", tasks_per_core=2)
    assert gov["messages_per_task"] < 0.015, gov
    assert gov["makespan_s"] <= flat["makespan_s"] * 1.01, (gov, flat)
