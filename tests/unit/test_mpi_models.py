"""The parallel execution models' command lines, files and environment, exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest
from hpilot.partition import mpi
from hpilot.partition.allocator import Allocation, Slot
from hpilot.partition.models import LOCAL_MODELS, SLURM_MODELS, EnvContext, command, environment, models_for
from hpilot.partition.spec import Execution
from hpilot.partition.variables import compile_template

ALLOC = Allocation((Slot("n1", (2, 3)), Slot("n2", (0,))))
VALUES: Dict[str, str] = {"uniq": "r7", "jname": "j", "root_wd": "/r", "ncores": "3", "nnodes": "2", "nlist": "n1,n2"}


def ex(model: str, **kw: Any) -> Execution:
    return Execution(exec=compile_template("/app"), args=(compile_template("-x"),), model=model, **kw)


def ctx(aux: str = "/run/hf") -> EnvContext:
    return EnvContext(base_env={"PATH": "/usr/bin"}, binding=True, in_allocation=True, aux_dir=aux)


def test_models_offered_only_in_an_allocation() -> None:
    assert models_for(False) == LOCAL_MODELS == ("default", "threads")
    assert models_for(True) == SLURM_MODELS == ("default", "threads", "openmpi", "intelmpi", "srunmpi")


def test_files() -> None:
    assert mpi.hostfile(ALLOC) == "n1\nn1\nn2\n"
    assert mpi.rankfile(ALLOC) == "rank 0=n1 slot=2\nrank 1=n1 slot=3\nrank 2=n2 slot=0\n"
    assert mpi.cpu_masks(ALLOC) == ["0x5", "0x8"]  # local rank 0: cpu 2 on n1 | cpu 0 on n2


def test_openmpi_command() -> None:
    argv = command(ex("openmpi", model_opts=(("mpirun", "/opt/ompi/bin/mpirun"),
                                             ("mpirun_args", ["--mca", "x", "1"]))), VALUES, ALLOC, ctx())
    assert argv == ("/bin/bash", "-c",
                    "mkdir -p /run/hf || exit 127\n"
                    "printf %s 'n1\nn1\nn2\n' > /run/hf/r7.hosts || exit 127\n"
                    "printf %s 'rank 0=n1 slot=2\nrank 1=n1 slot=3\nrank 2=n2 slot=0\n' > /run/hf/r7.rankfile"
                    " || exit 127\n"
                    "unset SLURM_NTASKS_PER_NODE SLURM_TASKS_PER_NODE SLURM_STEP_TASKS_PER_NODE SLURM_NNODES "
                    "SLURM_STEP_NUM_NODES SLURM_DISTRIBUTION SLURM_CPU_BIND SLURM_NTASKS SLURM_NPROCS "
                    "SLURM_STEP_NUM_TASKS\n"
                    "export SLURM_NODELIST=n1,n2\nexport SLURM_TASKS_PER_NODE=2,1\n"
                    "export OMPI_MCA_plm_slurm_args='--overlap --nodelist=n1,n2'\n"
                    'exec /opt/ompi/bin/mpirun --rankfile /run/hf/r7.rankfile -np 3 --mca x 1 "$@"',
                    "hpilot-task", "/app", "-x")


def test_intelmpi_command_and_env() -> None:
    argv = command(ex("intelmpi"), VALUES, ALLOC, ctx())
    assert argv[2].splitlines()[-1] == (
        'exec mpirun -n 2 -host n1 -env I_MPI_PIN_PROCESSOR_LIST 2,3 "$@" : '
        '-n 1 -host n2 -env I_MPI_PIN_PROCESSOR_LIST 0 "$@"')
    env = environment(ctx(), ex("intelmpi"), VALUES, ALLOC, "j")
    assert env["I_MPI_PIN"] == "1" and env["HPILOT_HOSTFILE"] == "/run/hf/r7.hosts"


def test_srunmpi_command_and_env() -> None:
    argv = command(ex("srunmpi", model_opts=(("mpirun_args", ["--mpi=pmix"]),)), VALUES, ALLOC, ctx())
    assert argv[2].splitlines()[-2:] == [
        "unset SLURM_NTASKS_PER_NODE SLURM_TASKS_PER_NODE SLURM_STEP_TASKS_PER_NODE SLURM_NNODES "
        "SLURM_STEP_NUM_NODES SLURM_DISTRIBUTION SLURM_CPU_BIND",
        'exec srun --overlap -n 3 --distribution=arbitrary --cpu-bind=mask_cpu:0x5,0x8 --mpi=pmix "$@"']
    env = environment(ctx(), ex("srunmpi"), VALUES, ALLOC, "j")
    assert env["SLURM_HOSTFILE"] == "/run/hf/r7.hosts"


def test_chapter_8_environment_in_an_allocation() -> None:
    env = environment(ctx(), ex("default"), VALUES, ALLOC, "j")
    assert env["SLURM_NODELIST"] == "n1,n2" and env["SLURM_NTASKS"] == "3"
    assert env["SLURM_TASKS_PER_NODE"] == "n1(x2),n2" and env["SLURM_NTASKS_PER_NODE"] == "2,1"
    assert env["QCG_PM_CPU_SET"] == "2,3,0" and env["QCG_PM_NNODES"] == "2"
    local = environment(EnvContext(base_env={}), ex("default"), VALUES, ALLOC, "j")
    assert "SLURM_NODELIST" not in local


def test_modules_come_before_the_launcher() -> None:
    argv = command(ex("openmpi", modules=(compile_template("ompi/4"),)), VALUES, ALLOC, ctx())
    lines = argv[2].splitlines()
    assert lines[1] == "module load ompi/4 || exit 127" and lines[-1].startswith("exec mpirun")


@pytest.mark.shell
def test_multi_node_default_task_gets_a_machine_file_and_runs(tmp_path: Path) -> None:
    c = ctx(str(tmp_path / "hf"))
    e = Execution(script=compile_template("cat $HPILOT_HOSTFILE; echo ran"))
    argv = command(e, VALUES, ALLOC, c)
    env = environment(c, e, VALUES, ALLOC, "j")
    out = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=True).stdout
    assert out == "n1\nn1\nn2\nran\n"
    # one node, default model: no wrapper at all
    one = Allocation((Slot("n1", (0,)),))
    assert command(ex("default"), VALUES, one, c) == ("/app", "-x")


@pytest.mark.shell
def test_the_openmpi_script_really_writes_its_files(tmp_path: Path) -> None:
    fake = tmp_path / "mpirun"
    fake.write_text("#!/bin/sh\necho \"$@\"; cat \"$2\"\n")
    fake.chmod(0o755)
    c = ctx(str(tmp_path / "hf"))
    argv = command(ex("openmpi", model_opts=(("mpirun", str(fake)),)), VALUES, ALLOC, c)
    out = subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout
    rf = tmp_path / "hf" / "r7.rankfile"
    assert out == f"--rankfile {rf} -np 3 /app -x\n" + rf.read_text()
