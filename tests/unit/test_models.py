"""Execution models: the argv (modules/venv prelude) and the environment of manual ch. 8."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from hpilot.partition.allocator import Allocation, Slot
from hpilot.partition.models import EnvContext, command, environment
from hpilot.partition.spec import Execution
from hpilot.partition.variables import Template, compile_template

PRELUDE_MODULE = "type module >/dev/null 2>&1 || . /etc/profile >/dev/null 2>&1"

VALUES: Dict[str, str] = {"it": "3", "uniq": "u17", "jname": "job:3", "root_wd": "/r",
                          "ncores": "3", "nnodes": "2", "nlist": "n1,n2"}


def t(text: str) -> Template:
    return compile_template(text)


def ex(**kw: Any) -> Execution:
    return Execution(**kw)


ALLOC = Allocation((Slot("n1", (4, 5)), Slot("n2", (0,))))


def env_of(ctx: Optional[EnvContext] = None, execution: Optional[Execution] = None,
           alloc: Allocation = ALLOC, values: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    return environment(ctx or EnvContext(base_env={"PATH": "/usr/bin", "HOME": "/h"}),
                       execution or ex(exec=t("/bin/true")), VALUES if values is None else values,
                       alloc, "job:3")


# ---- command ----


def test_command_exec_and_args() -> None:
    argv = command(ex(exec=t("/bin/echo"), args=(t("a b"), t("${it}-${ncores}"), t("${jname}"))), VALUES)
    assert argv == ("/bin/echo", "a b", "3-3", "job:3")


def test_command_exec_filled() -> None:
    assert command(ex(exec=t("${root_wd}/bin/run")), VALUES) == ("/r/bin/run",)


def test_command_script() -> None:
    # the governor compiles scripts with allow_unknown: ${HOME} is left for bash
    argv = command(ex(script=compile_template("echo ${it} $HOME ${HOME}", allow_unknown=True)), VALUES)
    assert argv == ("/bin/bash", "-c", "echo 3 $HOME ${HOME}")


def test_command_modules_prelude_exact() -> None:
    argv = command(ex(exec=t("/bin/app"), args=(t("x"),), modules=(t("gcc/9.1"), t("my mod"))), VALUES)
    assert argv == (
        "/bin/bash", "-c",
        PRELUDE_MODULE + "\n"
        "module load gcc/9.1 || exit 127\n"
        "module load 'my mod' || exit 127\n"
        'exec "$@"',
        "hpilot-task", "/bin/app", "x",
    )


def test_command_venv_prelude_exact() -> None:
    argv = command(ex(exec=t("python"), args=(t("-V"),), venv=t("${root_wd}/venv")), VALUES)
    assert argv == ("/bin/bash", "-c", '. /r/venv/bin/activate || exit 127\nexec "$@"',
                    "hpilot-task", "python", "-V")


def test_command_venv_with_space_is_quoted() -> None:
    argv = command(ex(exec=t("python"), venv=t("/my env")), VALUES)
    assert argv[2] == ". '/my env/bin/activate' || exit 127\nexec \"$@\""


def test_command_modules_and_venv_with_script() -> None:
    argv = command(ex(script=t("echo ${it}"), modules=(t("m1"),), venv=t("/v")), VALUES)
    assert argv == (
        "/bin/bash", "-c",
        PRELUDE_MODULE + "\nmodule load m1 || exit 127\n. /v/bin/activate || exit 127\necho 3",
    )


def _run(argv: Tuple[str, ...], env: Dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.shell
def test_prelude_really_runs_venv_and_keeps_args(tmp_path: Path) -> None:
    venv = tmp_path / "v e"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export FROM_VENV=yes\n")
    argv = command(ex(exec=t("/bin/sh"), args=(t("-c"), t('echo "$FROM_VENV|$1|$2"'), t("zero"),
                                                t("a b"), t("'c'")), venv=t(str(venv))), VALUES)
    res = _run(argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "yes|a b|'c'\n"


@pytest.mark.shell
def test_prelude_missing_venv_exits_127(tmp_path: Path) -> None:
    argv = command(ex(exec=t("/bin/true"), venv=t(str(tmp_path / "nope"))), VALUES)
    res = _run(argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, tmp_path)
    assert res.returncode == 127


@pytest.mark.shell
def test_prelude_module_failure_exits_127(tmp_path: Path) -> None:
    # a `module` shell function exported through the environment, failing for "bad"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "BASH_FUNC_module%%": '() { echo "load $2" >> mods.txt; [ "$2" != bad ]; }'}
    ok = command(ex(exec=t("/bin/echo"), args=(t("ran"),), modules=(t("good"),)), VALUES)
    res = _run(ok, env, tmp_path)
    assert (res.returncode, res.stdout) == (0, "ran\n")
    bad = command(ex(exec=t("/bin/echo"), args=(t("ran"),), modules=(t("bad"), t("never"))), VALUES)
    res = _run(bad, env, tmp_path)
    assert res.returncode == 127
    assert res.stdout == ""
    assert (tmp_path / "mods.txt").read_text() == "load good\nload bad\n"


# ---- environment ----


def test_environment_qcg_and_hpilot_names() -> None:
    env = env_of()
    expected = {
        "NNODES": "2",
        "NODELIST": "n1,n2",
        "NPROCS": "3",
        "NTASKS": "3",
        "STEP_ID": "u17",
        "TASKS_PER_NODE": "2,1",
    }
    for key, val in expected.items():
        assert env["QCG_PM_" + key] == val, key
        assert env["HPILOT_" + key] == val, key
    assert env["HPILOT_TASK_NAME"] == "job:3"
    assert env["HPILOT_ITERATION"] == "3"
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/h"
    assert "QCG_PM_CPU_SET" not in env and "HPILOT_CPU_SET" not in env
    assert "QCG_PM_ZMQ_ADDRESS" not in env
    assert not any(k.startswith("SLURM_") for k in env)
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert "OMP_NUM_THREADS" not in env


def test_environment_step_id_without_uniq_is_the_task_name() -> None:
    env = env_of(values={"ncores": "3"})
    assert env["QCG_PM_STEP_ID"] == "job:3"
    assert "HPILOT_ITERATION" not in env


def test_environment_does_not_modify_base_env() -> None:
    base = {"PATH": "/usr/bin"}
    env_of(EnvContext(base_env=base, envschema="slurm", binding=True))
    assert base == {"PATH": "/usr/bin"}


def test_environment_cpu_set_only_when_binding() -> None:
    env = env_of(EnvContext(base_env={}, binding=True))
    assert env["QCG_PM_CPU_SET"] == "4,5,0"
    assert env["HPILOT_CPU_SET"] == "4,5,0"


def test_environment_address() -> None:
    env = env_of(EnvContext(base_env={}, address="tcp://10.0.0.1:5555"))
    assert env["QCG_PM_ZMQ_ADDRESS"] == "tcp://10.0.0.1:5555"
    assert env["HPILOT_ADDRESS"] == "tcp://10.0.0.1:5555"


def test_environment_slurm_schema() -> None:
    env = env_of(EnvContext(base_env={}, envschema="slurm"))
    assert env["SLURM_NNODES"] == "2"
    assert env["SLURM_NODELIST"] == "n1,n2"
    assert env["SLURM_NPROCS"] == "3"
    assert env["SLURM_NTASKS"] == "3"
    assert env["SLURM_JOB_NODELIST"] == "n1,n2"
    assert env["SLURM_JOB_NUM_NODES"] == "2"
    assert env["SLURM_STEP_NODELIST"] == "n1,n2"
    assert env["SLURM_STEP_NUM_NODES"] == "2"
    assert env["SLURM_STEP_NUM_TASKS"] == "3"
    assert env["SLURM_NTASKS_PER_NODE"] == "2,1"
    assert env["SLURM_STEP_TASKS_PER_NODE"] == "2,1"
    assert env["SLURM_TASKS_PER_NODE"] == "n1(x2),n2"


def test_environment_slurm_one_node_many_cores() -> None:
    env = env_of(EnvContext(base_env={}, envschema="slurm"), alloc=Allocation((Slot("c7", (0, 1, 2, 3)),)))
    assert env["SLURM_TASKS_PER_NODE"] == "c7(x4)"
    assert env["SLURM_NNODES"] == "1"
    assert env["SLURM_NTASKS"] == "4"


def test_environment_slurm_schema_overrides_outer_slurm_values() -> None:
    base = {"SLURM_NNODES": "16", "SLURM_NTASKS": "768", "SLURM_NODELIST": "big[1-16]"}
    env = env_of(EnvContext(base_env=base, envschema="slurm"))
    assert (env["SLURM_NNODES"], env["SLURM_NTASKS"], env["SLURM_NODELIST"]) == ("2", "3", "n1,n2")


def test_environment_cuda_visible_devices() -> None:
    alloc = Allocation((Slot("g", (0, 1), (("gpu", (1, 3)),)),))
    env = env_of(alloc=alloc)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"


def test_environment_threads_model() -> None:
    env = env_of(execution=ex(exec=t("/bin/app"), model="threads"))
    assert env["OMP_NUM_THREADS"] == "3"


def test_environment_job_env_overrides() -> None:
    execution = ex(exec=t("/bin/app"), model="threads", env=(
        ("QCG_PM_NPROCS", t("99")),
        ("OMP_NUM_THREADS", t("1")),
        ("PATH", t("/opt/bin")),
        ("MY_IT", t("it=${it} on ${nlist}")),
    ))
    env = env_of(EnvContext(base_env={"PATH": "/usr/bin"}, envschema="slurm"), execution=execution)
    assert env["QCG_PM_NPROCS"] == "99"
    assert env["HPILOT_NPROCS"] == "3"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"] == "/opt/bin"
    assert env["MY_IT"] == "it=3 on n1,n2"


@pytest.mark.parametrize("model", ["default", "threads"])
def test_environment_values_are_strings(model: str) -> None:
    env = env_of(EnvContext(base_env={}, envschema="slurm", binding=True, address="a"),
                 execution=ex(exec=t("x"), model=model),
                 alloc=Allocation((Slot("g", (0,), (("gpu", (0,)),)),)))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


def test_an_allocation_s_environment_is_computed_once_and_never_carries_a_task_s_values() -> None:
    """A single core's allocation is made once per core and its environment part is memoized:
    every task there must still get its own names, and the memo must not depend on which
    task or which context asked first."""
    from hpilot.partition.allocator import ONE_CORE, Allocator
    from hpilot.partition.resources import Node, ResourceSet

    allocator = Allocator(ResourceSet((Node("n1", (0,)),), False, "test"))
    first = allocator.allocate(ONE_CORE)
    assert first is not None
    allocator.release(first)
    again = allocator.allocate(ONE_CORE)
    assert again is first, "one allocation object per core"
    ctx = EnvContext(base_env={"PATH": "/usr/bin"})
    a = environment(ctx, ex(exec=t("/bin/true")), {**VALUES, "uniq": "u1", "it": "1"}, first, "job:1")
    b = environment(ctx, ex(exec=t("/bin/true")), {**VALUES, "uniq": "u2", "it": "2"}, again, "job:2")
    assert (a["HPILOT_STEP_ID"], a["HPILOT_TASK_NAME"], a["HPILOT_ITERATION"]) == ("u1", "job:1", "1")
    assert (b["HPILOT_STEP_ID"], b["HPILOT_TASK_NAME"], b["HPILOT_ITERATION"]) == ("u2", "job:2", "2")
    fresh = Allocation((Slot("n1", (0,)),))
    bound = EnvContext(base_env={"PATH": "/usr/bin"}, binding=True, envschema="slurm")
    assert environment(bound, ex(exec=t("/bin/true")), VALUES, first, "job:3") == \
        environment(bound, ex(exec=t("/bin/true")), VALUES, fresh, "job:3")
    assert environment(bound, ex(exec=t("/bin/true")), VALUES, first, "job:3")["SLURM_NNODES"] == "1"
    assert "SLURM_NNODES" not in environment(ctx, ex(exec=t("/bin/true")), VALUES, first, "job:3")
