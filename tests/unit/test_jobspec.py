"""Parsing of QCG-PilotJob job descriptions (governor/core/jobspec.py).

Good descriptions become a :class:`JobSpec`; every bad one must give at least
one :class:`FieldError` that names the job and the dotted field at fault.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hpilot.governor.core.jobspec import Dependency, FieldError, JobSpec, parse_dependency, parse_job, parse_walltime
from hpilot.partition.variables import KNOWN_VARIABLES

# ---- helpers ----


def job(**overrides: Any) -> Dict[str, Any]:
    """A valid job named 'bad' (the name the error tests expect), with overrides."""
    raw: Dict[str, Any] = {"name": "bad", "execution": {"exec": "/bin/true"}}
    raw.update(overrides)
    return raw


def exe(**fields: Any) -> Dict[str, Any]:
    """A job whose execution is /bin/true plus ``fields``."""
    execution: Dict[str, Any] = {"exec": "/bin/true"}
    execution.update(fields)
    return job(execution=execution)


def res(**fields: Any) -> Dict[str, Any]:
    return job(resources=fields)


def ok(raw: Any) -> JobSpec:
    spec, errors = parse_job(raw)
    assert errors == [], f"unexpected errors: {[str(e) for e in errors]}"
    assert spec is not None
    return spec


def bad(raw: Any, index: int = 0) -> List[FieldError]:
    spec, errors = parse_job(raw, index)
    assert spec is None, "a bad description must not give a job"
    assert errors, "a bad description must give at least one FieldError"
    return errors


def find(errors: List[FieldError], job_label: str, fld: str) -> FieldError:
    for e in errors:
        if e.job == job_label and e.field == fld:
            return e
    raise AssertionError(f"no error for job {job_label!r} field {fld!r} in {[str(e) for e in errors]}")


# ---- valid descriptions ----


def test_minimal_job_gets_defaults() -> None:
    spec = ok({"name": "a", "execution": {"exec": "/bin/true"}})
    assert spec.name == "a"
    assert spec.execution.exec is not None and spec.execution.exec.pieces == ("/bin/true",)
    assert spec.execution.args == ()
    assert spec.execution.model == "default"
    assert spec.resources.cores is None and spec.resources.nodes is None
    assert spec.resources.min_cores == 1
    assert spec.iteration is None
    assert spec.iterations == 1
    assert spec.after == ()


def test_source_is_kept_as_sent() -> None:
    raw = job(resources={"numCores": {"exact": 2}})
    spec = ok(raw)
    assert spec.source == raw


def test_full_execution_is_parsed() -> None:
    spec = ok(exe(
        args=["-n", "5", "${it}"],
        env={"A": "1", "B": "${rcnt}"},
        wd="sandbox.${it}",
        stdin="in.txt",
        stdout="out.${ncores}.${nnodes}",
        stderr="err.${jname}",
        modules=["gcc/12", "openmpi"],
        venv="/opt/venv",
        model="OpenMPI",
        model_opts={"mpirun": "/usr/bin/mpirun", "mpirun_args": ["--oversubscribe"]},
    ) | {"iteration": {"stop": 2}})
    ex = spec.execution
    assert [a.fill({"it": "7"}) for a in ex.args] == ["-n", "5", "7"]
    assert [(k, t.fill({"rcnt": "3"})) for k, t in ex.env] == [("A", "1"), ("B", "3")]
    assert ex.wd is not None and ex.wd.fill({"it": "1"}) == "sandbox.1"
    assert ex.stdin is not None and ex.stdin.fill({}) == "in.txt"
    assert ex.stdout is not None and ex.stdout.fill({"ncores": "2", "nnodes": "1"}) == "out.2.1"
    assert ex.stderr is not None and ex.stderr.names == ("jname",)
    assert [m.fill({}) for m in ex.modules] == ["gcc/12", "openmpi"]
    assert ex.venv is not None and ex.venv.fill({}) == "/opt/venv"
    assert ex.model == "openmpi"
    assert dict(ex.model_opts) == {"mpirun": "/usr/bin/mpirun", "mpirun_args": ["--oversubscribe"]}


def test_single_module_string_is_a_list_of_one() -> None:
    spec = ok(exe(modules="gcc"))
    assert [m.fill({}) for m in spec.execution.modules] == ["gcc"]


def test_script_instead_of_exec() -> None:
    spec = ok(job(execution={"script": "echo hello\nexit 0"}))
    assert spec.execution.exec is None
    assert spec.execution.script is not None
    assert spec.execution.script.fill({}) == "echo hello\nexit 0"


@pytest.mark.parametrize("model", ["default", "threads", "openmpi", "intelmpi", "srunmpi", "SrunMPI"])
def test_known_models(model: str) -> None:
    assert ok(exe(model=model)).execution.model == model.lower()


# ---- iterations ----


def test_iteration_start_stop() -> None:
    spec = ok(job(iteration={"start": 2, "stop": 5}))
    assert spec.iteration is not None
    assert (spec.iteration.start, spec.iteration.stop, spec.iteration.values) == (2, 5, None)
    assert spec.iterations == 3
    assert spec.iteration.value(4) == "4"


def test_iteration_start_defaults_to_zero() -> None:
    spec = ok(job(iteration={"stop": 4}))
    assert spec.iteration is not None and spec.iteration.start == 0 and spec.iterations == 4


def test_iteration_values() -> None:
    spec = ok(job(iteration={"values": ["a", "b", 3]}))
    assert spec.iteration is not None
    assert spec.iteration.values == ("a", "b", "3")
    assert spec.iterations == 3
    assert [spec.iteration.value(i) for i in range(3)] == ["a", "b", "3"]


def test_iteration_is_an_object_in_a_submit() -> None:
    """The manual's submit format: ``iteration`` is a Dict (QCG-PilotJob's service refuses
    anything else; only the API's ``Jobs.add`` takes a number or a list, and sends the object)."""
    for short in (3, ["x", "y"], [1, 2]):
        errs = bad(job(iteration=short))
        assert [(e.job, e.field) for e in errs] == [("bad", "iteration")] and "must be an object" in errs[0].message
    as_values = ok(job(iteration={"values": ["x", 2]})).iteration
    assert as_values is not None and as_values.values == ("x", "2")


