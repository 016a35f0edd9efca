"""Service options: defaults, a TOML file, the command line, in that rising order.

The defaults live in ``configs/defaults.toml`` (package data) so that the file a
user copies to start their own config is the one hpilot really reads.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on old clusters
    import tomli as tomllib

CHOICES = {
    "resources": ("auto", "local", "slurm"),
    "nl_start_method": ("slurm", "ssh"),
    "envschema": ("auto", "slurm"),
    "report_format": ("text", "json"),
    "log": ("critical", "error", "warning", "info", "debug", "notset"),
    "task_output": ("stream", "discard"),
}


# QCG-PilotJob's own spelling of a flag, kept working
ALIASES = {"nl_ready_treshold": "nl_ready_threshold"}


class ConfigError(ValueError):
    """A configuration problem; the message names the file, key and what is wrong."""


@dataclass(frozen=True)
class Options:
    wd: str = "."
    nodes: str = ""
    resources: str = "auto"
    envschema: str = "auto"
    report_format: str = "text"
    report_file: str = "jobs.report"
    log: str = "info"
    system_core: bool = False
    show_progress: Optional[bool] = None  # None: on when `hpilot run` has a terminal
    kill_grace: float = 3.0
    report_flush: float = 0.5
    # stdout/stderr a job does not direct to a file: streamed into <run dir>/output (one file per
    # launcher: `hpilot log JOB:IT`), or discarded (QCG-PilotJob's way)
    task_output: str = "stream"
    task_output_dir: Optional[str] = None  # where streamed output goes (default <run dir>/output)
    file_path: Optional[str] = None
    node: List[Dict[str, Any]] = field(default_factory=list)  # [[node]] tables
    # ---- network interface (issue #3) ----
    net: bool = False
    net_port: Optional[int] = None
    net_port_min: Optional[int] = None
    net_port_max: Optional[int] = None
    net_pub_port: Optional[int] = None
    net_iface: str = "127.0.0.1"
    disable_pub: bool = False
    # ---- Slurm allocations and node agents (issue #4) ----
    slurm_resources_file: Optional[str] = None
    slurm_limit_nodes_range_begin: Optional[int] = None
    slurm_limit_nodes_range_end: Optional[int] = None
    # seconds before the allocation's end (read from Slurm) at which the run stops resumably;
    # None: 60 s, or a tenth of the time limit if less (stop.py)
    stop_before: Optional[float] = None
    disable_nl: bool = False
    nl_start_method: str = "slurm"
    nl_init_timeout: float = 30.0
    nl_ready_threshold: float = 1.0
    # ---- statistics (issue #6) ----
    enable_rt_stats: bool = False
    wrapper_rt_stats: Optional[str] = None
    enable_proc_stats: bool = False
    proc_stats_interval: float = 1.0
    # ---- journal and resume (issue #7) ----
    journal: bool = True
    journal_sync: float = 0.5
    resume: Optional[str] = None
    # ---- governor mode (issue #5) ----
    governor: bool = False
    parent: Optional[str] = None  # a partition manager: the governor's address (or its wd / run dir)
    id: Optional[str] = None
    tags: str = ""
    partition_nodes: Optional[int] = None
    slurm_partition_nodes: Optional[int] = None
    partition_heartbeat: float = 1.0
    partition_register_timeout: float = 30.0
    partition_query_timeout: float = 60.0  # --parent --net: a forwarded request unanswered this long gets an error
    # run nothing: every task "succeeds" after this many seconds (control-plane benchmarks, tests)
    dry_run_tasks: Optional[float] = None
    # `hpilot run`: wait for every job even without a finishAfterAllTasksDone request
    finish_when_done: bool = False
    # LocalManager: the process that started this service; when it dies, so does the service
    parent_pid: Optional[int] = None


_FIELDS = {f.name: f for f in dataclasses.fields(Options)}


def load_toml(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _defaults() -> Dict[str, Any]:
    from importlib import resources

    text = resources.files("hpilot.configs").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _check(source: str, values: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for raw_key, value in values.items():
        key = ALIASES.get(raw_key.replace("-", "_"), raw_key.replace("-", "_"))
        f = _FIELDS.get(key)
        if f is None or key in ("finish_when_done", "parent_pid"):
            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown option '{raw_key}'{hint}")
        out[key] = _typed(source, key, value, f.type)
    return out


def _typed(source: str, key: str, value: Any, typ: Any) -> Any:
    want = str(typ)
    if want in ("bool", "Optional[bool]") and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{key}' must be true or false, not {value!r}")
    if want in ("float", "Optional[float]"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{source}: '{key}' must be a number >= 0, not {value!r}")
        return float(value)
    if want == "Optional[int]":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{source}: '{key}' must be a whole number >= 0, not {value!r}")
        return value
    if want in ("str", "Optional[str]"):
        if isinstance(value, int) and not isinstance(value, bool) and key == "nodes":
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, not {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(CHOICES[key])}, not {value!r}")
    if key == "node" and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
        raise ConfigError(f"{source}: 'node' must be [[node]] tables")
    return value


def build_options(config_file: Optional[str], cli: Mapping[str, Any]) -> Options:
    """Merge defaults, the TOML file and the command line (None means 'not given')."""
    merged = _check("defaults.toml", _defaults())
    if config_file:
        merged.update(_check(config_file, load_toml(config_file)))
    given = {k: v for k, v in cli.items() if v is not None}
    finish = bool(given.pop("finish_when_done", False))
    parent = given.pop("parent_pid", None)
    merged.update(_check("command line", given))
    merged["finish_when_done"] = finish
    merged["parent_pid"] = parent
    return Options(**merged)
