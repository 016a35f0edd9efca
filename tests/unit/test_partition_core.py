"""The partition's pure core fed events: FIFO + backfill, min/max, failures, cancel, launch requests."""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar, cast

import pytest
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.partition.core import (
    Action,
    KillTask,
    PartitionConfig,
    PartitionCore,
    Schedule,
    TaskEnded,
    TaskStarted,
)
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Shutdown,
    TaskSpec,
    Work,
)
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import Node, ResourceSet, local_resources
from hpilot.partition.spec import Execution, IterSchedulerSpec, Resources, ResourceSize
from hpilot.partition.variables import Template, compile_template

ROOT = "/data/run"
T = TypeVar("T")


def t(text: str) -> Template:
    return compile_template(text)


def size(exact: Optional[int] = None, min: Optional[int] = None, max: Optional[int] = None,
         sched: Optional[str] = None, **params: Any) -> ResourceSize:
    scheduler = IterSchedulerSpec(sched, tuple(params.items())) if sched else None
    return ResourceSize(exact=exact, min=min, max=max, scheduler=scheduler)


def spec(job: str, *, execution: Optional[Execution] = None, iterative: bool = False, it_start: int = 0,
         it_count: int = 1, it_values: Optional[Tuple[str, ...]] = None, cores: Optional[ResourceSize] = None,
         nodes: Optional[ResourceSize] = None, crs: Tuple[Tuple[str, int], ...] = (),
         wt: Optional[float] = None) -> TaskSpec:
    return TaskSpec(
        job=job,
        execution=execution or Execution(exec=t("/bin/true")),
        resources=Resources(cores=cores, nodes=nodes, crs=crs, wt=wt),
        iterative=iterative,
        it_start=it_start,
        it_count=it_count,
        it_values=it_values,
    )


def iterative(job: str, count: int, start: int = 0, **kw: Any) -> Tuple[TaskSpec, range]:
    return spec(job, iterative=True, it_start=start, it_count=count, **kw), range(start, start + count)


class Driver:
    """Feeds events and checks the core's invariants after each one."""

    def __init__(self, rs: ResourceSet, binding: bool = False, envschema: str = "auto",
                 uniq_prefix: str = "") -> None:
        cfg = PartitionConfig(root_wd=ROOT, env=EnvContext(base_env={"PATH": "/usr/bin"}, envschema=envschema,
                                                           binding=binding), uniq_prefix=uniq_prefix)
        self.core = PartitionCore(rs, cfg)
        self.now = 0.0

    def feed(self, ev: Any) -> List[Action]:
        out = self.core.handle(ev)
        self.core.validate()
        return out

    def work(self, s: TaskSpec, its: Sequence[int]) -> List[Action]:
        return self.feed(Work(s, its, self.now))

    def schedule(self) -> List[LaunchRequest]:
        out = self.feed(Schedule(self.now))
        reqs = of_type(out, LaunchRequest)
        assert len(reqs) == len(out), out
        return reqs

    def end(self, task_id: str, code: int = 0, reason: Optional[str] = None) -> IterationFinished:
        self.now += 1.0
        out = self.feed(TaskEnded(TaskExit(task_id, code, self.now - 0.5, self.now, reason, 1234)))
        assert len(out) == 1 and isinstance(out[0], IterationFinished), out
        return out[0]


def ids(reqs: Sequence[LaunchRequest]) -> List[str]:
    return [r.task_id for r in reqs]


def of_type(actions: Sequence[Action], cls: Type[T]) -> List[T]:
    return [a for a in actions if isinstance(a, cls)]


@pytest.fixture
def four() -> Iterator[Driver]:
    d = Driver(local_resources("n0:4"))
    yield d
    d.core.validate()


# ---- FIFO ----


