"""Job descriptions in QCG-PilotJob's submit format, parsed into frozen records.

Parsing never raises on user input: every problem becomes a :class:`FieldError`
that names the job and the dotted field, so that a submit response can list all
of them at once and a user fixes the file in one pass.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

from hpilot.partition.spec import Execution, IterSchedulerSpec, Resources, ResourceSize
from hpilot.partition.variables import Template, UnknownVariable, compile_template

MODELS = ("default", "threads", "openmpi", "intelmpi", "srunmpi")
ITER_SCHEDULERS = ("maximum-iters", "split-into")
KNOWN_CRS = ("gpu", "mem")
# One state byte per iteration: 10^8 iterations is 100 MB in the registry.
MAX_ITERATIONS = 100_000_000

_JOB_KEYS = ("name", "execution", "resources", "iteration", "dependencies", "attributes", "wt", "hpilot")
# hpilot's own keys of a job (under "hpilot"; QCG-PilotJob does not read them)
_HPILOT_KEYS = ("retry",)
_RETRY_KEYS = ("lost", "failed")
MAX_RETRIES = 100
RETRY_LOST = 1  # re-runs of an iteration lost to a node, agent or partition failure, by default
_EXEC_KEYS = (
    "exec", "args", "script", "env", "wd", "stdin", "stdout", "stderr",
    "modules", "venv", "model", "model_opts",
)
_RES_KEYS = ("numCores", "numNodes", "nodeCrs", "wt")
_SIZE_KEYS = ("exact", "min", "max", "scheduler")
_ITER_KEYS = ("start", "stop", "values")
_DEP_KEYS = ("after",)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+\-@=,]+$")
_WT_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_EACH_RE = re.compile(r"^\$\{\s*it\s*\}$")
_HMS_RE = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


@dataclass(frozen=True)
class FieldError:
    job: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"job '{self.job}'" if self.job else "request"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class Iteration:
    start: int
    stop: int
    values: Optional[Tuple[str, ...]] = None

    @property
    def count(self) -> int:
        return self.stop - self.start

    def value(self, index: int) -> str:
        return self.values[index - self.start] if self.values is not None else str(index)


@dataclass(frozen=True)
class Dependency:
    job: str
    iteration: Optional[int] = None

    def __str__(self) -> str:
        return self.job if self.iteration is None else f"{self.job}:{self.iteration}"


@dataclass(frozen=True)
class JobSpec:
    name: str
    execution: Execution
    resources: Resources
    iteration: Optional[Iteration]
    after: Tuple[Dependency, ...]
    attributes: Tuple[Tuple[str, Any], ...] = ()
    # ``"after": ["a:${it}"]``: iteration i waits for iteration i of each of these jobs
    each: Tuple[str, ...] = ()
    # The description as the user sent it: kept for jobInfo, reports and resume.
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # hpilot's extension ("hpilot": {"retry": {"lost": N, "failed": M}}): how many times an
    # iteration runs again when its node, agent or partition was lost under it, and when it
    # failed by itself (a non-zero exit, its wall time)
    retry_lost: int = RETRY_LOST
    retry_failed: int = 0

    @property
    def iterations(self) -> int:
        return self.iteration.count if self.iteration else 1


class _Collector:
    """Gathers every error of one job instead of stopping at the first."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.errors: List[FieldError] = []

    def add(self, fld: str, message: str) -> None:
        self.errors.append(FieldError(self.job, fld, message))