@pytest.mark.parametrize("fld", ["exec", "script", "stdout", "stderr", "stdin", "wd", "venv"])
def test_string_fields_take_strings_only(fld: str) -> None:
    """``"stdout": 5`` once made a file named 5, ``"script": 5`` ran: the manual says String."""
    other = {} if fld in ("exec", "script") else {"exec": "/bin/true"}
    for value in (5, 2.5, True, ["x"], {"a": "b"}):
        errs = bad(job(execution={**other, fld: value}))
        assert [(e.job, e.field) for e in errs] == [("bad", f"execution.{fld}")], (fld, value, errs)
        assert "must be a string" in errs[0].message


def test_env_values_are_strings_and_args_may_be_numbers() -> None:
    errs = bad(exe(env={"N": 4}))
    assert [(e.field, "must be a string" in e.message) for e in errs] == [("execution.env.N", True)]
    spec = ok(exe(args=["x", 5, 2.5]))
    assert [a.text for a in spec.execution.args] == ["x", "5", "2.5"]  # as QCG-PilotJob does: str(arg)
    assert [e.field for e in bad(job(iteration={"values": ["a", None]}))] == ["iteration.values[1]"]


# ---- resources ----


def test_num_cores_plain_number_is_exact() -> None:
    cores = ok(res(numCores=3)).resources.cores
    assert cores is not None and (cores.exact, cores.min, cores.max) == (3, None, None)


