"""Iteration resource schedulers (manual ch. 12): closed forms against QCG-PilotJob's generators."""

from __future__ import annotations

import math
from typing import List

import pytest
from hpilot.partition.allocator import ONE_CORE, Request
from hpilot.partition.iterplan import (
    PlanError,
    even_share,
    maximum_iters,
    planned_size,
    request_for,
    split_into,
)
from hpilot.partition.resources import ResourceSet, local_resources
from hpilot.partition.spec import IterSchedulerSpec, Resources, ResourceSize
from hypothesis import assume, given, settings
from hypothesis import strategies as st

# ---- the oracle: QCG-PilotJob's generators, step by step ----


def oracle_maximum_iters(pmin: int, iterations: int, avail: int) -> List[int]:
    """Sizes of every iteration, in the order QCG-PilotJob's MaximumIters.generate yields them."""
    out: List[int] = []
    if iterations * pmin <= avail:
        rest = avail
        for i in range(iterations):
            size = math.floor(rest / (iterations - i))
            rest -= size
            out.append(size)
        return out
    rounds = math.ceil(iterations / math.floor(avail / pmin))
    to_schedule = iterations
    while to_schedule > 0:
        for r in range(rounds):
            in_round = math.ceil(to_schedule / (rounds - r))
            round_rest = avail
            for k in range(in_round):
                size = math.floor(round_rest / (in_round - k))
                round_rest -= size
                out.append(size)
            to_schedule -= in_round
    return out


def oracle_split_into(parts: int, avail: int, iterations: int) -> List[int]:
    return [math.floor(avail / parts)] * iterations


def test_oracle_examples() -> None:
    # a sanity check of the oracle itself on hand-computed cases
    assert oracle_maximum_iters(1, 3, 8) == [2, 3, 3]
    assert oracle_maximum_iters(2, 5, 8) == [2, 3, 3, 4, 4]  # 2 rounds: 3 iterations, then 2
    assert oracle_maximum_iters(4, 3, 8) == [4, 4, 8]


# ---- closed forms == oracle ----


@settings(max_examples=600, deadline=None)
@given(iterations=st.integers(1, 300), avail=st.integers(1, 200), pmin=st.integers(1, 8))
def test_maximum_iters_matches_qcg(iterations: int, avail: int, pmin: int) -> None:
    assume(avail >= pmin)  # below that QCG-PilotJob divides by zero
    expected = oracle_maximum_iters(pmin, iterations, avail)
    assert len(expected) == iterations
    got = [maximum_iters(pmin, iterations, avail, i) for i in range(iterations)]
    assert got == expected


@pytest.mark.parametrize(
    ("pmin", "avail"),
    [(p, a) for p in (1, 2, 3, 8) for a in (1, 2, 7, 8, 9, 64, 199, 200) if a >= p],  # a < p: QCG divides by 0
)
def test_maximum_iters_matches_qcg_exhaustive_iterations(pmin: int, avail: int) -> None:
    for iterations in range(1, 301):
        expected = oracle_maximum_iters(pmin, iterations, avail)
        got = [maximum_iters(pmin, iterations, avail, i) for i in range(iterations)]
        assert got == expected, f"iterations={iterations}"


@settings(max_examples=300, deadline=None)
@given(iterations=st.integers(1, 300), avail=st.integers(1, 200), parts=st.integers(1, 300))
def test_split_into_matches_qcg(iterations: int, avail: int, parts: int) -> None:
    expected = oracle_split_into(parts, avail, iterations)
    assert [split_into(parts, avail) for _ in range(iterations)] == expected


@given(iterations=st.integers(1, 300), avail=st.integers(1, 200), pmin=st.integers(1, 8))
def test_maximum_iters_never_below_min_nor_above_avail(iterations: int, avail: int, pmin: int) -> None:
    assume(avail >= pmin)
    for i in range(iterations):
        size = maximum_iters(pmin, iterations, avail, i)
        assert pmin <= size <= avail


@given(total=st.integers(0, 500), parts=st.integers(1, 50))
def test_even_share_sums_to_total(total: int, parts: int) -> None:
    shares = [even_share(total, parts, k) for k in range(parts)]
    assert sum(shares) == total
    assert shares == sorted(shares)
    assert max(shares) - min(shares) <= 1


# ---- planned_size ----


def test_planned_size_without_scheduler_is_none() -> None:
    assert planned_size(ResourceSize(min=2), 10, 0, 8) is None