def parse_job(raw: Any, index: int = 0) -> Tuple[Optional[JobSpec], List[FieldError]]:
    """Parse one job description; returns the job or the list of what is wrong."""
    if not isinstance(raw, dict):
        return None, [FieldError(f"#{index + 1}", "", f"a job description must be an object, not {_kind(raw)}")]
    name = raw.get("name")
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    c = _Collector(label)
    _unknown_keys(c, raw, _JOB_KEYS, "")
    _check_name(c, name)
    execution = _parse_execution(c, raw.get("execution"))
    resources = _parse_resources(c, raw.get("resources"), raw.get("wt"))
    iteration = _parse_iteration(c, raw.get("iteration"))
    after, each = _parse_dependencies(c, raw.get("dependencies"))
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        c.add("attributes", f"must be an object, not {_kind(attributes)}")
        attributes = {}
    retry_lost, retry_failed = _parse_hpilot(c, raw.get("hpilot"))
    if c.errors or execution is None or resources is None:
        return None, c.errors
    spec = JobSpec(
        name=str(name),
        execution=execution,
        resources=resources,
        iteration=iteration,
        after=after,
        attributes=tuple(sorted(attributes.items())),
        each=each,
        source=raw,
        retry_lost=retry_lost,
        retry_failed=retry_failed,
    )
    return spec, []


def _parse_hpilot(c: _Collector, raw: Any) -> Tuple[int, int]:
    """``"hpilot": {"retry": {"lost": 3, "failed": 2}}``: hpilot's own keys (retry counts)."""
    lost, failed = RETRY_LOST, 0
    if raw is None:
        return lost, failed
    if not isinstance(raw, dict):
        c.add("hpilot", f"must be an object, not {_kind(raw)}")
        return lost, failed
    _unknown_keys(c, raw, _HPILOT_KEYS, "hpilot.")
    retry = raw.get("retry")
    if retry is None:
        return lost, failed
    if not isinstance(retry, dict):
        c.add("hpilot.retry", f"must be an object such as {{\"lost\": 3, \"failed\": 1}}, not {_kind(retry)}")
        return lost, failed
    _unknown_keys(c, retry, _RETRY_KEYS, "hpilot.retry.")
    out = {"lost": lost, "failed": failed}
    for key in _RETRY_KEYS:
        v = retry.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_RETRIES:
            c.add(f"hpilot.retry.{key}", f"must be a whole number from 0 to {MAX_RETRIES}, not {v!r}")
        else:
            out[key] = v
    return out["lost"], out["failed"]


def _or_empty(value: Any, empty: Any) -> Any:
    """``None`` (or a missing key) means "not given"; any other value is checked as it is,
    so that ``"env": []`` or ``"model": 0`` are reported instead of silently ignored."""
    return empty if value is None else value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _unknown_keys(c: _Collector, raw: Mapping[str, Any], allowed: Tuple[str, ...], prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}"
            c.add(f"{prefix}{key}", f"unknown field{hint}")


def _check_name(c: _Collector, name: Any) -> None:
    if name is None:
        c.add("name", "missing (every job needs a unique name)")
    elif not isinstance(name, str) or not name:
        c.add("name", f"must be a non-empty string, not {_kind(name)}")
    elif "${" in name:
        c.add("name", "a job name cannot contain variables")
    elif not _NAME_RE.match(name):
        c.add("name", "may contain only letters, digits and _ . + - @ = , (no spaces, ':' or '/')")


def _template(c: _Collector, fld: str, value: Any, shell: bool = False, numbers: bool = False) -> Optional[Template]:
    """A string field (the manual's ``String``); ``numbers``: a number stands for its text too
    (``args``, which QCG-PilotJob turns into strings itself)."""
    if value is None:
        return None
    if not isinstance(value, str) and not (numbers and isinstance(value, (int, float)) and not isinstance(value, bool)):
        c.add(fld, f"must be a string, not {_kind(value)}")
        return None
    if "\0" in str(value):
        c.add(fld, "contains a NUL byte")
        return None
    try:
        return compile_template(str(value), allow_unknown=shell)
    except UnknownVariable as e:
        c.add(fld, str(e))
        return None