def test_num_cores_min_max() -> None:
    cores = ok(res(numCores={"min": 2, "max": 4})).resources.cores
    assert cores is not None and (cores.exact, cores.min, cores.max) == (None, 2, 4)
    assert (cores.lower, cores.upper) == (2, 4)


def test_num_cores_exact_with_integral_float() -> None:
    cores = ok(res(numCores={"exact": 2.0})).resources.cores
    assert cores is not None and cores.exact == 2


def test_num_nodes_with_cores_per_node() -> None:
    r = ok(res(numNodes={"exact": 2}, numCores={"exact": 3})).resources
    assert r.nodes is not None and r.nodes.exact == 2
    assert r.cores is not None and r.cores.exact == 3
    assert r.min_cores == 6


@pytest.mark.parametrize("sched", [
    {"name": "split-into", "params": {"parts": 4}},
    {"name": "maximum-iters"},
    "maximum-iters",
    {"name": "Split-Into"},
])
def test_iteration_scheduler(sched: Any) -> None:
    cores = ok(job(iteration={"stop": 8}, resources={"numCores": {"min": 1, "scheduler": sched}})).resources.cores
    assert cores is not None and cores.scheduler is not None
    expected = sched if isinstance(sched, str) else sched["name"]
    assert cores.scheduler.name == expected.lower()


def test_scheduler_params_are_kept() -> None:
    cores = ok(res(numCores={"min": 1, "scheduler": {"name": "split-into", "params": {"parts": 4}}})).resources.cores
    assert cores is not None and cores.scheduler is not None
    assert cores.scheduler.param("parts") == 4


def test_node_crs() -> None:
    r = ok(res(numCores=1, nodeCrs={"gpu": 2, "MEM": 100})).resources
    assert dict(r.crs) == {"gpu": 2, "mem": 100}


def test_wall_time_in_resources() -> None:
    assert ok(res(wt="1h")).resources.wt == 3600.0


def test_wall_time_at_top_level() -> None:
    assert ok(job(wt="90s")).resources.wt == 90.0


def test_wall_time_in_resources_wins_over_top_level() -> None:
    assert ok(job(wt="90s", resources={"wt": "10m"})).resources.wt == 600.0


def test_no_resources_means_one_core_and_no_wall_time() -> None:
    r = ok(job()).resources
    assert (r.cores, r.nodes, r.crs, r.wt) == (None, None, (), None)


# ---- dependencies ----


def test_dependencies_whole_jobs_and_iterations() -> None:
    spec = ok(job(dependencies={"after": ["prep", "sweep:3", "x.y-z"]}))
    assert spec.after == (Dependency("prep"), Dependency("sweep", 3), Dependency("x.y-z"))
    assert [str(d) for d in spec.after] == ["prep", "sweep:3", "x.y-z"]


def test_dependency_single_string() -> None:
    assert ok(job(dependencies={"after": "prep"})).after == (Dependency("prep"),)


@pytest.mark.parametrize("text, expected", [
    ("a", Dependency("a")),
    ("a:0", Dependency("a", 0)),
    ("job:3", Dependency("job", 3)),
    ("a:x", None),
    ("a:", None),
    ("a:3:4", None),
    (":3", None),
    ("", None),
    ("a b", None),
    (5, None),
    (None, None),
])
def test_parse_dependency(text: Any, expected: Optional[Dependency]) -> None:
    assert parse_dependency(text) == expected


def test_attributes_are_kept_sorted() -> None:
    spec = ok(job(attributes={"b": 1, "a": "x"}))
    assert spec.attributes == (("a", "x"), ("b", 1))


# ---- variables ----


@pytest.mark.parametrize("var", KNOWN_VARIABLES)
def test_every_known_variable_is_accepted_in_args(var: str) -> None:
    spec = ok(exe(args=[f"v=${{{var}}}"]) | {"iteration": {"stop": 2}})
    assert spec.execution.args[0].names == (var,)
    assert spec.execution.args[0].fill({var: "X"}) == "v=X"