def test_fifo_order() -> None:
    d = Driver(local_resources("2"))
    a, a_its = iterative("A", 3)
    assert d.work(a, a_its) == []
    assert d.work(spec("B"), [0]) == []
    assert d.core.queued_iterations == 4
    assert ids(d.schedule()) == ["A:0", "A:1"]
    assert d.schedule() == []  # nothing free
    fin = d.end("A:0")
    assert (fin.job, fin.iteration, fin.exit_code, fin.canceled, fin.reason) == ("A", 0, 0, False, None)
    assert ids(d.schedule()) == ["A:2"]
    d.end("A:1")
    assert ids(d.schedule()) == ["B"]
    d.end("A:2")
    d.end("B")
    assert d.schedule() == []
    assert d.core.queued_iterations == 0
    assert d.core.running == {}
    assert d.core.allocator.free_cores == 2


def test_fifo_order_when_everything_fits(four: Driver) -> None:
    a, a_its = iterative("A", 2)
    four.work(a, a_its)
    four.work(spec("B"), [0])
    four.work(spec("C"), [0])
    four.work(spec("D"), [0])
    assert ids(four.schedule()) == ["A:0", "A:1", "B", "C"]
    four.end("B")
    assert ids(four.schedule()) == ["D"]


def test_scattered_iterations_keep_their_order(four: Driver) -> None:
    s = spec("S", iterative=True, it_start=0, it_count=10)
    four.work(s, (7, 2, 5))
    assert ids(four.schedule()) == ["S:7", "S:2", "S:5"]


def test_empty_work_is_ignored(four: Driver) -> None:
    assert four.work(spec("E"), range(0)) == []
    assert four.core.queue == []


# ---- backfill and min/max ----


def test_backfill_small_work_passes_a_blocked_head(four: Driver) -> None:
    x, x_its = iterative("X", 2)
    four.work(x, x_its)
    assert ids(four.schedule()) == ["X:0", "X:1"]  # 2 of 4 free
    four.work(spec("BIG", cores=size(exact=4)), [0])
    small, s_its = iterative("SMALL", 2)
    four.work(small, s_its)
    assert ids(four.schedule()) == ["SMALL:0", "SMALL:1"]
    four.end("X:0")
    four.end("X:1")
    assert four.schedule() == []  # BIG still needs all 4
    four.end("SMALL:0")
    assert four.schedule() == []
    four.end("SMALL:1")
    got = four.schedule()
    assert ids(got) == ["BIG"]
    assert got[0].env is not None and got[0].env["QCG_PM_NPROCS"] == "4"


def test_min_max_gets_the_most_free(four: Driver) -> None:
    four.work(spec("ONE"), [0])
    assert ids(four.schedule()) == ["ONE"]
    ex = Execution(exec=t("/bin/echo"), args=(t("${ncores}"),))
    four.work(spec("MM", execution=ex, cores=size(min=2, max=8)), [0])
    got = four.schedule()
    assert ids(got) == ["MM"]
    assert got[0].argv == ("/bin/echo", "3")
    assert got[0].env is not None and got[0].env["QCG_PM_NPROCS"] == "3"
    assert four.core.allocator.free_cores == 0


def test_min_max_waits_for_its_min(four: Driver) -> None:
    three, _ = iterative("T", 3)
    four.work(three, range(3))
    four.schedule()
    four.work(spec("MM", cores=size(min=2)), [0])
    assert four.schedule() == []  # 1 free, min is 2
    four.end("T:0")
    got = four.schedule()
    assert ids(got) == ["MM"]
    assert got[0].env is not None and got[0].env["QCG_PM_NPROCS"] == "2"


def test_min_max_respects_max(four: Driver) -> None:
    four.work(spec("MM", cores=size(min=1, max=3)), [0])
    got = four.schedule()
    assert got[0].env is not None and got[0].env["QCG_PM_NPROCS"] == "3"
    assert four.core.allocator.free_cores == 1


def test_iteration_plan_maximum_iters(four: Driver) -> None:
    s, its = iterative("P", 6, cores=size(min=1, sched="maximum-iters"))
    four.work(s, its)
    got = four.schedule()
    # 6 iterations of at least 1 core on 4 cores: 2 rounds of 3 iterations, sizes 1,1,2
    assert ids(got) == ["P:0", "P:1", "P:2"]
    assert [r.env["QCG_PM_NPROCS"] for r in got if r.env] == ["1", "1", "2"]
    for tid in ids(got):
        four.end(tid)
    got = four.schedule()
    assert [r.env["QCG_PM_NPROCS"] for r in got if r.env] == ["1", "1", "2"]