def _templates(c: _Collector, fld: str, value: Any, allow_single: bool, numbers: bool = False
               ) -> Tuple[Template, ...]:
    if value is None:
        return ()
    if allow_single and isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        c.add(fld, f"must be a list of strings, not {_kind(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        if item is None:
            c.add(f"{fld}[{i}]", "must be a string, not null")
            continue
        t = _template(c, f"{fld}[{i}]", item, numbers=numbers)
        if t is not None:
            out.append(t)
    return tuple(out)


def _parse_execution(c: _Collector, raw: Any) -> Optional[Execution]:
    if raw is None:
        c.add("execution", "missing (needs 'exec' or 'script')")
        return None
    if not isinstance(raw, dict):
        c.add("execution", f"must be an object, not {_kind(raw)}")
        return None
    _unknown_keys(c, raw, _EXEC_KEYS, "execution.")
    has_exec, has_script = raw.get("exec") not in (None, ""), raw.get("script") not in (None, "")
    if not has_exec and not has_script:
        c.add("execution", "needs 'exec' (with optional 'args') or 'script'")
    elif has_exec and has_script:
        c.add("execution.script", "'script' and 'exec' exclude each other")
    elif has_script and raw.get("args"):
        c.add("execution.args", "'args' go with 'exec', not with 'script'")
    env = _or_empty(raw.get("env"), {})
    env_t: List[Tuple[str, Template]] = []
    if not isinstance(env, dict):
        c.add("execution.env", f"must be an object of NAME: value, not {_kind(env)}")
    else:
        for key, val in env.items():
            if val is None:
                c.add(f"execution.env.{key}", "must be a string, not null")
                continue
            t = _template(c, f"execution.env.{key}", val)
            if t is not None:
                env_t.append((str(key), t))
    model = _or_empty(raw.get("model"), "default")
    if not isinstance(model, str) or model.lower() not in MODELS:
        c.add("execution.model", f"unknown model {model!r}; known: {', '.join(MODELS)}")
        model = "default"
    opts = _or_empty(raw.get("model_opts"), {})
    if not isinstance(opts, dict):
        c.add("execution.model_opts", f"must be an object, not {_kind(opts)}")
        opts = {}
    else:
        _check_model_opts(c, opts)
    return Execution(
        exec=_template(c, "execution.exec", raw.get("exec")) if has_exec else None,
        args=_templates(c, "execution.args", raw.get("args"), allow_single=False, numbers=True),
        script=_template(c, "execution.script", raw.get("script"), shell=True) if has_script else None,
        env=tuple(env_t),
        wd=_template(c, "execution.wd", raw.get("wd")),
        stdin=_template(c, "execution.stdin", raw.get("stdin")),
        stdout=_template(c, "execution.stdout", raw.get("stdout")),
        stderr=_template(c, "execution.stderr", raw.get("stderr")),
        modules=_templates(c, "execution.modules", raw.get("modules"), allow_single=True),
        venv=_template(c, "execution.venv", raw.get("venv")),
        model=model.lower(),
        model_opts=tuple(sorted(opts.items())),
    )


def _check_model_opts(c: _Collector, opts: Mapping[str, Any]) -> None:
    if "mpirun" in opts and not isinstance(opts["mpirun"], str):
        c.add("execution.model_opts.mpirun", "must be a path string")
    if "mpirun_args" in opts and not (
        isinstance(opts["mpirun_args"], list) and all(isinstance(a, str) for a in opts["mpirun_args"])
    ):
        c.add("execution.model_opts.mpirun_args", "must be a list of strings")


def parse_walltime(value: Any) -> Optional[float]:
    """Seconds from '1h30m', '90s', '01:30:00', '2-00:00:00' or a plain number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if 0 < value < float("inf") else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    m = _WT_RE.match(text)
    if m and any(m.groups()):
        h, mi, s = (int(g) if g else 0 for g in m.groups())
        total = h * 3600 + mi * 60 + s
        return float(total) if total > 0 else None
    m = _HMS_RE.match(text)
    if m:
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        total = ((d * 24 + h) * 60 + mi) * 60 + s
        return float(total) if total > 0 else None
    try:
        secs = float(text)
    except ValueError:
        return None
    return secs if 0 < secs < float("inf") else None


def _parse_resources(c: _Collector, raw: Any, top_wt: Any) -> Optional[Resources]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        c.add("resources", f"must be an object, not {_kind(raw)}")
        return None
    _unknown_keys(c, raw, _RES_KEYS, "resources.")
    cores = _parse_size(c, "resources.numCores", raw.get("numCores"))
    nodes = _parse_size(c, "resources.numNodes", raw.get("numNodes"))
    wt_raw = raw.get("wt", top_wt)
    wt = None
    if wt_raw is not None:
        wt = parse_walltime(wt_raw)
        if wt is None:
            c.add("resources.wt" if "wt" in raw else "wt",
                  f"bad wall time {wt_raw!r}; use e.g. '90s', '1h30m', '01:30:00' or seconds > 0")
    crs = _or_empty(raw.get("nodeCrs"), {})
    crs_t: List[Tuple[str, int]] = []
    if not isinstance(crs, dict):
        c.add("resources.nodeCrs", f"must be an object like {{\"gpu\": 1}}, not {_kind(crs)}")
    else:
        for key, count in crs.items():
            fld = f"resources.nodeCrs.{key}"
            if str(key).lower() not in KNOWN_CRS:
                c.add(fld, f"unknown consumable resource; known: {', '.join(KNOWN_CRS)}")
            elif isinstance(count, bool) or not isinstance(count, int) or count < 1:
                c.add(fld, "must be a whole number >= 1")
            else:
                crs_t.append((str(key).lower(), count))
    if nodes is not None and nodes.scheduler is not None and cores is not None and cores.scheduler:
        c.add("resources", "an iteration scheduler may be set on numCores or numNodes, not both")
    return Resources(cores=cores, nodes=nodes, crs=tuple(crs_t), wt=wt)


def _as_count(c: _Collector, fld: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        c.add(fld, f"must be a whole number, not {value!r}")
        return None
    if value < 1:
        c.add(fld, f"must be at least 1, not {value}")
        return None
    return value


def _parse_size(c: _Collector, fld: str, raw: Any) -> Optional[ResourceSize]:
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        n = _as_count(c, f"{fld}", raw)
        return ResourceSize(exact=n) if n else None
    if not isinstance(raw, dict):
        c.add(fld, f"must be a number or an object with exact or min/max, not {_kind(raw)}")
        return None
    _unknown_keys(c, raw, _SIZE_KEYS, f"{fld}.")
    exact = _as_count(c, f"{fld}.exact", raw.get("exact"))
    lo = _as_count(c, f"{fld}.min", raw.get("min"))
    hi = _as_count(c, f"{fld}.max", raw.get("max"))
    sched = _parse_iter_scheduler(c, f"{fld}.scheduler", raw.get("scheduler"))
    if exact is not None and (lo is not None or hi is not None or sched is not None):
        c.add(fld, "'exact' excludes 'min', 'max' and 'scheduler'")
    if "exact" not in raw and "min" not in raw and "max" not in raw and sched is None:
        c.add(fld, "needs 'exact', or 'min' and/or 'max'")
    if lo is not None and hi is not None and lo > hi:
        c.add(fld, f"min ({lo}) is greater than max ({hi})")
    if sched is not None and hi is not None:
        c.add(f"{fld}.max", f"'max' is not allowed with the {sched.name} iteration scheduler")
    return ResourceSize(exact=exact, min=lo, max=hi, scheduler=sched)


def _parse_iter_scheduler(c: _Collector, fld: str, raw: Any) -> Optional[IterSchedulerSpec]:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        c.add(fld, "must be a name or an object with 'name' and optional 'params'")
        return None
    name = raw["name"].lower()
    if name not in ITER_SCHEDULERS:
        c.add(f"{fld}.name", f"unknown iteration scheduler {raw['name']!r}; known: {', '.join(ITER_SCHEDULERS)}")
        return None
    params = _or_empty(raw.get("params"), {})
    if not isinstance(params, dict):
        c.add(f"{fld}.params", "must be an object")
        return None
    if name == "split-into" and "parts" in params:
        parts = params["parts"]
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            c.add(f"{fld}.params.parts", "must be a whole number >= 1")
    return IterSchedulerSpec(name=name, params=tuple(sorted(params.items())))


def _parse_iteration(c: _Collector, raw: Any) -> Optional[Iteration]:
    if raw is None:
        return None
    if not isinstance(raw, dict):  # the API's Jobs.add takes a number or a list; a submit takes the object
        c.add("iteration", f"must be an object with 'stop' (and 'start') or 'values', not {_kind(raw)}")
        return None
    _unknown_keys(c, raw, _ITER_KEYS, "iteration.")
    if "values" in raw:
        values = raw["values"]
        if "stop" in raw or "start" in raw:
            c.add("iteration", "'values' excludes 'start' and 'stop'")
            return None
        if not isinstance(values, list) or not values:
            c.add("iteration.values", "must be a non-empty list")
            return None
        if len(values) > MAX_ITERATIONS:
            c.add("iteration.values", f"at most {MAX_ITERATIONS:,} values per job")
            return None
        wrong = next((i for i, v in enumerate(values)
                      if isinstance(v, bool) or not isinstance(v, (str, int, float))), None)
        if wrong is not None:
            c.add(f"iteration.values[{wrong}]", f"must be a string (or a number), not {_kind(values[wrong])}")
            return None
        return Iteration(0, len(values), tuple(str(v) for v in values))
    start, stop = raw.get("start", 0), raw.get("stop")
    bad = False
    for key, val in (("start", start), ("stop", stop)):
        if val is None or isinstance(val, bool) or not isinstance(val, int):
            c.add(f"iteration.{key}", "missing" if val is None else f"must be a whole number, not {val!r}")
            bad = True
    if bad or not isinstance(start, int) or not isinstance(stop, int):
        return None
    if start < 0:
        c.add("iteration.start", f"must be >= 0, not {start}")
        return None
    if stop <= start:
        c.add("iteration", f"stop ({stop}) must be greater than start ({start})")
        return None
    if stop - start > MAX_ITERATIONS:
        c.add("iteration", f"{stop - start} iterations; at most {MAX_ITERATIONS:,} per job (split it into jobs)")
        return None
    return Iteration(start, stop)


def _parse_dependencies(c: _Collector, raw: Any) -> Tuple[Tuple[Dependency, ...], Tuple[str, ...]]:
    """The whole-job and single-iteration dependencies, and the per-iteration ones
    (``"job:${it}"``: QCG-PilotJob's way to make iteration i wait for iteration i of job)."""
    if raw is None:
        return (), ()
    if not isinstance(raw, dict):
        c.add("dependencies", f"must be an object with 'after', not {_kind(raw)}")
        return (), ()
    _unknown_keys(c, raw, _DEP_KEYS, "dependencies.")
    after = _or_empty(raw.get("after"), [])
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list):
        c.add("dependencies.after", "must be a list of job names")
        return (), ()
    deps = []
    each: List[str] = []
    for i, item in enumerate(after):
        if isinstance(item, str) and "${" in item:
            name, sep, it = item.partition(":")
            if sep and _EACH_RE.match(it) and _NAME_RE.match(name):
                if name not in each:
                    each.append(name)
            else:
                c.add(f"dependencies.after[{i}]", f"{item!r}: the only variable a dependency may hold is "
                                                  "the iteration, as 'job:${it}'")
            continue
        dep = parse_dependency(item)
        if dep is None:
            c.add(f"dependencies.after[{i}]", f"{item!r} is not a job name or 'job:iteration'")
        else:
            deps.append(dep)
    return tuple(deps), tuple(each)


def parse_dependency(item: Any) -> Optional[Dependency]:
    if not isinstance(item, str) or not item:
        return None
    name, sep, it = item.partition(":")
    if not _NAME_RE.match(name):
        return None
    if not sep:
        return Dependency(name)
    try:
        return Dependency(name, int(it))
    except ValueError:
        return None