def test_whitespace_inside_variable_braces() -> None:
    spec = ok(exe(args=["${ it }", "${it  }", "a${\tit}b"]) | {"iteration": {"stop": 2}})
    assert [a.names for a in spec.execution.args] == [("it",), ("it",), ("it",)]
    assert [a.fill({"it": "5"}) for a in spec.execution.args] == ["5", "5", "a5b"]


def test_variable_left_unfilled_stays_as_written() -> None:
    spec = ok(exe(stdout="out.${it}.${rcnt}") | {"iteration": {"stop": 2}})
    assert spec.execution.stdout is not None
    assert spec.execution.stdout.fill({"it": "1"}) == "out.1.${rcnt}"


def test_script_keeps_unknown_shell_variables() -> None:
    spec = ok(job(execution={"script": "echo ${HOME} ${it} ${ my_var }"}, iteration={"stop": 2}))
    script = spec.execution.script
    assert script is not None
    assert script.names == ("it",)
    assert script.fill({"it": "4"}) == "echo ${HOME} 4 ${ my_var }"


def test_plain_dollar_is_literal() -> None:
    spec = ok(exe(args=["$HOME", "cost: $5", "{it}"]))
    assert [a.is_literal for a in spec.execution.args] == [True, True, True]
    assert [a.fill({}) for a in spec.execution.args] == ["$HOME", "cost: $5", "{it}"]


@pytest.mark.parametrize("field_path, raw", [
    ("execution.exec", exe(exec="/bin/${itt}")),
    ("execution.args[1]", exe(args=["ok", "${itt}"])),
    ("execution.env.X", exe(env={"X": "${itt}"})),
    ("execution.wd", exe(wd="${itt}")),
    ("execution.stdin", exe(stdin="${itt}")),
    ("execution.stdout", exe(stdout="${ itt }")),
    ("execution.stderr", exe(stderr="${itt}")),
    ("execution.venv", exe(venv="${itt}")),
    ("execution.modules[0]", exe(modules=["${itt}"])),
])
def test_unknown_variable_is_rejected_with_suggestion(field_path: str, raw: Dict[str, Any]) -> None:
    err = find(bad(raw), "bad", field_path)
    assert "unknown variable ${itt}" in err.message
    assert "did you mean ${it}?" in err.message


def test_unknown_variable_suggestion_for_other_names() -> None:
    err = find(bad(exe(args=["${nnode}"])), "bad", "execution.args[0]")
    assert "did you mean ${nnodes}?" in err.message


def test_unknown_variable_without_close_match_lists_known_ones() -> None:
    err = find(bad(exe(args=["${zzzzzz}"])), "bad", "execution.args[0]")
    assert "did you mean" not in err.message
    assert "known: " in err.message and "rcnt" in err.message


# ---- wall time forms ----


@pytest.mark.parametrize("text, seconds", [
    ("1h30m", 5400.0),
    ("90s", 90.0),
    ("1h", 3600.0),
    ("10m", 600.0),
    ("1m30s", 90.0),
    ("2h0m5s", 7205.0),
    ("01:30:00", 5400.0),
    ("10:00", 600.0),
    ("2-00:00:00", 172800.0),
    ("1-01:00:01", 90001.0),
    (" 90s ", 90.0),
    ("30", 30.0),
    ("1.5", 1.5),
    (30, 30.0),
    (2.5, 2.5),
])
def test_parse_walltime_good(text: Any, seconds: float) -> None:
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", [
    None, True, False, 0, -1, -0.5, "", "   ", "0s", "0", "-5", "abc", "1x", "h", "1h 30m", "1:00:00:00",
    "00:00:00", [], {}, float("nan"),
])
def test_parse_walltime_bad(text: Any) -> None:
    assert parse_walltime(text) is None


# ---- bad descriptions, one by one ----