def test_iteration_plan_split_into(four: Driver) -> None:
    s, its = iterative("P", 2, cores=size(sched="split-into"))
    four.work(s, its)
    got = four.schedule()
    assert [r.env["QCG_PM_NPROCS"] for r in got if r.env] == ["2", "2"]


def test_num_nodes_alone_gets_whole_nodes() -> None:
    d = Driver(local_resources("a:2,b:3,c:2"))
    d.work(spec("ONE"), [0])
    d.schedule()  # a is no longer whole
    ex = Execution(exec=t("/bin/echo"), args=(t("${nnodes} ${ncores} ${nlist}"),))
    d.work(spec("N", execution=ex, nodes=size(exact=2)), [0])
    got = d.schedule()
    assert got[0].argv == ("/bin/echo", "2 5 b,c")


# ---- impossible work ----


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"cores": size(exact=5)}, ["5 cores", "has 4"]),
        ({"cores": size(min=5, max=8)}, ["5 cores"]),
        ({"nodes": size(exact=3)}, ["3 node(s)"]),
        ({"cores": size(exact=3), "nodes": size(exact=1)}, ["1 node(s) with 3 cores"]),
        ({"crs": (("gpu", 1),)}, ["1 gpu"]),
        ({"cores": size(sched="split-into", parts=5)}, ["split-into"]),
    ],
)
def test_impossible_work_is_dropped_with_the_reason(kw: Any, words: List[str]) -> None:
    d = Driver(local_resources("a:2,b:2"))
    s, its = iterative("IMP", 3, **kw)
    out = d.work(s, its)
    assert len(out) == 1 and isinstance(out[0], IterationsDropped), out
    drop = out[0]
    assert drop.job == "IMP"
    assert list(drop.iterations) == [0, 1, 2]
    assert drop.canceled is False
    for w in words:
        assert w in drop.reason, f"{w!r} not in {drop.reason!r}"
    assert d.core.queue == []
    assert d.schedule() == []


def test_maximum_iters_min_above_the_partition_is_impossible() -> None:
    """numCores min 4 with maximum-iters cannot run on 2 cores: FAILED, not run on 2 cores."""
    d = Driver(local_resources("a:2"))
    s, its = iterative("IMP", 2, cores=size(min=4, sched="maximum-iters"))
    out = d.work(s, its) + d.schedule()
    drops = of_type(out, IterationsDropped)
    assert not of_type(out, LaunchRequest), "iterations started below their minimum of 4 cores"
    assert len(drops) == 1 and "4 cores" in drops[0].reason


def test_unavailable_model_is_dropped(four: Driver) -> None:
    out = four.work(spec("M", execution=Execution(exec=t("x"), model="openmpi")), [0])
    assert len(out) == 1 and isinstance(out[0], IterationsDropped)
    assert "openmpi" in out[0].reason and "default" in out[0].reason
    assert not out[0].canceled


# ---- cancel and shutdown ----


def test_cancel_queued_and_running() -> None:
    d = Driver(local_resources("1"))
    a, a_its = iterative("A", 5)
    d.work(a, a_its)
    d.work(spec("B"), [0])
    assert ids(d.schedule()) == ["A:0"]
    d.now = 3.0
    out = d.feed(CancelJob("A", "canceled by user", 3.0))
    drops = of_type(out, IterationsDropped)
    kills = of_type(out, KillTask)
    assert len(out) == 2
    assert len(drops) == 1
    assert (drops[0].job, list(drops[0].iterations), drops[0].reason, drops[0].when, drops[0].canceled) == (
        "A", [1, 2, 3, 4], "canceled by user", 3.0, True)
    assert kills == [KillTask("A:0", "canceled by user")]
    assert d.core.queued_iterations == 1  # B
    # a second cancel does not kill again nor drop anything
    assert d.feed(CancelJob("A", "again", 3.5)) == []
    assert d.schedule() == []  # A:0 still holds the core
    fin = d.end("A:0", code=143, reason="canceled by user")
    assert fin.canceled is True
    assert (fin.job, fin.iteration, fin.exit_code, fin.reason) == ("A", 0, 143, "canceled by user")
    assert not fin.ok
    assert ids(d.schedule()) == ["B"]


