"""Where a partition's nodes and cores come from: --nodes specs, TOML nodes, this machine."""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, List

import pytest
from hpilot.partition.resources import (
    Node,
    ResourceError,
    ResourceSet,
    describe,
    local_resources,
    parse_nodes_spec,
)

# ---- parse_nodes_spec ----


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("4", [("n0", 4)]),
        ("n1:2", [("n1", 2)]),
        ("4,2,2", [("n0", 4), ("n1", 2), ("n2", 2)]),
        ("n1:4, n2:4", [("n1", 4), ("n2", 4)]),
        ("  n1:4 ,  n2:3  ", [("n1", 4), ("n2", 3)]),
        ("node-a:1,node-b:16", [("node-a", 1), ("node-b", 16)]),
    ],
)
def test_parse_nodes_spec(spec: str, expected: List[tuple]) -> None:
    assert parse_nodes_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("0", ["n0", "at least 1 core"]),
        ("n1:0", ["n1", "at least 1 core"]),
        ("n1:-3", ["n1", "at least 1 core"]),
        ("x:y", ["'x:y'", "not NAME:CORES or CORES"]),
        ("abc", ["'abc'", "not NAME:CORES or CORES"]),
        ("n1:4,n1:2", ["n1", "given twice"]),
        ("n1:2,,n2:2", ["empty entry", "position 2"]),
    ],
)
def test_parse_nodes_spec_errors(spec: str, words: List[str]) -> None:
    with pytest.raises(ResourceError) as info:
        parse_nodes_spec(spec)
    msg = str(info.value)
    assert "--nodes" in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_resource_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_nodes_spec("")


# ---- local_resources: --nodes ----


def test_local_resources_from_nodes_spec_is_not_bound() -> None:
    rs = local_resources("n1:4, n2:2")
    assert rs.source == "nodes-spec"
    assert rs.binding is False
    assert rs.system_core is False
    assert rs.nodes == (Node("n1", (0, 1, 2, 3)), Node("n2", (0, 1)))
    assert rs.total_cores == 6
    assert rs.max_node_cores == 4
    assert describe(rs) == "2 node(s), 6 core(s) [n1:4, n2:2], not bound (virtual cores)"


def test_nodes_spec_wins_over_node_config() -> None:
    rs = local_resources("3", node_config=[{"name": "cfg", "cores": 8}])
    assert [n.name for n in rs.nodes] == ["n0"]
    assert rs.total_cores == 3


def test_nodes_spec_errors_propagate() -> None:
    with pytest.raises(ResourceError, match="given twice"):
        local_resources("a:1,a:1")


# ---- local_resources: this machine ----


def test_local_resources_of_this_machine_are_bound() -> None:
    rs = local_resources()
    cpus = sorted(os.sched_getaffinity(0))
    assert rs.source == "local"
    assert rs.binding is True
    assert len(rs.nodes) == 1
    node = rs.nodes[0]
    assert node.cores == tuple(cpus)
    assert node.name == (socket.gethostname().split(".")[0] or "localhost")
    assert "." not in node.name
    assert rs.total_cores == len(cpus)
    assert describe(rs).endswith("bound to cores")


def test_system_core_on_this_machine_keeps_the_first_core() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        with pytest.raises(ResourceError, match="at least 2 cores"):
            local_resources(system_core=True)
        return
    rs = local_resources(system_core=True)
    assert rs.system_core is True
    assert rs.binding is True
    assert rs.nodes[0].cores == tuple(cpus[1:])
    assert rs.total_cores == len(cpus) - 1


# ---- local_resources: [[node]] config ----


def test_node_config_with_crs() -> None:
    cfg: List[Dict[str, object]] = [
        {"name": "g1", "cores": 4, "gpu": 2, "mem": 3},
        {"name": "g2", "cores": [4, 5, 6], "gpu": [1, 3]},
        {"cores": 2},
    ]
    rs = local_resources(node_config=cfg)
    assert rs.source == "config"
    assert rs.binding is False
    g1, g2, n2 = rs.nodes
    assert g1 == Node("g1", (0, 1, 2, 3), (("gpu", (0, 1)), ("mem", (0, 1, 2))))
    assert g2 == Node("g2", (4, 5, 6), (("gpu", (1, 3)),))
    assert n2 == Node("n2", (0, 1), ())
    assert g1.crs_total("gpu") == 2
    assert g1.crs_total("mem") == 3
    assert g2.crs_total("gpu") == 2
    assert g2.crs_total("mem") == 0
    assert n2.crs_total("gpu") == 0
    assert rs.total_cores == 9


def test_node_config_gpu_zero_is_allowed() -> None:
    rs = local_resources(node_config=[{"name": "a", "cores": 1, "gpu": 0}])
    assert rs.nodes[0].crs_total("gpu") == 0


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        ([["name", "a"]], ["resources.nodes[0]", "table"]),
        ([{"name": "a", "cores": 2, "gpus": 1}], ["resources.nodes[0]", "gpus", "allowed"]),
        ([{"name": "a"}], ["resources.nodes[0].cores"]),
        ([{"name": "a", "cores": "4"}], ["resources.nodes[0].cores"]),
        ([{"name": "a", "cores": True}], ["resources.nodes[0].cores"]),
        ([{"name": "a", "cores": [0, "1"]}], ["resources.nodes[0].cores"]),
        ([{"name": "a", "cores": 2}, {"name": "b", "cores": 0}], ["resources.nodes[1].cores", "b",
                                                                   "at least one core"]),
        ([{"name": "a", "cores": []}], ["resources.nodes[0].cores", "at least one core"]),
        ([{"name": "a", "cores": 2, "gpu": -1}], ["resources.nodes[0].gpu"]),
        ([{"name": "a", "cores": 2, "gpu": "2"}], ["resources.nodes[0].gpu"]),
        ([{"name": "a", "cores": 2, "gpu": True}], ["resources.nodes[0].gpu"]),
        ([{"name": "a", "cores": 2, "mem": [0, 1]}], ["resources.nodes[0].mem"]),
        ([{"name": "a", "cores": 2, "mem": -5}], ["resources.nodes[0].mem"]),
        ([{"name": "a", "cores": 1}, {"name": "a", "cores": 2}], ["unique"]),
    ],
)
def test_node_config_errors(cfg: List[Any], words: List[str]) -> None:
    with pytest.raises(ResourceError) as info:
        local_resources(node_config=cfg)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


# ---- --system-core ----


def test_system_core_with_nodes_spec() -> None:
    rs = local_resources("a:4,b:2", system_core=True)
    assert rs.system_core is True
    assert rs.nodes == (Node("a", (1, 2, 3)), Node("b", (0, 1)))
    assert rs.total_cores == 5
    assert rs.binding is False


def test_system_core_drops_a_one_core_first_node() -> None:
    rs = local_resources("a:1,b:3", system_core=True)
    assert rs.nodes == (Node("b", (0, 1, 2)),)
    assert rs.total_cores == 3


def test_system_core_needs_two_cores() -> None:
    with pytest.raises(ResourceError, match="--system-core needs at least 2 cores"):
        local_resources("1", system_core=True)


def test_system_core_keeps_crs_of_the_first_node() -> None:
    rs = local_resources(node_config=[{"name": "g", "cores": [8, 9, 10], "gpu": 1}], system_core=True)
    assert rs.nodes == (Node("g", (9, 10), (("gpu", (0,)),)),)
    assert rs.source == "config"


def test_resource_set_empty_properties() -> None:
    rs = ResourceSet((), binding=False, source="nodes-spec")
    assert rs.total_cores == 0
    assert rs.max_node_cores == 0