BAD: List[Tuple[str, Dict[str, Any], str, str, str]] = [
    # (id, description, job label, dotted field, fragment of the message)
    ("unknown-top-field", job(colour="red"), "bad", "colour", "unknown field"),
    ("misspelled-resources", job(resource={}), "bad", "resource", "did you mean 'resources'"),
    ("misspelled-dependencies", job(dependecies={}), "bad", "dependecies", "did you mean 'dependencies'"),
    ("misspelled-iteration", job(iterations={"stop": 2}), "bad", "iterations", "did you mean 'iteration'"),
    ("misspelled-exec-field", exe(stdot="x"), "bad", "execution.stdot", "did you mean 'stdout'"),
    ("misspelled-arg", exe(arg=["x"]), "bad", "execution.arg", "did you mean 'args'"),
    ("misspelled-numCores", res(numcores=2), "bad", "resources.numcores", "did you mean 'numCores'"),
    ("misspelled-exact", res(numCores={"exatc": 2}), "bad", "resources.numCores.exatc", "did you mean 'exact'"),
    ("misspelled-stop", job(iteration={"stpo": 2}), "bad", "iteration.stpo", "did you mean 'stop'"),
    ("misspelled-after", job(dependencies={"aftr": ["a"]}), "bad", "dependencies.aftr", "did you mean 'after'"),
    ("unknown-field-no-match", job(zzzzzz=1), "bad", "zzzzzz", "allowed: name"),
    ("missing-name", {"execution": {"exec": "/bin/true"}}, "#1", "name", "missing"),
    ("empty-name", job(name=""), "#1", "name", "non-empty string"),
    ("number-name", job(name=5), "#1", "name", "non-empty string"),
    ("name-with-space", job(name="a b"), "a b", "name", "may contain only"),
    ("name-with-colon", job(name="a:b"), "a:b", "name", "may contain only"),
    ("name-with-slash", job(name="a/b"), "a/b", "name", "may contain only"),
    ("name-with-variable", job(name="j${it}"), "j${it}", "name", "cannot contain variables"),
    ("missing-execution", {"name": "bad"}, "bad", "execution", "missing"),
    ("execution-not-object", job(execution="/bin/true"), "bad", "execution", "must be an object"),
    ("execution-empty", job(execution={}), "bad", "execution", "needs 'exec'"),
    ("execution-empty-exec", job(execution={"exec": ""}), "bad", "execution", "needs 'exec'"),
    ("exec-and-script", exe(script="echo"), "bad", "execution.script", "exclude each other"),
    ("script-with-args", job(execution={"script": "echo", "args": ["x"]}), "bad", "execution.args", "'args'"),
    ("exec-not-string", exe(exec=["/bin/true"]), "bad", "execution.exec", "must be a string"),
    ("exec-boolean", exe(exec=True), "bad", "execution.exec", "must be a string"),
    ("args-not-list", exe(args="x y"), "bad", "execution.args", "must be a list"),
    ("arg-not-string", exe(args=["ok", {"a": 1}]), "bad", "execution.args[1]", "must be a string"),
    ("env-not-object", exe(env="A=1"), "bad", "execution.env", "must be an object"),
    ("env-value-list", exe(env={"A": [1]}), "bad", "execution.env.A", "must be a string"),
    ("modules-not-list", exe(modules=5), "bad", "execution.modules", "must be a list"),
    ("unknown-model", exe(model="mpich"), "bad", "execution.model", "unknown model 'mpich'"),
    ("model-opts-not-object", exe(model_opts="x"), "bad", "execution.model_opts", "must be an object"),
    ("mpirun-not-string", exe(model_opts={"mpirun": 5}), "bad", "execution.model_opts.mpirun", "path"),
    ("mpirun-args-not-list", exe(model_opts={"mpirun_args": "-x"}), "bad", "execution.model_opts.mpirun_args",
     "list of strings"),
    ("stop-equals-start", job(iteration={"start": 5, "stop": 5}), "bad", "iteration", "must be greater"),
    ("stop-below-start", job(iteration={"start": 5, "stop": 2}), "bad", "iteration", "must be greater"),
    ("stop-zero", job(iteration={"stop": 0}), "bad", "iteration", "must be greater"),
    ("negative-start", job(iteration={"start": -1, "stop": 3}), "bad", "iteration.start", ">= 0"),
    ("missing-stop", job(iteration={"start": 1}), "bad", "iteration.stop", "missing"),
    ("stop-string", job(iteration={"stop": "10"}), "bad", "iteration.stop", "whole number"),
    ("start-float", job(iteration={"start": 0.5, "stop": 10}), "bad", "iteration.start", "whole number"),
    ("stop-boolean", job(iteration={"stop": True}), "bad", "iteration.stop", "whole number"),
    ("values-with-stop", job(iteration={"values": ["a"], "stop": 3}), "bad", "iteration", "excludes"),
    ("values-with-start", job(iteration={"values": ["a"], "start": 0}), "bad", "iteration", "excludes"),
    ("values-empty", job(iteration={"values": []}), "bad", "iteration.values", "non-empty list"),
    ("values-not-list", job(iteration={"values": "abc"}), "bad", "iteration.values", "non-empty list"),
    ("iteration-string", job(iteration="ten"), "bad", "iteration", "must be an object"),
    ("resources-not-object", job(resources=4), "bad", "resources", "must be an object"),
    ("min-above-max", res(numCores={"min": 5, "max": 2}), "bad", "resources.numCores", "greater than max"),
    ("nodes-min-above-max", res(numNodes={"min": 3, "max": 1}), "bad", "resources.numNodes", "greater than max"),
    ("exact-with-min", res(numCores={"exact": 2, "min": 1}), "bad", "resources.numCores", "'exact' excludes"),
    ("exact-with-max", res(numCores={"exact": 2, "max": 3}), "bad", "resources.numCores", "'exact' excludes"),
    ("exact-with-scheduler", res(numCores={"exact": 2, "scheduler": "split-into"}), "bad", "resources.numCores",
     "'exact' excludes"),
    ("cores-zero", res(numCores=0), "bad", "resources.numCores", "at least 1"),
    ("cores-negative", res(numCores=-2), "bad", "resources.numCores", "at least 1"),
    ("exact-zero", res(numCores={"exact": 0}), "bad", "resources.numCores.exact", "at least 1"),
    ("min-negative", res(numCores={"min": -1}), "bad", "resources.numCores.min", "at least 1"),
    ("max-zero", res(numCores={"max": 0}), "bad", "resources.numCores.max", "at least 1"),
    ("nodes-zero", res(numNodes={"exact": 0}), "bad", "resources.numNodes.exact", "at least 1"),
    ("nodes-negative", res(numNodes=-1), "bad", "resources.numNodes", "at least 1"),
    ("exact-string", res(numCores={"exact": "2"}), "bad", "resources.numCores.exact", "whole number"),
    ("exact-fraction", res(numCores={"exact": 1.5}), "bad", "resources.numCores.exact", "whole number"),
    ("exact-boolean", res(numCores={"exact": True}), "bad", "resources.numCores.exact", "whole number"),
    ("cores-string", res(numCores="2"), "bad", "resources.numCores", "must be a number or an object"),
    ("cores-empty-object", res(numCores={}), "bad", "resources.numCores", "needs 'exact'"),
    ("unknown-scheduler", res(numCores={"min": 1, "scheduler": "fastest"}), "bad",
     "resources.numCores.scheduler.name", "unknown iteration scheduler"),
    ("scheduler-not-name", res(numCores={"min": 1, "scheduler": 5}), "bad", "resources.numCores.scheduler",
     "must be a name"),
    ("scheduler-with-max", res(numCores={"min": 1, "max": 2, "scheduler": "split-into"}), "bad",
     "resources.numCores.max", "not allowed"),
    ("scheduler-bad-parts", res(numCores={"min": 1, "scheduler": {"name": "split-into", "params": {"parts": 0}}}),
     "bad", "resources.numCores.scheduler.params.parts", ">= 1"),
    ("scheduler-params-not-object", res(numCores={"min": 1, "scheduler": {"name": "split-into", "params": [1]}}),
     "bad", "resources.numCores.scheduler.params", "must be an object"),
    ("scheduler-on-both", res(numCores={"min": 1, "scheduler": "split-into"},
                              numNodes={"min": 1, "scheduler": "split-into"}), "bad", "resources", "not both"),
    ("unknown-node-cr", res(nodeCrs={"tpu": 1}), "bad", "resources.nodeCrs.tpu", "unknown consumable resource"),
    ("node-cr-zero", res(nodeCrs={"gpu": 0}), "bad", "resources.nodeCrs.gpu", ">= 1"),
    ("node-cr-boolean", res(nodeCrs={"gpu": True}), "bad", "resources.nodeCrs.gpu", ">= 1"),
    ("node-cr-string", res(nodeCrs={"gpu": "1"}), "bad", "resources.nodeCrs.gpu", ">= 1"),
    ("node-crs-not-object", res(nodeCrs="gpu"), "bad", "resources.nodeCrs", "must be an object"),
    ("top-wt-word", job(wt="soon"), "bad", "wt", "bad wall time 'soon'"),
    ("top-wt-zero", job(wt=0), "bad", "wt", "bad wall time"),
    ("top-wt-negative", job(wt=-10), "bad", "wt", "bad wall time"),
    ("top-wt-zero-seconds", job(wt="0s"), "bad", "wt", "bad wall time"),
    ("top-wt-boolean", job(wt=True), "bad", "wt", "bad wall time"),
    ("resources-wt-bad", res(wt="1x"), "bad", "resources.wt", "bad wall time '1x'"),
    ("resources-wt-list", res(wt=[1]), "bad", "resources.wt", "bad wall time"),
    ("dependencies-not-object", job(dependencies=["a"]), "bad", "dependencies", "must be an object"),
    ("after-number", job(dependencies={"after": 5}), "bad", "dependencies.after", "must be a list"),
    ("after-bad-iteration", job(dependencies={"after": ["a:x"]}), "bad", "dependencies.after[0]",
     "not a job name or 'job:iteration'"),
    ("after-empty-iteration", job(dependencies={"after": ["ok", "a:"]}), "bad", "dependencies.after[1]",
     "not a job name"),
    ("after-two-colons", job(dependencies={"after": ["a:3:4"]}), "bad", "dependencies.after[0]", "not a job name"),
    ("after-no-name", job(dependencies={"after": [":3"]}), "bad", "dependencies.after[0]", "not a job name"),
    ("after-empty", job(dependencies={"after": [""]}), "bad", "dependencies.after[0]", "not a job name"),
    ("after-null", job(dependencies={"after": [None]}), "bad", "dependencies.after[0]", "not a job name"),
    ("after-space", job(dependencies={"after": ["a b"]}), "bad", "dependencies.after[0]", "not a job name"),
    ("after-number-item", job(dependencies={"after": [3]}), "bad", "dependencies.after[0]", "not a job name"),
    ("attributes-not-object", job(attributes="x"), "bad", "attributes", "must be an object"),
]