def test_cancel_other_job_leaves_work_alone(four: Driver) -> None:
    a, a_its = iterative("A", 6)
    four.work(a, a_its)
    four.schedule()
    assert four.feed(CancelJob("Z", "x", 1.0)) == []
    assert four.core.queued_iterations == 2
    assert len(four.core.running) == 4
    fin = four.end("A:0")
    assert fin.canceled is False


def test_cancel_only_queued() -> None:
    d = Driver(local_resources("1"))
    d.work(spec("R"), [0])
    d.schedule()
    d.work(spec("Q"), [0])
    out = d.feed(CancelJob("Q", "bye", 2.0))
    assert len(out) == 1 and isinstance(out[0], IterationsDropped), out
    assert (out[0].job, list(out[0].iterations), out[0].reason, out[0].when, out[0].canceled) == (
        "Q", [0], "bye", 2.0, True)
    d.end("R")
    assert d.schedule() == []


def test_shutdown_cancels_everything_and_refuses_work() -> None:
    d = Driver(local_resources("2"))
    a, a_its = iterative("A", 3)
    d.work(a, a_its)
    d.work(spec("B"), [0])
    d.schedule()
    out = d.feed(Shutdown("service stops", 5.0))
    assert sorted(k.task_id for k in of_type(out, KillTask)) == ["A:0", "A:1"]
    drops = of_type(out, IterationsDropped)
    assert {(x.job, tuple(x.iterations)) for x in drops} == {("A", (2,)), ("B", (0,))}
    assert all(x.canceled and x.reason == "service stops" for x in drops)
    late = d.work(spec("C"), [0])
    assert len(late) == 1 and isinstance(late[0], IterationsDropped) and late[0].canceled
    assert d.schedule() == []
    assert d.end("A:0", 143, "service stops").canceled
    assert d.end("A:1", 143, "service stops").canceled


# ---- started / finished reports ----


def test_task_started_and_finished_reports() -> None:
    d = Driver(local_resources("a:2,b:2"))
    d.now = 10.0
    s = spec("J", cores=size(exact=3), execution=Execution(exec=t("/bin/true"), wd=t("w")))
    d.work(s, [0])
    d.schedule()
    out = d.feed(TaskStarted("J", 999, 10.5))
    assert out == [IterationStarted("J", 0, "a[0:1],b[0]", os.path.join(ROOT, "w"), 10.0, 10.5, 3, 999)]
    assert d.feed(TaskStarted("nope", 1, 11.0)) == []
    fin = d.end("J", code=2)
    assert fin == IterationFinished("J", 0, 2, 10.5, 11.0, "a[0:1],b[0]", os.path.join(ROOT, "w"), 3, None, False)
    assert d.feed(TaskEnded(TaskExit("J", 0, 1.0, 2.0))) == []  # already ended


# ---- launch requests ----


def test_launch_request_exec_and_variables() -> None:
    d = Driver(local_resources("a:2,b:2"))
    ex = Execution(exec=t("${root_wd}/bin/app"),
                   args=(t("${it}"), t("${ncores}"), t("${nnodes}"), t("${nlist}"), t("${root_wd}"),
                         t("${jname}"), t("u=${uniq}")))
    s, its = iterative("job", 2, start=10, cores=size(exact=3), execution=ex)
    d.work(s, its)
    first = d.schedule()
    assert ids(first) == ["job:10"]
    r = first[0]
    assert r.argv[:7] == (ROOT + "/bin/app", "10", "3", "2", "a,b", ROOT, "job")  # ${jname}: the job's name
    assert r.argv[7].startswith("u=") and len(r.argv[7]) > 2
    assert r.env is not None
    assert r.env["QCG_PM_STEP_ID"] == r.argv[7][2:]
    assert r.env["PATH"] == "/usr/bin"
    assert r.wd == ROOT
    assert r.stdin is None and r.stdout is None and r.stderr is None
    assert r.walltime is None
    assert r.cpus is None


