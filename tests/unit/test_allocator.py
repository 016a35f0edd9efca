"""Exact core/GPU placement: the rules of manual ch. 7.2 plus whole nodes and nodeCrs."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import pytest
from hpilot.partition.allocator import (
    ONE_CORE,
    Allocation,
    Allocator,
    Request,
    Slot,
    why_never_fits,
)
from hpilot.partition.resources import Node, ResourceSet, local_resources
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)


def nodes(spec: str) -> ResourceSet:
    return local_resources(spec)


def gpu_nodes() -> ResourceSet:
    return local_resources(node_config=[
        {"name": "c", "cores": 4},
        {"name": "g", "cores": 4, "gpu": [2, 5, 7]},
    ])


def cores_of(alloc: Allocation) -> Set[Tuple[str, int]]:
    return {(s.node, c) for s in alloc.slots for c in s.cores}


# ---- one core ----


def test_one_core_fills_node_by_node() -> None:
    a = Allocator(nodes("a:2,b:1"))
    got = [a.allocate(ONE_CORE) for _ in range(3)]
    assert [g.describe() for g in got if g] == ["a[0]", "a[1]", "b[0]"]
    assert a.free_cores == 0
    assert a.used_cores == 3
    assert a.allocate(ONE_CORE) is None
    a.validate()


def test_one_core_equivalent_request_is_one_core() -> None:
    a = Allocator(nodes("2"))
    alloc = a.allocate(Request(cores_min=1, cores_max=1))
    assert alloc is not None
    assert alloc.ncores == 1 and alloc.nnodes == 1
    assert a.free_cores == 1


# ---- numCores ----


def test_exact_cores_span_nodes() -> None:
    a = Allocator(nodes("a:2,b:2,c:2"))
    alloc = a.allocate(Request(cores_min=5, cores_max=5))
    assert alloc is not None
    assert alloc.ncores == 5
    assert alloc.slots == (Slot("a", (0, 1)), Slot("b", (0, 1)), Slot("c", (0,)))
    assert alloc.nodes == ("a", "b", "c")
    assert alloc.describe() == "a[0:1],b[0:1],c[0]"
    assert a.free_cores == 1
    a.validate()


def test_exact_cores_that_do_not_fit_leave_state_unchanged() -> None:
    a = Allocator(nodes("a:2,b:2"))
    first = a.allocate(Request(cores_min=3, cores_max=3))
    assert first is not None
    assert a.allocate(Request(cores_min=2, cores_max=2)) is None
    assert a.free_cores == 1
    last = a.allocate(ONE_CORE)
    assert last is not None and last.slots == (Slot("b", (1,)),)
    a.validate()


def test_min_max_takes_the_most_that_fits() -> None:
    a = Allocator(nodes("a:4,b:4"))
    assert a.allocate(Request(cores_min=3, cores_max=3)) is not None  # 5 free
    alloc = a.allocate(Request(cores_min=2, cores_max=8))
    assert alloc is not None
    assert alloc.ncores == 5
    assert a.free_cores == 0
    a.validate()


def test_min_max_respects_max() -> None:
    a = Allocator(nodes("a:4,b:4"))
    alloc = a.allocate(Request(cores_min=2, cores_max=6))
    assert alloc is not None and alloc.ncores == 6
    assert a.free_cores == 2


def test_min_without_max_takes_everything_free() -> None:
    a = Allocator(nodes("a:4,b:4"))
    assert a.allocate(ONE_CORE) is not None
    alloc = a.allocate(Request(cores_min=2, cores_max=None))
    assert alloc is not None and alloc.ncores == 7
    assert a.free_cores == 0


def test_min_that_does_not_fit_gets_nothing() -> None:
    a = Allocator(nodes("a:4"))
    assert a.allocate(Request(cores_min=3, cores_max=3)) is not None
    assert a.allocate(Request(cores_min=2, cores_max=4)) is None
    assert a.free_cores == 1


# ---- numNodes ----


def test_nodes_with_cores_per_node() -> None:
    a = Allocator(nodes("a:4,b:4,c:4"))
    assert a.allocate(Request(cores_min=3, cores_max=3)) is not None  # a has 1 free
    req = Request(cores_min=2, cores_max=2, nodes_min=2, nodes_max=2)
    alloc = a.allocate(req)
    assert alloc is not None
    assert alloc.slots == (Slot("b", (0, 1)), Slot("c", (0, 1)))
    assert alloc.nnodes == 2 and alloc.ncores == 4
    assert a.free_cores == 5
    again = a.allocate(req)
    assert again is not None and again.slots == (Slot("b", (2, 3)), Slot("c", (2, 3)))
    assert a.allocate(req) is None  # only a has a free core now
    a.validate()


def test_nodes_min_max_takes_as_many_nodes_as_fit() -> None:
    a = Allocator(nodes("a:2,b:2,c:2,d:2"))
    assert a.allocate(Request(cores_min=2, cores_max=2, nodes_min=1, nodes_max=1)) is not None
    alloc = a.allocate(Request(cores_min=2, cores_max=2, nodes_min=2, nodes_max=None))
    assert alloc is not None and alloc.nodes == ("b", "c", "d")
    assert a.free_cores == 0


def test_nodes_alone_are_whole_nodes() -> None:
    a = Allocator(nodes("a:4,b:4,c:2"))
    assert a.allocate(ONE_CORE) is not None  # a is no longer fully free
    req = Request(cores_min=1, cores_max=None, nodes_min=2, nodes_max=2, whole_nodes=True)
    alloc = a.allocate(req)
    assert alloc is not None
    assert alloc.slots == (Slot("b", (0, 1, 2, 3)), Slot("c", (0, 1)))
    assert alloc.ncores == 6
    assert a.free_cores == 3
    # a still has 3 free cores but is not whole: nothing more
    assert a.allocate(Request(cores_min=1, cores_max=None, nodes_min=1, nodes_max=1, whole_nodes=True)) is None
    a.validate()


def test_whole_node_available_again_after_release() -> None:
    a = Allocator(nodes("a:3"))
    one = a.allocate(ONE_CORE)
    assert one is not None
    whole = Request(cores_min=1, cores_max=None, nodes_min=1, nodes_max=1, whole_nodes=True)
    assert a.allocate(whole) is None
    a.release(one)
    alloc = a.allocate(whole)
    assert alloc is not None and alloc.slots == (Slot("a", (0, 1, 2)),)


# ---- nodeCrs ----


def test_gpu_ids_are_handed_out_and_returned() -> None:
    a = Allocator(gpu_nodes())
    req = Request(cores_min=1, cores_max=1, nodes_min=1, nodes_max=1, crs=(("gpu", 2),))
    first = a.allocate(req)
    assert first is not None
    assert first.nodes == ("g",)
    assert first.crs_ids("gpu") == (2, 5)
    assert first.slots[0].crs == (("gpu", (2, 5)),)
    assert a.allocate(req) is None  # one GPU left on g, none on c
    one = a.allocate(Request(cores_min=1, cores_max=1, nodes_min=1, nodes_max=1, crs=(("gpu", 1),)))
    assert one is not None and one.crs_ids("gpu") == (7,)
    a.release(first)
    again = a.allocate(req)
    assert again is not None and again.crs_ids("gpu") == (2, 5)
    a.validate()


def test_crs_without_nodes_runs_on_one_node() -> None:
    a = Allocator(gpu_nodes())
    alloc = a.allocate(Request(cores_min=2, cores_max=None, crs=(("gpu", 1),)))
    assert alloc is not None
    assert alloc.nodes == ("g",)
    assert alloc.ncores == 4
    assert alloc.crs_ids("gpu") == (2,)


def test_allocation_without_crs_has_no_gpu_ids() -> None:
    a = Allocator(gpu_nodes())
    alloc = a.allocate(Request(cores_min=8, cores_max=8))
    assert alloc is not None
    assert alloc.crs_ids("gpu") == ()


# ---- release ----


def test_release_returns_the_exact_cores() -> None:
    a = Allocator(nodes("a:2,b:2"))
    x = a.allocate(ONE_CORE)
    y = a.allocate(Request(cores_min=2, cores_max=2))
    assert x is not None and y is not None
    assert cores_of(x).isdisjoint(cores_of(y))
    a.release(y)
    assert a.free_cores == 3
    a.validate()
    z = a.allocate(Request(cores_min=3, cores_max=3))
    assert z is not None
    assert cores_of(z) == {("a", 1), ("b", 0), ("b", 1)}
    assert a.free_cores == 0
    a.release(x)
    a.release(z)
    assert a.free_cores == 4
    a.validate()


# ---- why_never_fits ----


def test_why_never_fits_none_when_possible() -> None:
    rs = nodes("a:4,b:4")
    assert why_never_fits(ONE_CORE, rs) is None
    assert why_never_fits(Request(cores_min=8, cores_max=8), rs) is None
    assert why_never_fits(Request(cores_min=4, cores_max=4, nodes_min=2, nodes_max=2), rs) is None
    assert why_never_fits(Request(cores_min=2, cores_max=None, nodes_min=1, nodes_max=None), rs) is None


def test_why_never_fits_too_many_cores() -> None:
    msg = why_never_fits(Request(cores_min=9, cores_max=9), nodes("a:4,b:4"))
    assert msg == "needs 9 cores, the allocation has 8"


def test_why_never_fits_min_cores() -> None:
    msg = why_never_fits(Request(cores_min=9, cores_max=None), nodes("a:4,b:4"))
    assert msg is not None and "needs 9 cores" in msg


def test_why_never_fits_cores_per_node() -> None:
    msg = why_never_fits(Request(cores_min=5, cores_max=5, nodes_min=2, nodes_max=2), nodes("a:4,b:8"))
    assert msg == ("needs 2 node(s) with 5 cores each, the allocation has 1 such node(s) "
                   "(2 in all, at most 8 cores each)")


def test_why_never_fits_too_many_nodes() -> None:
    req = Request(cores_min=1, cores_max=None, nodes_min=3, nodes_max=3, whole_nodes=True)
    msg = why_never_fits(req, nodes("a:4,b:4"))
    assert msg is not None
    assert "needs 3 node(s)" in msg and "2 in all" in msg


def test_why_never_fits_gpus() -> None:
    rs = gpu_nodes()
    req = Request(cores_min=1, cores_max=1, nodes_min=1, nodes_max=1, crs=(("gpu", 4),))
    msg = why_never_fits(req, rs)
    assert msg is not None
    assert "1 cores and 4 gpu each" in msg
    assert "has 0 such node(s)" in msg
    req2 = Request(cores_min=1, cores_max=1, nodes_min=2, nodes_max=2, crs=(("gpu", 1),))
    msg2 = why_never_fits(req2, rs)
    assert msg2 is not None and "needs 2 node(s)" in msg2 and "has 1 such node(s)" in msg2
    ok = Request(cores_min=4, cores_max=4, nodes_min=1, nodes_max=1, crs=(("gpu", 3),))
    assert why_never_fits(ok, rs) is None


# ---- random sequences of allocate/release ----


def _check_allocation(req: Request, alloc: Allocation, rs: ResourceSet) -> None:
    """The allocation satisfies the request's rules."""
    by_name: Dict[str, Node] = {n.name: n for n in rs.nodes}
    assert len(set(alloc.nodes)) == alloc.nnodes, "a node twice in one allocation"
    for s in alloc.slots:
        assert set(s.cores) <= set(by_name[s.node].cores)
        assert len(set(s.cores)) == len(s.cores)
    if req.nodes_min is None and not req.crs:
        assert alloc.ncores >= req.cores_min
        if req.cores_max is not None:
            assert alloc.ncores <= req.cores_max
        return
    nmin = req.nodes_min or 1
    nmax = req.nodes_max if req.nodes_min is not None else 1
    assert alloc.nnodes >= nmin
    if nmax is not None:
        assert alloc.nnodes <= nmax
    for s in alloc.slots:
        if req.whole_nodes:
            assert len(s.cores) == by_name[s.node].total_cores
        else:
            assert len(s.cores) >= req.cores_min
            if req.cores_max is not None:
                assert len(s.cores) <= req.cores_max
        got = dict(s.crs)
        for name, count in req.crs:
            assert len(got[name]) == count
            assert set(got[name]) <= set(dict(by_name[s.node].crs)[name])


