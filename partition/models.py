"""Execution models: the command line and environment of one iteration.

The environment is the one of manual ch. 8: ``QCG_PM_*`` for tasks written for
QCG-PilotJob, the same values under ``HPILOT_*``, and the ``SLURM_*`` set with
``--envschema slurm`` (the default inside a Slurm allocation) so that a task can
believe it is a Slurm job step.  Multi-node tasks and the MPI models (see
:mod:`hpilot.partition.mpi`) also get a machine file, ``HPILOT_HOSTFILE``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from hpilot.partition import mpi
from hpilot.partition.allocator import Allocation
from hpilot.partition.spec import Execution

LOCAL_MODELS = ("default", "threads")
SLURM_MODELS = LOCAL_MODELS + mpi.MPI_MODELS


def models_for(in_allocation: bool) -> Tuple[str, ...]:
    """The MPI models start their ranks with srun or with mpirun's Slurm launcher: only in an allocation."""
    return SLURM_MODELS if in_allocation else LOCAL_MODELS


@dataclass(frozen=True)
class EnvContext:
    """What every task of a partition shares."""

    base_env: Mapping[str, str]
    envschema: str = "auto"  # auto | slurm
    address: Optional[str] = None  # the service's request address, when --net
    binding: bool = False
    in_allocation: bool = False  # inside Slurm: envschema auto means slurm
    aux_dir: Optional[str] = None  # where machine files and rankfiles go (the run directory)


def _paths(ctx: EnvContext, values: Mapping[str, str]) -> Dict[str, str]:
    base = f"{ctx.aux_dir}/{values.get('uniq', 'task')}"
    return {"hosts": base + ".hosts", "rankfile": base + ".rankfile"}


def with_files(ex: Execution, alloc: Optional[Allocation], ctx: Optional[EnvContext]) -> bool:
    """Whether the task needs machine files (MPI, or more than one node)."""
    return (alloc is not None and ctx is not None and ctx.aux_dir is not None
            and mpi.needs_files(ex.model, alloc.nnodes))


def command(ex: Execution, values: Mapping[str, str], alloc: Optional[Allocation] = None,
            ctx: Optional[EnvContext] = None, files: Optional[bool] = None) -> Tuple[str, ...]:
    """argv of one iteration; modules, venv, machine files and MPI launchers go through bash.
    ``files``: :func:`with_files`, when the caller knows it already."""
    if with_files(ex, alloc, ctx) if files is None else files:
        assert alloc is not None and ctx is not None
        return _launcher_command(ex, values, alloc, ctx)
    if ex.script is not None:
        argv: List[str] = ["/bin/bash", "-c", ex.script.fill(values)]
    else:
        assert ex.exec is not None
        argv = [ex.exec.fill(values)] + [a.fill(values) for a in ex.args]
    prelude = _prelude(ex, values)
    if not prelude:
        return tuple(argv)
    if ex.script is not None:
        return ("/bin/bash", "-c", prelude + "\n" + argv[2])
    return ("/bin/bash", "-c", prelude + '\nexec "$@"', "hpilot-task", *argv)


def _launcher_command(ex: Execution, values: Mapping[str, str], alloc: Allocation,
                      ctx: EnvContext) -> Tuple[str, ...]:
    app: List[str]
    if ex.script is not None:
        app = ["/bin/bash", "-c", ex.script.fill(values)]
    else:
        assert ex.exec is not None
        app = [ex.exec.fill(values)] + [a.fill(values) for a in ex.args]
    paths = _paths(ctx, values)
    if ex.model in mpi.MPI_MODELS:
        launch = mpi.launch_for(ex.model, dict(ex.model_opts), alloc, paths["hosts"], paths["rankfile"])
    else:  # a multi-node task of the default model: the machine file, then the task itself
        launch = mpi.Launch((), files=(("hosts", mpi.hostfile(alloc)),))
    lines = [ln for ln in (_prelude(ex, values),) if ln] + mpi.script_lines(launch, alloc, paths)
    return ("/bin/bash", "-c", "\n".join(lines), "hpilot-task", *app)


