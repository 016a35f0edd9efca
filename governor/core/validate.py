"""Checks of a whole submit beyond the shape of each job.

They need the context: the jobs already accepted, the other jobs of the same
submit, the resources, the file system.  Like parsing, they only collect
:class:`FieldError` s; a submit with any error is refused as a whole.
"""

from __future__ import annotations

import posixpath
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from hpilot.governor.core.host import EXECUTABLE, MISSING, Host
from hpilot.governor.core.jobspec import FieldError, JobSpec
from hpilot.partition.allocator import why_never_fits
from hpilot.partition.iterplan import PlanError, request_for
from hpilot.partition.resources import ResourceSet
from hpilot.partition.variables import Template

# name -> number of iterations (1 for a plain job) and whether it is iterative
KnownJob = Callable[[str], Optional[Sequence[int]]]


def check_submit(
    specs: Sequence[JobSpec],
    known: KnownJob,
    root_wd: str,
    resources: Optional[ResourceSet],
    models: Sequence[str],
    host: Host,
) -> List[FieldError]:
    errors: List[FieldError] = []
    batch: Dict[str, JobSpec] = {}
    for spec in specs:
        if spec.name in batch:
            errors.append(FieldError(spec.name, "name", "given twice in this submit"))
        elif known(spec.name) is not None:
            errors.append(FieldError(spec.name, "name",
                                     "a job of this name exists already (remove it first to reuse the name)"))
        batch[spec.name] = spec
    for spec in specs:
        errors.extend(_dependencies(spec, batch, known))
        errors.extend(_each(spec, batch, known))
        errors.extend(_iteration_variable(spec))
        if spec.execution.model not in models:
            errors.append(FieldError(spec.name, "execution.model",
                                     f"{spec.execution.model!r} is not available in this mode "
                                     f"(available: {', '.join(models)}); the MPI models need a Slurm allocation"))
        if resources is not None:
            errors.extend(_fits(spec, resources))
        errors.extend(_executable(spec, root_wd, host))
    if not errors:  # last, and only for a submit that is otherwise good: it creates directories
        for spec in specs:
            errors.extend(_wd(spec, root_wd, host))
    if not errors:  # then, with every wd in place, where the output goes
        errors.extend(_outputs(specs, root_wd, host))
    return errors


def _dependencies(spec: JobSpec, batch: Dict[str, JobSpec], known: KnownJob) -> List[FieldError]:
    out = []
    for i, dep in enumerate(spec.after):
        fld = f"dependencies.after[{i}]"
        if dep.job == spec.name:
            out.append(FieldError(spec.name, fld, "a job cannot depend on itself"))
            continue
        if dep.job in batch:
            other = batch[dep.job]
            its = other.iteration
            span = range(its.start, its.stop) if its else None
        else:
            k = known(dep.job)
            if k is None:
                out.append(FieldError(spec.name, fld,
                                      f"unknown job {dep.job!r} (not submitted before or in this submit)"))
                continue
            span = k if isinstance(k, range) else None
        if dep.iteration is not None:
            if span is None:
                out.append(FieldError(spec.name, fld,
                                      f"job {dep.job!r} has no iterations, so '{dep}' names nothing"))
            elif dep.iteration not in span:
                last = span.stop - 1
                out.append(FieldError(spec.name, fld,
                                      f"job {dep.job!r} has iterations {span.start}..{last}, not {dep.iteration}"))
    return out


def _templates(spec: JobSpec):
    ex = spec.execution
    yield "execution.exec", ex.exec
    for i, a in enumerate(ex.args):
        yield f"execution.args[{i}]", a
    yield "execution.script", ex.script
    for k, t in ex.env:
        yield f"execution.env.{k}", t
    for name in ("wd", "stdin", "stdout", "stderr", "venv"):
        yield f"execution.{name}", getattr(ex, name)
    for i, m in enumerate(ex.modules):
        yield f"execution.modules[{i}]", m


def _iteration_variable(spec: JobSpec) -> List[FieldError]:
    if spec.iteration is not None:
        return []
    return [
        FieldError(spec.name, fld, f"${{{var}}} is defined only for iterative jobs (add an 'iteration' element)")
        for fld, t in _templates(spec)
        if t is not None
        for var in ("it", "itval")
        if var in t.names
    ]