@st.composite
def requests(draw: st.DrawFn) -> Request:
    kind = draw(st.sampled_from(["one", "cores", "nodes", "whole", "gpu"]))
    if kind == "one":
        return ONE_CORE
    lo = draw(st.integers(1, 6))
    hi: Optional[int] = draw(st.one_of(st.none(), st.integers(lo, 10)))
    if kind == "cores":
        return Request(cores_min=lo, cores_max=hi)
    nlo = draw(st.integers(1, 3))
    nhi: Optional[int] = draw(st.one_of(st.none(), st.integers(nlo, 4)))
    if kind == "whole":
        return Request(cores_min=1, cores_max=None, nodes_min=nlo, nodes_max=nhi, whole_nodes=True)
    if kind == "nodes":
        return Request(cores_min=lo, cores_max=hi, nodes_min=nlo, nodes_max=nhi)
    return Request(cores_min=lo, cores_max=hi, nodes_min=nlo, nodes_max=nhi,
                   crs=(("gpu", draw(st.integers(1, 2))),))


class AllocatorMachine(RuleBasedStateMachine):
    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.rs: ResourceSet = local_resources("1")
        self.alloc = Allocator(self.rs)
        self.out_cores: Set[Tuple[str, int]] = set()
        self.out_gpus: Set[Tuple[str, int]] = set()

    @initialize(shape=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=4))
    def setup(self, shape: List[Tuple[int, int]]) -> None:
        self.rs = local_resources(node_config=[
            {"name": f"n{i}", "cores": [10 * i + c for c in range(cores)], "gpu": gpus}
            for i, (cores, gpus) in enumerate(shape)
        ])
        self.alloc = Allocator(self.rs)

    @rule(target=held, req=requests())
    def allocate(self, req: Request) -> Allocation:
        free_before = self.alloc.free_cores
        got = self.alloc.allocate(req)
        if got is None:
            assert self.alloc.free_cores == free_before, "a failed allocation changed the free count"
            return Allocation(())  # nothing to release
        _check_allocation(req, got, self.rs)
        cores = cores_of(got)
        assert len(cores) == got.ncores
        assert cores.isdisjoint(self.out_cores), f"cores handed out twice: {cores & self.out_cores}"
        gpus = {(s.node, g) for s in got.slots for g in dict(s.crs).get("gpu", ())}
        assert gpus.isdisjoint(self.out_gpus), f"gpus handed out twice: {gpus & self.out_gpus}"
        self.out_cores |= cores
        self.out_gpus |= gpus
        assert self.alloc.free_cores == free_before - got.ncores
        return got

    @rule(got=consumes(held))
    def release(self, got: Allocation) -> None:
        self.alloc.release(got)
        self.out_cores -= cores_of(got)
        self.out_gpus -= {(s.node, g) for s in got.slots for g in dict(s.crs).get("gpu", ())}

    @invariant()
    def consistent(self) -> None:
        self.alloc.validate()
        assert self.alloc.used_cores == len(self.out_cores)
        assert self.alloc.free_cores + self.alloc.used_cores == self.rs.total_cores


AllocatorMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocatorMachine = AllocatorMachine.TestCase


@pytest.mark.parametrize("seed", range(5))
def test_random_allocate_release_plain_loop(seed: int) -> None:
    """The same property without hypothesis: a seeded random walk of 500 steps."""
    import random

    rnd = random.Random(seed)
    rs = local_resources("a:3,b:5,c:2,d:4")
    a = Allocator(rs)
    held: List[Allocation] = []
    out: Set[Tuple[str, int]] = set()
    for _ in range(500):
        if held and rnd.random() < 0.4:
            got = held.pop(rnd.randrange(len(held)))
            a.release(got)
            out -= cores_of(got)
        else:
            lo = rnd.randint(1, 5)
            req = rnd.choice([
                ONE_CORE,
                Request(cores_min=lo, cores_max=rnd.choice([None, lo, lo + 3])),
                Request(cores_min=lo, cores_max=lo, nodes_min=rnd.randint(1, 2), nodes_max=rnd.choice([None, 3])),
                Request(cores_min=1, cores_max=None, nodes_min=1, nodes_max=rnd.randint(1, 2), whole_nodes=True),
            ])
            got_ = a.allocate(req)
            if got_ is not None:
                _check_allocation(req, got_, rs)
                cs = cores_of(got_)
                assert cs.isdisjoint(out)
                out |= cs
                held.append(got_)
        a.validate()
        assert a.used_cores == len(out)