@pytest.mark.parametrize("raw, job_label, fld, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_description_names_job_and_field(raw: Dict[str, Any], job_label: str, fld: str, fragment: str) -> None:
    before = copy.deepcopy(raw)
    err = find(bad(raw), job_label, fld)
    assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    # the text a user reads names the job and the field too
    assert str(err).startswith(f"job '{job_label}': {fld}: ")
    assert raw == before, "parsing must not change the description"


# Wrong-typed values that happen to be "empty" (falsy) are bad input as well:
# the manual wants objects / lists / strings there, and nothing would use them.
FALSY_BAD: List[Tuple[str, Dict[str, Any], str]] = [
    ("env-empty-list", exe(env=[]), "execution.env"),
    ("env-null-value", exe(env={"A": None}), "execution.env.A"),
    ("arg-null", exe(args=["ok", None]), "execution.args[1]"),
    ("model-zero", exe(model=0), "execution.model"),
    ("model-false", exe(model=False), "execution.model"),
    ("model-opts-empty-list", exe(model_opts=[]), "execution.model_opts"),
    ("node-crs-empty-list", res(nodeCrs=[]), "resources.nodeCrs"),
    ("after-empty-object", job(dependencies={"after": {}}), "dependencies.after"),
    ("after-zero", job(dependencies={"after": 0}), "dependencies.after"),
    ("attributes-empty-list", job(attributes=[]), "attributes"),
]


@pytest.mark.parametrize("raw, fld", [b[1:] for b in FALSY_BAD], ids=[b[0] for b in FALSY_BAD])
def test_falsy_value_of_wrong_type_is_rejected(raw: Dict[str, Any], fld: str) -> None:
    find(bad(raw), "bad", fld)


@pytest.mark.parametrize("raw", ["x", 5, None, ["a"], True, 1.5])
def test_non_object_job(raw: Any) -> None:
    errors = bad(raw, index=2)
    assert len(errors) == 1
    err = errors[0]
    assert err.job == "#3"
    assert "must be an object" in err.message
    assert str(err).startswith("job '#3': ")


def test_all_problems_of_a_job_are_reported_at_once() -> None:
    raw = {
        "name": "bad",
        "execution": {"exec": "/bin/true", "args": ["${itt}"], "model": "mpich"},
        "resources": {"numCores": {"min": 4, "max": 2}, "nodeCrs": {"tpu": 1}},
        "iteration": {"start": 3, "stop": 1},
        "dependencies": {"after": ["a:x"]},
        "wt": "never",
    }
    fields = {e.field for e in bad(raw)}
    assert {
        "execution.args[0]", "execution.model", "resources.numCores", "resources.nodeCrs.tpu", "iteration",
        "dependencies.after[0]", "wt",
    } <= fields


def test_job_label_uses_position_when_name_is_unusable() -> None:
    errors = bad({"execution": {"exec": "/bin/true", "bogus": 1}}, index=4)
    assert {e.job for e in errors} == {"#5"}
    assert {e.field for e in errors} == {"name", "execution.bogus"}


# ---- hpilot's own key: re-runs (QCG-PilotJob does not read it) ----


def test_retry_defaults_and_values() -> None:
    spec = ok(job())
    assert (spec.retry_lost, spec.retry_failed) == (1, 0)
    spec = ok(job(hpilot={"retry": {"lost": 3, "failed": 2}}))
    assert (spec.retry_lost, spec.retry_failed) == (3, 2)
    assert ok(job(hpilot={"retry": {"lost": 0}})).retry_lost == 0


@pytest.mark.parametrize("value,field", [
    ({"retry": {"failed": -1}}, "hpilot.retry.failed"),
    ({"retry": {"lost": True}}, "hpilot.retry.lost"),
    ({"retry": {"lost": 101}}, "hpilot.retry.lost"),
    ({"retry": {"faild": 1}}, "hpilot.retry.faild"),
    ({"retry": 3}, "hpilot.retry"),
    ({"retries": 3}, "hpilot.retries"),
    ([1], "hpilot"),
])
def test_bad_retry_names_the_field(value: Any, field: str) -> None:
    spec, errors = parse_job(job(hpilot=value))
    assert spec is None and [e.field for e in errors] == [field], [str(e) for e in errors]