def _prelude(ex: Execution, values: Mapping[str, str]) -> str:
    lines = []
    if ex.modules:
        # `module` is a shell function defined by the site's profile scripts.
        lines.append("type module >/dev/null 2>&1 || . /etc/profile >/dev/null 2>&1")
        for m in ex.modules:
            lines.append(f"module load {shlex.quote(m.fill(values))} || exit 127")
    if ex.venv is not None:
        venv = ex.venv.fill(values)
        lines.append(f". {shlex.quote(venv + '/bin/activate')} || exit 127")
    return "\n".join(lines)


def environment(
    ctx: EnvContext, ex: Execution, values: Mapping[str, str], alloc: Allocation, task_name: str,
    files: Optional[bool] = None,
) -> Dict[str, str]:
    env = dict(ctx.base_env)
    env.update(_alloc_env(ctx, alloc))
    env["QCG_PM_STEP_ID"] = env["HPILOT_STEP_ID"] = values.get("uniq", task_name)
    env["HPILOT_TASK_NAME"] = task_name
    if "it" in values:
        env["HPILOT_ITERATION"] = values["it"]
    if ctx.address:
        env["QCG_PM_ZMQ_ADDRESS"] = ctx.address
        env["HPILOT_ADDRESS"] = ctx.address
    if with_files(ex, alloc, ctx) if files is None else files:
        paths = _paths(ctx, values)
        env["HPILOT_HOSTFILE"] = paths["hosts"]
        if ex.model in mpi.MPI_MODELS:
            env.update(mpi.launch_for(ex.model, dict(ex.model_opts), alloc, paths["hosts"], paths["rankfile"]).env)
    if ex.model == "threads":
        env["OMP_NUM_THREADS"] = str(alloc.ncores)
    for key, tmpl in ex.env:
        env[key] = tmpl.fill(values)
    return env


def _alloc_env(ctx: EnvContext, alloc: Allocation) -> Dict[str, str]:
    """What an allocation alone decides of a task's environment: computed once per allocation
    (a single core's is made once per core), not once per task."""
    slurm = ctx.envschema == "slurm" or (ctx.envschema == "auto" and ctx.in_allocation)
    key = ("env", ctx.binding, slurm)
    env = alloc.memo.get(key)
    if env is not None:
        return env
    nodes = ",".join(alloc.nodes)
    ncores = str(alloc.ncores)
    common = {
        "NNODES": str(alloc.nnodes),
        "NODELIST": nodes,
        "NPROCS": ncores,
        "NTASKS": ncores,
        "TASKS_PER_NODE": ",".join(str(len(s.cores)) for s in alloc.slots),
    }
    if ctx.binding:
        common["CPU_SET"] = ",".join(str(c) for s in alloc.slots for c in s.cores)
    env = {}
    for k, val in common.items():
        env["QCG_PM_" + k] = val
        env["HPILOT_" + k] = val
    if slurm:
        env.update(_slurm_env(alloc, nodes, ncores))
    gpus = alloc.crs_ids("gpu")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    alloc.memo[key] = env
    return env


def _slurm_env(alloc: Allocation, nodes: str, ncores: str) -> Dict[str, str]:
    tasks_per_node = ",".join(
        s.node if len(s.cores) == 1 else f"{s.node}(x{len(s.cores)})" for s in alloc.slots
    )
    per_node = ",".join(str(len(s.cores)) for s in alloc.slots)
    nn = str(alloc.nnodes)
    return {
        "SLURM_NNODES": nn,
        "SLURM_NODELIST": nodes,
        "SLURM_NPROCS": ncores,
        "SLURM_NTASKS": ncores,
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_JOB_NUM_NODES": nn,
        "SLURM_STEP_NODELIST": nodes,
        "SLURM_STEP_NUM_NODES": nn,
        "SLURM_STEP_NUM_TASKS": ncores,
        "SLURM_NTASKS_PER_NODE": per_node,
        "SLURM_STEP_TASKS_PER_NODE": per_node,
        "SLURM_TASKS_PER_NODE": tasks_per_node,
    }