def _each(spec: JobSpec, batch: Dict[str, JobSpec], known: KnownJob) -> List[FieldError]:
    """``"after": ["a:${it}"]``: iteration i waits for a:i, so a must have every iteration this job has."""
    out = []
    fld = "dependencies.after"
    for name in spec.each:
        what = f"'{name}:${{it}}'"
        if spec.iteration is None:
            out.append(FieldError(spec.name, fld, f"{what}: ${{it}} in a dependency needs an iterative job "
                                                  "(add an 'iteration' element)"))
            continue
        if name == spec.name:
            out.append(FieldError(spec.name, fld, f"{what}: a job cannot depend on itself"))
            continue
        if name in batch:
            its = batch[name].iteration
            span: Optional[range] = range(its.start, its.stop) if its else None
        else:
            k = known(name)
            if k is None:
                out.append(FieldError(spec.name, fld, f"{what}: unknown job {name!r} (not submitted before or "
                                                      "in this submit)"))
                continue
            span = k if isinstance(k, range) else None
        if span is None:
            out.append(FieldError(spec.name, fld, f"{what}: job {name!r} has no iterations"))
        elif spec.iteration.start < span.start or spec.iteration.stop > span.stop:
            out.append(FieldError(spec.name, fld,
                                  f"{what}: job {name!r} has iterations {span.start}..{span.stop - 1}, but this "
                                  f"job's iterations {spec.iteration.start}..{spec.iteration.stop - 1} "
                                  "each need theirs"))
    return out


def _fits(spec: JobSpec, rs: ResourceSet) -> List[FieldError]:
    fld = "resources.numNodes" if spec.resources.nodes is not None else "resources.numCores"
    try:
        req = request_for(spec.resources, rs, spec.iterations, 0)
    except PlanError as e:
        return [FieldError(spec.name, fld, str(e))]
    why = why_never_fits(req, rs)
    return [] if why is None else [FieldError(spec.name, fld, f"impossible: {why}")]


def _literal(t: Optional[Template]) -> Optional[str]:
    return None if t is None else t.text


def _job_dir(spec: JobSpec, root_wd: str) -> Optional[str]:
    if spec.execution.wd is None:
        return root_wd
    wd = _literal(spec.execution.wd)
    return None if wd is None else posixpath.join(root_wd, wd)


def _executable(spec: JobSpec, root_wd: str, host: Host) -> List[FieldError]:
    """A missing program is refused now, not found out as 2000 FAILED iterations."""
    ex = spec.execution
    exe = _literal(ex.exec)
    if exe is None or ex.modules or ex.venv is not None:
        return []  # filled per iteration, or PATH changes when modules/venv load
    if "/" in exe:
        wd = _job_dir(spec, root_wd)
        if wd is None and not posixpath.isabs(exe):
            return []
        path = exe if posixpath.isabs(exe) or wd is None else posixpath.join(wd, exe)
        kind = host.kind(path)
        if kind == MISSING:
            return [FieldError(spec.name, "execution.exec", f"no such file: {path}")]
        if kind != EXECUTABLE:
            return [FieldError(spec.name, "execution.exec", f"not an executable file: {path}")]
        return []
    env_path = {k: t.text for k, t in ex.env}.get("PATH")
    if host.which(exe, env_path) is None:
        return [FieldError(spec.name, "execution.exec", f"program {exe!r} not found in PATH")]
    return []


def _wd(spec: JobSpec, root_wd: str, host: Host) -> List[FieldError]:
    wd = _job_dir(spec, root_wd)
    if wd is None or spec.execution.wd is None:
        return []
    why = host.make_dir(posixpath.normpath(wd))
    return [] if why is None else [FieldError(spec.name, "execution.wd", why)]


def _outputs(specs: Sequence[JobSpec], root_wd: str, host: Host) -> List[FieldError]:
    """``stdout``/``stderr`` that no task could open are refused now, naming the path: a
    directory, a missing directory, a place hpilot cannot write (the host says which, for the
    whole submit at once).  Only the literal part is checked (``out/${it}.txt``: ``out``); a
    missing directory is left alone for a job with dependencies, since an earlier job may make it."""
    asked: List[Tuple[str, str]] = []  # (job, field) of each path
    paths: List[Tuple[str, bool]] = []
    for spec in specs:
        wd = _job_dir(spec, root_wd)
        for name in ("stdout", "stderr"):
            t = getattr(spec.execution, name)
            if t is None:
                continue
            text = "".join(p if isinstance(p, str) else "\0" for p in t.pieces)  # \0: a variable (never in a path)
            if not posixpath.isabs(text):
                if wd is None:
                    continue
                text = posixpath.join(wd, text)
            asked.append((spec.name, f"execution.{name}"))
            paths.append((text, bool(spec.after)))
    problems = host.output_problems(paths) if paths else []
    return [FieldError(job, fld, why) for (job, fld), why in zip(asked, problems) if why is not None]
