"""Slurm allocation parsing: hostlists, CPU counts, scontrol's CPU ids, limits, bad values."""

from __future__ import annotations

import pytest
from hpilot.partition.resources import ResourceError
from hpilot.partition.slurm import (
    expand_hostlist,
    in_allocation,
    parse_cpus_per_node,
    parse_scontrol_job,
    slurm_resources,
)

SCONTROL = ("JobId=7 JobName=x NodeList=n[1-2],gpu01 BatchHost=n1 NumNodes=3 NumCPUs=10   "
            "Nodes=n[1-2] CPU_IDs=0-3 Mem=0 GRES=   Nodes=gpu01 CPU_IDs=2,4-5 Mem=0 GRES= MinCPUsNode=1")


@pytest.mark.parametrize("expr,names", [
    ("n1", ["n1"]),
    ("n[1-3,7],gpu[01-02]", ["n1", "n2", "n3", "n7", "gpu01", "gpu02"]),
    ("a[8-11]", ["a8", "a9", "a10", "a11"]),
    ("node[098-101]", ["node098", "node099", "node100", "node101"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("x-1,x-2", ["x-1", "x-2"]),
])
def test_hostlists(expr: str, names: list) -> None:
    assert expand_hostlist(expr) == names


@pytest.mark.parametrize("expr,why", [
    ("", "empty"), ("n[1-3", "without ']'"), ("n1-3]", "without '['"), ("n[3-1]", "backwards"),
    ("n[a-b]", "not a list of numbers"), ("n1,,n2", "empty host name"), ("n[1-2],n2", "listed twice"),
    ("n[[1]]", "nested"),
])
def test_bad_hostlists(expr: str, why: str) -> None:
    with pytest.raises(ResourceError, match="SLURM_JOB_NODELIST") as e:
        expand_hostlist(expr)
    assert why in str(e.value)


def test_cpus_per_node() -> None:
    assert parse_cpus_per_node("24(x2),12") == [24, 24, 12]
    assert parse_cpus_per_node("4") == [4]
    for bad in ("", "x", "4(x)", "4(2)", "0", "2(x0)", "4,,4"):
        with pytest.raises(ResourceError, match="SLURM_JOB_CPUS_PER_NODE"):
            parse_cpus_per_node(bad)


def test_scontrol_ids() -> None:
    assert parse_scontrol_job(SCONTROL) == {"n1": (0, 1, 2, 3), "n2": (0, 1, 2, 3), "gpu01": (2, 4, 5)}
    with pytest.raises(ResourceError, match="no 'Nodes=... CPU_IDs=...'"):
        parse_scontrol_job("JobId=1 garbage")
    with pytest.raises(ResourceError, match="CPU_IDs='0-x'"):
        parse_scontrol_job("Nodes=n1 CPU_IDs=0-x Mem=0")


ENV = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-2],gpu01", "SLURM_JOB_CPUS_PER_NODE": "4(x2),3"}


def test_from_environment_and_ids() -> None:
    rs = slurm_resources(ENV, SCONTROL)
    assert rs.source == "slurm" and rs.binding
    assert [(n.name, n.cores) for n in rs.nodes] == [("n1", (0, 1, 2, 3)), ("n2", (0, 1, 2, 3)),
                                                     ("gpu01", (2, 4, 5))]


def test_from_environment_only_counts() -> None:
    rs = slurm_resources(ENV, None)
    assert [(n.name, n.cores) for n in rs.nodes] == [("n1", (0, 1, 2, 3)), ("n2", (0, 1, 2, 3)),
                                                     ("gpu01", (0, 1, 2))]


def test_resources_file_alone_and_limits_and_system_core() -> None:
    rs = slurm_resources({}, SCONTROL, limit_begin=1, limit_end=3, system_core=True)
    assert [(n.name, n.cores) for n in rs.nodes] == [("n2", (1, 2, 3)), ("gpu01", (2, 4, 5))]
    assert rs.system_core
    with pytest.raises(ResourceError, match="selects no node"):
        slurm_resources({}, SCONTROL, limit_begin=3)
    with pytest.raises(ResourceError, match="past the last node"):
        slurm_resources({}, SCONTROL, limit_end=9)


def test_mismatch_and_missing() -> None:
    with pytest.raises(ResourceError, match="describes 2 node.*has 3"):
        slurm_resources({**ENV, "SLURM_JOB_CPUS_PER_NODE": "4(x2)"}, None)
    with pytest.raises(ResourceError, match="not inside a Slurm allocation"):
        slurm_resources({}, None)
    with pytest.raises(ResourceError, match="SLURM_JOB_CPUS_PER_NODE is not set"):
        slurm_resources({"SLURM_JOB_NODELIST": "n1"}, None)


def test_in_allocation() -> None:
    assert in_allocation(ENV)
    assert not in_allocation({"SLURM_JOB_NODELIST": "n1"})
    assert not in_allocation({})