def test_launch_request_it_values() -> None:
    d = Driver(local_resources("4"))
    s = spec("v", iterative=True, it_count=2, it_values=("alpha", "beta"),
             execution=Execution(exec=t("/bin/echo"), args=(t("${it}"), t("${itval}"))))
    d.work(s, range(2))
    # as QCG-PilotJob: ${it} the index, ${itval} the value
    assert [r.argv for r in d.schedule()] == [("/bin/echo", "0", "alpha"), ("/bin/echo", "1", "beta")]


def test_launch_request_script() -> None:
    d = Driver(local_resources("4"))
    script = compile_template("echo ${it} ${jname} $HOME\nexit 0", allow_unknown=True)
    s, its = iterative("sc", 1, execution=Execution(script=script))
    d.work(s, its)
    (r,) = d.schedule()
    assert r.argv == ("/bin/bash", "-c", "echo 0 sc $HOME\nexit 0")


def test_uniq_is_unique() -> None:
    d = Driver(local_resources("8"), uniq_prefix="p-")
    s, its = iterative("u", 8, execution=Execution(exec=t("/bin/echo"), args=(t("${uniq}"),)))
    d.work(s, its)
    d.work(spec("w", execution=Execution(exec=t("/bin/echo"), args=(t("${uniq}"),))), [0])
    got = [r.argv[1] for r in d.schedule()]
    assert len(got) == 8
    assert len(set(got)) == 8
    assert all(u.startswith("p-") for u in got)
    for i in range(8):
        d.end(f"u:{i}")
    (last,) = d.schedule()
    assert last.argv[1] not in got


def test_wd_and_files_relative_to_root_and_wd() -> None:
    d = Driver(local_resources("4"))
    ex = Execution(exec=t("/bin/true"), wd=t("out/${it}"), stdin=t("in.txt"), stdout=t("o.${it}.txt"),
                   stderr=t("/abs/err.${it}"))
    s, its = iterative("f", 1, start=3, execution=ex)
    d.work(s, its)
    (r,) = d.schedule()
    assert r.wd == os.path.join(ROOT, "out", "3")
    assert r.stdin == os.path.join(ROOT, "out", "3", "in.txt")
    assert r.stdout == os.path.join(ROOT, "out", "3", "o.3.txt")
    assert r.stderr == "/abs/err.3"
    fin = d.end("f:3")
    assert fin.wd == os.path.join(ROOT, "out", "3")


def test_absolute_wd() -> None:
    d = Driver(local_resources("4"))
    d.work(spec("a", execution=Execution(exec=t("/bin/true"), wd=t("/scratch/x"), stdout=t("o"))), [0])
    (r,) = d.schedule()
    assert (r.wd, r.stdout) == ("/scratch/x", "/scratch/x/o")


def test_walltime_passed() -> None:
    d = Driver(local_resources("4"))
    d.work(spec("w", wt=12.5), [0])
    (r,) = d.schedule()
    assert r.walltime == 12.5


def test_cpus_only_when_binding() -> None:
    rs = ResourceSet((Node("h", (2, 3, 5, 7)),), binding=True, source="local")
    bound = Driver(rs, binding=True)
    bound.work(spec("b", cores=size(exact=2)), [0])
    bound.work(spec("c"), [0])
    r1, r2 = bound.schedule()
    assert r1.cpus == (2, 3)
    assert r2.cpus == (5,)
    assert r1.env is not None and r1.env["QCG_PM_CPU_SET"] == "2,3"
    free = Driver(rs, binding=False)
    free.work(spec("b", cores=size(exact=2)), [0])
    (r,) = free.schedule()
    assert r.cpus is None
    assert r.env is not None and "QCG_PM_CPU_SET" not in r.env


