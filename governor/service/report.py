"""The files a run leaves for people and tools: ``jobs.report`` and ``final_status``.

``jobs.report`` gets one entry per job as it finishes and is flushed within a
second, so a run killed when its allocation ends still tells what finished.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import IO, Any, Dict, Optional

from hpilot.governor.core import counts
from hpilot.governor.core.queries import _iteration_counts, _runtime, failures
from hpilot.governor.core.registry import JobRecord, fmt_time
from hpilot.launcher.private import WriteFailure, open_private, write_private


class JobReport:
    def __init__(self, path: str, fmt: str = "text", flush_every: float = 0.5, fresh: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.flush_every = flush_every
        # a resume writes the report anew: every job once, from before and after the crash
        self._f: IO[str] = open_private(path, "w" if fresh else "a", encoding="utf-8")
        self._dirty = False
        self._last_flush = time.monotonic()
        self.failed: Optional[WriteFailure] = None  # a write that failed: nothing more is written

    def _write(self, text: str) -> None:
        if self.failed is not None:
            return
        try:
            self._f.write(text)
        except OSError as e:
            self.failed = WriteFailure.of(self.path, e)
        self._dirty = True

    def job_done(self, rec: JobRecord) -> None:
        entry = job_entry(rec)
        self._write(json.dumps(entry) + "\n" if self.fmt == "json" else _text(entry))

    def note(self, text: str) -> None:
        """A last line about the run itself ("interrupted by SIGTERM: 12 iterations left to
        resume"): in the text report only (every line of the JSON report is a job)."""
        if self.fmt != "json":
            self._write(f"# {text}\n")

    def maybe_flush(self) -> Optional[float]:
        """Flush if due; returns seconds until the next flush is due, or None if clean."""
        if not self._dirty:
            return None
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every:
            self.flush()
            return None
        return self.flush_every - (now - self._last_flush)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._f.flush()
            except OSError as e:
                self.failed = WriteFailure.of(self.path, e)
        self._dirty = False
        self._last_flush = time.monotonic()

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:  # what was buffered cannot be written: said once, not raised
            if self.failed is None:
                self.failed = WriteFailure.of(self.path, e)


def job_entry(rec: JobRecord) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "name": rec.name,
        "state": rec.state.value,
        "history": [{"state": st.value, "time": fmt_time(ts)} for st, ts in rec.history],
    }
    if rec.messages:
        entry["messages"] = rec.messages
    entry["counts"] = counts.of_job(rec)
    if rec.failures:
        entry["failures"] = failures(rec)
    if rec.task.iterative:
        entry["iterations"] = _iteration_counts(rec)
        if rec.runtime is not None:
            entry["runtime"] = {"rtime": str(timedelta(seconds=rec.runtime))}
    elif 0 in rec.runs:
        entry["runtime"] = _runtime(rec, rec.runs[0])
    return entry


def _text(e: Dict[str, Any]) -> str:
    lines = [f"{e['name']} ({e['state']})"]
    rt = e.get("runtime", {})
    if "allocation" in rt:
        lines.append(f"    allocation: {rt['allocation']}  wd: {rt['wd']}")
    if "rtime" in rt:
        code = f"  exit code: {rt['exit_code']}" if "exit_code" in rt else ""
        lines.append(f"    runtime: {rt['rtime']}{code}")
    if "iterations" in e:
        it = e["iterations"]
        lines.append(f"    iterations: {it['total']} ({it['start']}..{it['stop'] - 1}), "
                     f"{it['finished']} finished, {it['failed']} not succeeded")
        lines.append(f"    counts: {counts.text(e['counts'])}")
    lines.append("    history: " + ", ".join(f"{h['state']} {h['time']}" for h in e["history"]))
    lines.extend(f"    message: {m}" for m in e.get("messages", []))
    for f in e.get("failures", []):
        lines.append(f"    failed: {failure_text(e['name'], f)}")
        lines.extend(f"      | {ln}" for ln in (f.get("stderr") or "").splitlines())
    return "\n".join(lines) + "\n"


def failure_text(job: str, f: Dict[str, Any]) -> str:
    """``sweep:3 exit code 3`` (and the reason when it did not end by itself)."""
    task = f"{job}:{f['iteration']}" if "iteration" in f else job
    why = f" ({f['reason']})" if f.get("reason") else ""
    return f"{task} exit code {f.get('exit_code')}{why}"


def write_final_status(path: str, status: Dict[str, Any]) -> None:
    write_private(path, json.dumps(status, indent=2) + "\n")
