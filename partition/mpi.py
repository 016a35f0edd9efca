"""Command lines of the parallel execution models (manual ch. 9), as pure functions.

Each takes the task's own argv and its allocation and returns the launcher's argv
(the task's argv comes last, as bash's ``"$@"``) plus the files that launcher needs,
as text.  :func:`hpilot.partition.models.command` writes those files from a bash
prelude on the node where the task starts, since that is where ``mpirun`` reads them.

- ``openmpi``: ``mpirun --rankfile F -np N [mpirun_args] app`` with one
  ``rank R=NODE slot=CPU`` line per core;
- ``intelmpi``: ``mpirun`` with one ``-n K -host NODE -env I_MPI_PIN_PROCESSOR_LIST
  CPUS app`` component per node, joined by ``:``;
- ``srunmpi``: ``srun --overlap -n N --distribution=arbitrary --cpu-bind=mask_cpu:M,...
  [mpirun_args] app``; ``SLURM_HOSTFILE`` names one host per rank, which is what makes
  ``arbitrary`` put exactly our counts on each node.  The ch. 8 variables that srun would
  read as its own options (``SLURM_NTASKS_PER_NODE=2,1`` is not a valid one) are unset
  for srun; the ranks get srun's own values.
  ``--overlap`` because hpilot already placed the task on free cores: Slurm's own step
  accounting would only make the step wait behind the agents' steps.

``model_opts.mpirun`` replaces the launcher's path (``mpirun``, or ``srun`` for srunmpi)
and ``model_opts.mpirun_args`` are put right after the launcher's own options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from hpilot.partition.allocator import Allocation

MPI_MODELS = ("openmpi", "intelmpi", "srunmpi")
SRUN_INPUTS = ("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NNODES",
               "SLURM_STEP_NUM_NODES", "SLURM_DISTRIBUTION", "SLURM_CPU_BIND")


@dataclass(frozen=True)
class Launch:
    argv: Tuple[str, ...]  # the launcher and its options; the task's argv follows
    files: Tuple[Tuple[str, str], ...] = ()  # (kind, text): kind "hosts" or "rankfile"
    env: Tuple[Tuple[str, str], ...] = ()
    per_component_app: bool = False  # intelmpi repeats the app in each component
    unset: Tuple[str, ...] = ()  # variables the launcher must not see
    exports: Tuple[Tuple[str, str], ...] = ()  # set for the launcher (and its ranks) only


def hostfile(alloc: Allocation) -> str:
    """The machine file: one line per core, the node's name (as Slurm's SLURM_HOSTFILE wants)."""
    return "".join(f"{s.node}\n" for s in alloc.slots for _ in s.cores)


def rankfile(alloc: Allocation) -> str:
    lines, rank = [], 0
    for s in alloc.slots:
        for core in s.cores:
            lines.append(f"rank {rank}={s.node} slot={core}\n")
            rank += 1
    return "".join(lines)


def cpu_masks(alloc: Allocation) -> List[str]:
    """srun's mask_cpu list, one mask per local task index.  Nodes given different core ids
    for the same local index get the union of them (srun applies one list on every node)."""
    width = max(len(s.cores) for s in alloc.slots)
    masks = []
    for i in range(width):
        bits = 0
        for s in alloc.slots:
            if i < len(s.cores):
                bits |= 1 << s.cores[i]
        masks.append(hex(bits))
    return masks


def _opts(model_opts: Mapping[str, Any], default: str) -> Tuple[str, List[str]]:
    exe = model_opts.get("mpirun") or default
    args = [str(a) for a in model_opts.get("mpirun_args") or ()]
    return str(exe), args


def launch_for(model: str, model_opts: Mapping[str, Any], alloc: Allocation, hosts_path: str,
               rank_path: str) -> Launch:
    n = alloc.ncores
    if model == "openmpi":
        exe, extra = _opts(model_opts, "mpirun")
        # mpirun's Slurm support reads the allocation from these two, in Slurm's own format
        # (ch. 8's SLURM_TASKS_PER_NODE=n1(x2) is QCG-PilotJob's, which OpenMPI refuses)
        return Launch((exe, "--rankfile", rank_path, "-np", str(n), *extra),
                      files=(("hosts", hostfile(alloc)), ("rankfile", rankfile(alloc))),
                      exports=(("SLURM_NODELIST", ",".join(alloc.nodes)),
                               ("SLURM_TASKS_PER_NODE", ",".join(str(len(s.cores)) for s in alloc.slots)),
                               # its orted steps share CPUs with the agents' steps, as the tasks do; and
                               # they go to the task's nodes: without a node list srun may put a daemon
                               # on another node of the allocation, and the rankfile then fails to map
                               # (silently, exit 1); when mpirun names nodes itself, its later option wins
                               ("OMPI_MCA_plm_slurm_args", f"--overlap --nodelist={','.join(alloc.nodes)}")),
                      unset=SRUN_INPUTS + ("SLURM_NTASKS", "SLURM_NPROCS", "SLURM_STEP_NUM_TASKS"))
    if model == "intelmpi":
        exe, extra = _opts(model_opts, "mpirun")
        return Launch((exe, *extra), files=(("hosts", hostfile(alloc)),), env=(("I_MPI_PIN", "1"),),
                      per_component_app=True)
    if model == "srunmpi":
        exe, extra = _opts(model_opts, "srun")
        return Launch((exe, "--overlap", "-n", str(n), "--distribution=arbitrary",
                       "--cpu-bind=mask_cpu:" + ",".join(cpu_masks(alloc)), *extra),
                      files=(("hosts", hostfile(alloc)),), env=(("SLURM_HOSTFILE", hosts_path),),
                      unset=SRUN_INPUTS)
    raise ValueError(f"not an MPI model: {model}")


def intelmpi_components(alloc: Allocation) -> List[List[str]]:
    """``-n K -host NODE -env I_MPI_PIN_PROCESSOR_LIST c1,c2`` per node; the app follows each."""
    return [["-n", str(len(s.cores)), "-host", s.node, "-env", "I_MPI_PIN_PROCESSOR_LIST",
             ",".join(map(str, s.cores))] for s in alloc.slots]


def script_lines(launch: Launch, alloc: Allocation, paths: Dict[str, str]) -> List[str]:
    """Bash lines that write the files and exec the launcher with the task's argv ("$@")."""
    import shlex

    lines = []
    dirs = sorted({p.rpartition("/")[0] for kind, _ in launch.files for p in [paths[kind]] if "/" in p})
    if dirs:
        lines.append("mkdir -p " + " ".join(shlex.quote(d) for d in dirs) + " || exit 127")
    for kind, text in launch.files:
        lines.append(f"printf %s {shlex.quote(text)} > {shlex.quote(paths[kind])} || exit 127")
    if launch.unset:
        lines.append("unset " + " ".join(launch.unset))
    for key, value in launch.exports:
        lines.append(f"export {key}={shlex.quote(value)}")
    head = " ".join(shlex.quote(a) for a in launch.argv)
    if launch.per_component_app:
        comps = [" ".join(shlex.quote(a) for a in c) + ' "$@"' for c in intelmpi_components(alloc)]
        lines.append(f"exec {head} " + " : ".join(comps))
    else:
        lines.append(f'exec {head} "$@"')
    return lines


def needs_files(model: str, nnodes: int) -> bool:
    return model in MPI_MODELS or nnodes > 1


def model_opts_map(opts: Sequence[Tuple[str, Any]]) -> Dict[str, Any]:
    return dict(opts)
