"""When a partition manager's reports go up: progress once per report period, an exception and
an empty queue at once (``PartitionRunner.reports_due``, used by ``PartitionManager._flush``).

The governor pays per frame; before this rule a partition that was not busy sent a frame for
every task end, so a governor of 8 partitions running 0.2 s tasks got about one frame per task.
"""

from __future__ import annotations

import time

import pytest
from hpilot.governor.core.events import PartitionJoined
from hpilot.governor.core.routing import HORIZON, RATE_WINDOW, Slot
from hpilot.launcher.core import TaskExit
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
from hpilot.partition.runner import REPORT_EVERY, REPORT_MOST, PartitionRunner, report_period, running_low
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


def test_the_partitions_of_one_governor_share_its_report_budget() -> None:
    """Together a governor's partitions send it about 1 / REPORT_EVERY progress frames a second:
    each one reports less often the more they are, and never less than once a REPORT_MOST."""
    assert report_period(0) == report_period(1) == REPORT_EVERY
    assert report_period(8) == pytest.approx(8 * REPORT_EVERY)
    assert report_period(4) < report_period(8) <= REPORT_MOST
    assert report_period(64) == report_period(1024) == REPORT_MOST


def test_a_partition_that_reports_less_often_is_given_work_for_its_period() -> None:
    """What a partition holds lasts until its next report and that report's round trip: a slot
    of 8 partitions' period, measured at the same rate, may hold more than a slot of one's."""
    one = Slot(PartitionJoined("a", (("n1", 64),), report_every=report_period(1)))
    eight = Slot(PartitionJoined("b", (("n2", 64),), report_every=report_period(8)))
    assert one.window == RATE_WINDOW < eight.window  # a rate over as long as it reports
    for s in (one, eight):
        s.measure(0, 0.0)
        s.measure(int(10_000 * s.window), s.window)  # 10,000 iterations a second
    assert one.limit == pytest.approx(10_000 * (REPORT_EVERY + HORIZON), abs=2)
    assert eight.limit == pytest.approx(10_000 * (8 * REPORT_EVERY + HORIZON), abs=2)
    assert eight.limit >= 10_000 * report_period(8)


def test_a_queue_running_low_reports_before_a_long_period_ends() -> None:
    """A period of 0.8 s (8 partitions): plain progress waits for it while the queue lasts, but
    goes after REPORT_EVERY once what is queued would not last until a refill could arrive."""
    long = report_period(8)
    short = runner(cores=2)  # hour-long tasks: 2 start, 1 waits
    short.deliver(Work(sweep("s", 3), range(3), 0.0))
    short.step()
    assert short.core.queued_iterations == 1
    assert not short.reports_due(0.05, long)  # never more often than REPORT_EVERY
    assert short.reports_due(REPORT_EVERY, long)  # 1 queued, 2 started in 0.1 s: gone in 0.05 s
    deep = runner(cores=2)
    deep.deliver(Work(sweep("s", 30), range(30), 0.0))
    deep.step()
    assert deep.core.queued_iterations == 28
    assert not deep.reports_due(REPORT_EVERY, long)  # 28 at 20 a second last 1.4 s
    assert deep.reports_due(long, long)
    deep.take_reports()
    assert not deep.reports_due(REPORT_EVERY, long)  # nothing waiting
    short.core.validate()
    deep.core.validate()


@pytest.mark.parametrize(("queued", "starts", "since", "low"), [
    (10, 100, 0.1, True),  # 1,000 a second: 10 last 0.01 s
    (199, 100, 0.1, True),
    (200, 100, 0.1, False),  # exactly REFILL's worth
    (500, 100, 0.1, False),
    (0, 0, 0.1, False),  # nothing started: no pace to run out at (an empty queue is "drained")
    (5, 1, 0.0, False),
])
def test_running_low(queued: int, starts: int, since: float, low: bool) -> None:
    assert running_low(queued, starts, since) is low


def _end_one(r: PartitionRunner, job: str) -> None:
    """One running task of ``job`` ends (the launcher's event, as PartitionRunner.step feeds it)."""
    task = next(t for t, run in r.core.running.items() if run.spec.job == job)
    r._launcher_events([TaskExit(task, 0, 1.0, 2.0)])


def test_the_end_of_a_job_here_reports_before_a_long_period_ends() -> None:
    """A job whose last iteration in this partition ended may be what another job waits on: its
    end goes after REPORT_EVERY, not after a period of 0.8 s (a 10,000-job DAG over 4 partitions
    took 41 s, not 7 s, without this), while a sweep with iterations still here waits."""
    long = report_period(8)
    sweeping = runner(cores=2)  # hour-long tasks, ended by hand
    sweeping.deliver(Work(sweep("big", 40), range(40), 0.0))
    sweeping.step()
    _end_one(sweeping, "big")
    sweeping.step()
    assert sweeping.core.holds("big") and sweeping.core.queued_iterations == 37
    assert not sweeping.reports_due(REPORT_EVERY, long)
    small = runner(cores=2)
    small.deliver(Work(sweep("one", 1), range(1), 0.0))
    small.deliver(Work(sweep("big", 40), range(40), 0.0))
    small.step()
    _end_one(small, "one")
    small.step()
    assert not small.core.holds("one") and small.core.queued_iterations == 38
    assert not small.reports_due(0.05, long)  # never more often than REPORT_EVERY
    assert small.reports_due(REPORT_EVERY, long)
    small.take_reports()
    _end_one(small, "big")
    small.step()
    assert not small.reports_due(REPORT_EVERY, long)  # "big" still has iterations here
    for r in (sweeping, small):
        r.core.validate()