def test_gpus_in_launch() -> None:
    d = Driver(local_resources(node_config=[{"name": "c", "cores": 2}, {"name": "g", "cores": 2, "gpu": [3, 4]}]))
    d.work(spec("gp", cores=size(exact=1), crs=(("gpu", 2),)), [0])
    d.work(spec("gq", cores=size(exact=1), crs=(("gpu", 1),)), [0])
    (r,) = d.schedule()  # gq waits: both GPUs are taken
    assert r.task_id == "gp"
    assert r.env is not None and r.env["CUDA_VISIBLE_DEVICES"] == "3,4"
    assert r.env["QCG_PM_NODELIST"] == "g"
    d.end("gp")
    (q,) = d.schedule()
    assert q.env is not None and q.env["CUDA_VISIBLE_DEVICES"] == "3"


def test_slurm_envschema_in_launch() -> None:
    d = Driver(local_resources("a:2,b:2"), envschema="slurm")
    d.work(spec("s", cores=size(exact=3)), [0])
    (r,) = d.schedule()
    assert r.env is not None
    assert r.env["SLURM_TASKS_PER_NODE"] == "a(x2),b"
    assert r.env["SLURM_NTASKS"] == "3"


def test_unknown_event_is_a_type_error(four: Driver) -> None:
    with pytest.raises(TypeError):
        four.core.handle(cast(Any, object()))


# ---- cores set aside for a run that spans partitions ----


def _reserve_events():
    from hpilot.partition.allocator import Request, Slot
    from hpilot.partition.messages import Release, Reserve, Reserved, RunReserved

    return Request, Slot, Release, Reserve, Reserved, RunReserved


def test_a_reservation_waits_for_running_work_and_holds_back_new_work(four: Driver) -> None:
    Request, Slot, Release, Reserve, Reserved, RunReserved = _reserve_events()
    a, a_its = iterative("A", 6)
    four.work(a, a_its)
    assert ids(four.schedule()) == ["A:0", "A:1", "A:2", "A:3"]
    assert four.feed(Reserve("big", 0, Request(cores_min=3, cores_max=3), four.now)) == []
    four.end("A:0")
    out = four.feed(Schedule(four.now))
    assert out == [], "one core free: not enough for the reservation, and A:4 must not take it"
    four.end("A:1")
    four.end("A:2")
    (got,) = four.feed(Schedule(four.now))
    assert isinstance(got, Reserved) and (got.job, got.iteration) == ("big", 0)
    assert sum(len(s.cores) for s in got.slots) == 3
    assert four.core.allocator.free_cores == 0, "3 set aside, 1 still running"
    four.end("A:3")
    assert ids(four.schedule()) == ["A:4"], "once set aside, other work goes on in what is left"
    foreign = (Slot("n9", (0, 1, 2)),)
    (launch,) = four.feed(RunReserved(spec("big"), 0, foreign, four.now))
    assert isinstance(launch, LaunchRequest) and launch.task_id == "big"
    assert launch.env is not None and launch.env["QCG_PM_NODELIST"].split(",")[-1] == "n9"
    started = four.feed(TaskStarted("big", 77, four.now))
    assert isinstance(started[0], IterationStarted) and started[0].cores == 3
    assert started[0].allocation.endswith("n9[0:1:2]")
    fin = four.end("big")
    assert fin.allocation.endswith("n9[0:1:2]") and four.core.allocator.free_cores == 3


def test_a_released_reservation_frees_its_cores_and_a_released_run_is_killed(four: Driver) -> None:
    Request, Slot, Release, Reserve, Reserved, RunReserved = _reserve_events()
    four.feed(Reserve("big", 0, Request(cores_min=4, cores_max=4), four.now))
    (got,) = four.feed(Schedule(four.now))
    assert isinstance(got, Reserved) and four.core.allocator.free_cores == 0
    assert four.feed(Release("big", 0, "the run ended", four.now)) == []
    assert four.core.allocator.free_cores == 4 and four.core.reservations == {}
    four.feed(Reserve("big", 1, Request(cores_min=2, cores_max=2), four.now))
    four.feed(Schedule(four.now))
    four.feed(RunReserved(spec("big", iterative=True, it_count=2), 1, (), four.now))
    (kill,) = four.feed(Release("big", 1, "partition p2 lost", four.now))
    assert isinstance(kill, KillTask) and kill.task_id == "big:1" and kill.reason == "partition p2 lost"
    fin = four.end("big:1", code=-15, reason="partition p2 lost")
    assert not fin.canceled, "killed because the run was abandoned, not canceled by a user"