def test_planned_size_split_into_default_parts_is_iterations() -> None:
    size = ResourceSize(scheduler=IterSchedulerSpec("split-into"))
    assert planned_size(size, 4, 0, 10) == 2
    size = ResourceSize(scheduler=IterSchedulerSpec("split-into", (("parts", 3),)))
    assert planned_size(size, 4, 3, 10) == 3


def test_planned_size_split_into_zero_is_an_error() -> None:
    size = ResourceSize(scheduler=IterSchedulerSpec("split-into", (("parts", 9),)))
    with pytest.raises(PlanError, match="split-into 9 parts of 8"):
        planned_size(size, 2, 0, 8)


def test_planned_size_maximum_iters_uses_min() -> None:
    size = ResourceSize(min=2, scheduler=IterSchedulerSpec("maximum-iters"))
    assert [planned_size(size, 5, i, 8) for i in range(5)] == oracle_maximum_iters(2, 5, 8)


# ---- request_for ----


RS: ResourceSet = local_resources("a:4,b:4,c:2")  # 10 cores, 3 nodes, at most 4 per node


def test_request_default_is_one_core() -> None:
    assert request_for(Resources(), RS) is ONE_CORE


def test_request_num_cores_exact() -> None:
    assert request_for(Resources(cores=ResourceSize(exact=4)), RS) == Request(cores_min=4, cores_max=4)


def test_request_num_cores_min_max() -> None:
    assert request_for(Resources(cores=ResourceSize(min=2, max=6)), RS) == Request(cores_min=2, cores_max=6)
    assert request_for(Resources(cores=ResourceSize(min=2)), RS) == Request(cores_min=2, cores_max=None)


def test_request_num_nodes_alone_is_whole_nodes() -> None:
    req = request_for(Resources(nodes=ResourceSize(exact=2)), RS)
    assert req == Request(cores_min=1, cores_max=None, nodes_min=2, nodes_max=2, whole_nodes=True)


def test_request_num_nodes_with_cores_is_per_node() -> None:
    req = request_for(Resources(cores=ResourceSize(exact=3), nodes=ResourceSize(min=1, max=2)), RS)
    assert req == Request(cores_min=3, cores_max=3, nodes_min=1, nodes_max=2)
    assert not req.whole_nodes
    assert req.min_total_cores == 3


def test_request_crs_without_nodes_is_one_node() -> None:
    req = request_for(Resources(cores=ResourceSize(exact=2), crs=(("gpu", 1),)), RS)
    assert req == Request(cores_min=2, cores_max=2, nodes_min=1, nodes_max=1, crs=(("gpu", 1),))
    only_gpu = request_for(Resources(crs=(("gpu", 1),)), RS)
    assert only_gpu.crs == (("gpu", 1),) and only_gpu.nodes_min == 1 and only_gpu.nodes_max == 1


def test_request_maximum_iters_on_num_cores() -> None:
    res = Resources(cores=ResourceSize(min=2, scheduler=IterSchedulerSpec("maximum-iters")))
    reqs = [request_for(res, RS, iterations=3, index=i) for i in range(3)]
    sizes = oracle_maximum_iters(2, 3, RS.total_cores)  # [3, 3, 4]
    assert [r.cores_min for r in reqs] == sizes
    assert [r.cores_max for r in reqs] == sizes
    assert all(r.nodes_min is None for r in reqs)


def test_request_maximum_iters_more_iterations_than_fit() -> None:
    res = Resources(cores=ResourceSize(min=4, scheduler=IterSchedulerSpec("maximum-iters")))
    sizes = [request_for(res, RS, iterations=5, index=i).cores_min for i in range(5)]
    assert sizes == oracle_maximum_iters(4, 5, 10)


def test_request_split_into_on_num_cores() -> None:
    res = Resources(cores=ResourceSize(scheduler=IterSchedulerSpec("split-into", (("parts", 4),))))
    req = request_for(res, RS, iterations=8, index=5)
    assert req == Request(cores_min=2, cores_max=2)


def test_request_scheduler_on_num_nodes_uses_the_node_count() -> None:
    res = Resources(nodes=ResourceSize(scheduler=IterSchedulerSpec("split-into")))
    req = request_for(res, RS, iterations=3, index=0)
    assert (req.nodes_min, req.nodes_max, req.whole_nodes) == (1, 1, True)


def test_request_scheduler_with_nodes_uses_cores_of_one_node() -> None:
    res = Resources(cores=ResourceSize(scheduler=IterSchedulerSpec("split-into", (("parts", 2),))),
                    nodes=ResourceSize(exact=2))
    req = request_for(res, RS, iterations=1, index=0)
    assert req == Request(cores_min=2, cores_max=2, nodes_min=2, nodes_max=2)