def test_a_reservation_that_can_never_fit_is_refused_at_once(four: Driver) -> None:
    Request, Slot, Release, Reserve, Reserved, RunReserved = _reserve_events()
    (drop,) = four.feed(Reserve("big", 0, Request(cores_min=5, cores_max=5), four.now))
    assert isinstance(drop, IterationsDropped) and tuple(drop.iterations) == (0,) and not drop.canceled
    (drop,) = four.feed(RunReserved(spec("other"), 0, (), four.now))
    assert isinstance(drop, IterationsDropped) and "reserved cores are gone" in drop.reason


# ---- the allocation's end (--stop-before): a task that cannot end before it waits for the next ----


def test_a_task_whose_wall_time_passes_the_deadline_is_not_started() -> None:
    import dataclasses

    d = Driver(local_resources("4"))
    d.core.cfg = dataclasses.replace(d.core.cfg, deadline=100.0)
    d.now = 50.0
    long, long_its = iterative("long", 2, wt=60.0)
    d.work(long, long_its)
    d.work(spec("short", wt=30.0), [0])
    d.work(spec("unknown"), [0])  # no wall time: it may end in time, it starts
    assert ids(d.schedule()) == ["short", "unknown"]
    assert d.core.held_back == 2 and d.core.queued_iterations == 2
    d.now = 39.0  # earlier (a fresh allocation's clock): it fits
    assert ids(d.schedule()) == ["long:0", "long:1"]
    assert d.core.held_back == 0


def test_allocation_window_from_scontrol() -> None:
    import time

    from hpilot.partition.slurm import allocation_window

    text = ("JobId=455 JobName=x UserId=root(0) JobState=RUNNING RunTime=00:00:00 TimeLimit=00:02:00 "
            "SubmitTime=2026-11-29T18:00:21 StartTime=2026-11-29T18:00:21 EndTime=2026-11-29T18:02:21 Partition=d")
    start, end = allocation_window(text) or (0.0, 0.0)
    assert end - start == 120.0
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(end)) == "2026-11-29T18:02:21"
    assert allocation_window("JobId=1 StartTime=2026-11-29T18:00:21 EndTime=Unknown") is None


# ---- a node where tasks cannot start (partition/health.py) ----


def _unstarted(d: Driver, task_id: str) -> List[Action]:
    d.now += 1.0
    return d.feed(TaskEnded(TaskExit(task_id, 127, d.now, d.now, "could not start: No such file or directory: "
                                     "'/scratch/x'", unstarted=True)))


def test_a_node_where_tasks_cannot_start_goes_out_of_service_and_they_run_elsewhere() -> None:
    from hpilot.partition.messages import NodeStatus

    d = Driver(local_resources("a:1,b:1"))
    s, its = iterative("j", 12)
    d.work(s, its)
    for _ in range(3):
        reqs = {r.node: r.task_id for r in d.schedule()}
        d.feed(TaskStarted(reqs["a"], 10, d.now))  # starts on a ...
        d.end(reqs["a"])
        out = _unstarted(d, reqs["b"])  # ... never on b
        fin = of_type(out, IterationFinished)[0]
        assert fin.lost, "it starts elsewhere: b's doing, the governor runs it again"
    status = of_type(out, NodeStatus)
    assert status and not status[0].up and "3 tasks in a row could not start here" in status[0].reason
    assert d.core.down == {"b": status[0].reason}
    assert {r.node for r in d.schedule()} == {"a"}


def test_a_task_that_starts_nowhere_is_its_own_failure() -> None:
    d = Driver(local_resources("a:1,b:1"))
    s, its = iterative("j", 6)
    d.work(s, its)
    for _ in range(3):
        for r in d.schedule():
            fin = of_type(_unstarted(d, r.task_id), IterationFinished)[0]
            assert not fin.lost
    assert d.core.down == {}
