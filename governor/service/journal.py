"""The run's journal: what was accepted and what finished, in a form a kill cannot corrupt.

One record per line: ``<kind> <crc32 of body, 8 hex> <body>\\n``.  A line without
its newline, with a bad checksum or an unknown kind is dropped and counted,
never misread, so a journal cut at any byte (kill -9, a full disk) or with a
garbage tail replays everything before the damage.

Kinds: ``H`` header (JSON, with the format version), ``J`` JSON records
(submit, cancel, remove, drop), ``S`` an iteration started (job, iteration, pid,
time: lets a resume kill what the dead service left running), ``I`` an iteration
finished (tab-separated: job, iteration, state letter, exit code, start, end,
allocation, wd, reason) - the common record, kept cheap to write and to parse.

Each batch of records is written with one ``write()`` as soon as the service
has it, so a kill -9 of the service loses nothing it had seen; ``fsync`` runs
at most every ``sync_every`` seconds (default 0.5), bounding what a machine
crash can lose.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from hpilot.governor.core.records import (  # noqa: F401 - the format lives there
    FILE,
    LETTER_STATE,
    STATE_LETTER,
    VERSION,
    JournalError,
    escape,
    finished_record,
    frame,
    json_record,
    started_record,
    unescape,
)
from hpilot.launcher.private import WriteFailure


class Journal:
    """Appends records.  A write that fails (a full disk) is kept in :attr:`failed`, with what
    it could not write; the owner stops the run resumably and, once it has made room (disk.py),
    calls :meth:`retry`, which writes that remainder and goes on, or gives up for good.  A
    resume replays every record before a failure (a torn last one is dropped, like a kill's)."""

    def __init__(self, path: str, sync_every: float = 0.5, header: Optional[Dict[str, Any]] = None) -> None:
        self.path = path
        self.sync_every = sync_every
        self.failed: Optional[WriteFailure] = None  # the first failure (why the run stopped)
        self._unwritten = b""  # what a failed write left (its records after the torn one included)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # every script and environment
        os.fchmod(self._fd, 0o600)
        self._pending: List[bytes] = []
        self._unsynced = False
        self._last_sync = time.monotonic()
        if size == 0:
            self.write([frame("H", json.dumps({"version": VERSION, "created": time.time(), **(header or {})}))])
        elif not _ends_a_line(path, size):  # the last run was cut in a record: ours start on a line of their own
            self.write([b"\n"])

    def add(self, record: bytes) -> None:
        self._pending.append(record)

    def flush(self) -> None:
        """Hand what is pending to the kernel: from here a kill of the service cannot lose it."""
        if self._pending:
            self.write(self._pending)
            self._pending = []

    def write(self, records: List[bytes]) -> None:
        data = b"".join(records)
        if self._unwritten:  # stuck after a failure: kept in order, behind what it could not write
            self._unwritten += data
            return
        self._put(data)

    def _put(self, data: bytes) -> None:
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except OSError as e:
            if self.failed is None:
                self.failed = WriteFailure.of(self.path, e)
            self._unwritten = data
        self._unsynced = True

    def retry(self) -> bool:
        """After a failure, once there is room: write what was left; True if the journal goes on."""
        if self._unwritten:
            data, self._unwritten = self._unwritten, b""
            self._put(data)
        return not self._unwritten

    def maybe_sync(self) -> Optional[float]:
        """fsync if due; returns seconds until the next one is due (None: nothing to sync)."""
        if not self._unsynced:
            return None
        left = self.sync_every - (time.monotonic() - self._last_sync)
        if left > 0:
            return left
        self._sync()
        self._unsynced = False
        self._last_sync = time.monotonic()
        return None

    def _sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:  # an I/O error, or a file system that reports a full disk only now
            if self.failed is None:
                self.failed = WriteFailure.of(self.path, e)

    def close(self) -> None:
        self.flush()
        self._sync()
        os.close(self._fd)


def _ends_a_line(path: str, size: int) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) == b"\n"
    except OSError:
        return True


@dataclass
class Replay:
    header: Dict[str, Any]
    records: List[Tuple[str, Any]] = field(default_factory=list)  # (kind, parsed)
    dropped: int = 0
    problems: List[str] = field(default_factory=list)
    good_bytes: int = 0  # where the last good record ends


def read(path: str) -> Replay:
    """The whole journal in memory (tests, small runs); a resume uses :func:`stream`."""
    replay, records = stream(path)
    replay.records = list(records)
    return replay


def stream(path: str) -> Tuple[Replay, Iterator[Tuple[str, Any]]]:
    """The header now (so a wrong file fails at once), the records as they are read.

    ``Replay.dropped`` and ``problems`` are complete once the iterator is exhausted."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise JournalError(f"{path}: no journal here (is this an hpilot run directory?)") from None
    first_end = data.find(b"\n")
    parsed = _parse(data[:first_end]) if first_end >= 0 else None
    if parsed is None or parsed[0] != "H":
        raise JournalError(f"{path}: not an hpilot journal (first record unreadable)")
    header = parsed[1]
    if header.get("version") != VERSION:
        raise JournalError(f"{path}: journal format version {header.get('version')!r}; this hpilot "
                           f"reads version {VERSION} (use the hpilot version that wrote it)")
    out = Replay(header)
    return out, _records(data, first_end + 1, out)


def _records(data: bytes, pos: int, out: Replay) -> Iterator[Tuple[str, Any]]:
    lines = data[pos:].split(b"\n")  # one pass in C: a million records replay in seconds
    tail = lines.pop()  # after the last newline: empty, or a torn record
    n = 1
    for line in lines:
        n += 1
        parsed = _parse_finished(line) if line[:2] == b"I " else _parse(line)
        pos += len(line) + 1
        if parsed is None:
            out.dropped += 1
            if len(out.problems) < 10:
                out.problems.append(f"record {n} (byte {pos - len(line) - 1}) is damaged and was skipped")
        else:
            out.good_bytes = pos
            yield parsed
    if tail:
        out.dropped += 1
        out.problems.append(f"the last record (byte {pos}) was cut short and was skipped")


def _parse_finished(line: bytes) -> Optional[Tuple[str, Any]]:
    body = line[11:]
    try:
        if line[10:11] != b" " or zlib.crc32(body) != int(line[2:10], 16):
            return None
        p = body.decode("utf-8").split("\t")
        if len(p) != 9:
            return None
        if "\\" in p[6] or "\\" in p[7] or "\\" in p[8]:  # escapes are rare: unescape only then
            p[6], p[7], p[8] = unescape(p[6]), unescape(p[7]), unescape(p[8])
        return "I", (p[0], int(p[1]), LETTER_STATE[p[2]], int(p[3]) if p[3] else None, float(p[4]),
                     float(p[5]), p[6], p[7], p[8] or None)
    except (ValueError, KeyError, UnicodeDecodeError):
        return None


def finished(records: Iterable[Tuple[str, Any]]) -> Iterator[Tuple[Any, ...]]:
    """Every finished iteration of the records, as the ``I`` record's tuple (job, iteration,
    state, exit code, start, end, allocation, wd, reason): the ``I`` records and the batches of
    plain successes (``"t": "ok"``) alike."""
    for kind, rec in records:
        if kind == "I":
            yield rec
        elif kind == "J" and rec.get("t") == "ok":
            yield from ok_batch(rec)


def ok_batch(rec: Dict[str, Any]) -> Iterator[Tuple[Any, ...]]:
    """A batch of plain successes (``"t": "ok"``) as the ``I`` tuples it stands for."""
    job = rec["job"]
    return ((job, it, "SUCCEED", 0, b, e, a, w, None)
            for it, a, w, b, e in zip(rec["its"], rec["a"], rec["w"], rec["b"], rec["e"]))


def read_header(path: str) -> Dict[str, Any]:
    """Only the first record: cheap, for the options a resume takes over."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise JournalError(f"{path}: {e.strerror}") from None
    parsed = _parse(first.rstrip(b"\n"))
    if parsed is None or parsed[0] != "H":
        raise JournalError(f"{path}: not an hpilot journal")
    return dict(parsed[1])


def _parse(line: bytes) -> Optional[Tuple[str, Any]]:
    if line[:2] == b"I ":  # the common record first, with as little work as possible
        return _parse_finished(line)
    if len(line) < 11 or line[1:2] != b" " or line[10:11] != b" ":
        return None
    kind = line[:1].decode("ascii", "replace")
    body = line[11:]
    try:
        if zlib.crc32(body) != int(line[2:10], 16):
            return None
        text = body.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    try:
        if kind in ("H", "J"):
            return kind, json.loads(text)
        p = text.split("\t")
        if kind == "I" and len(p) == 9:
            return kind, (p[0], int(p[1]), LETTER_STATE[p[2]], int(p[3]) if p[3] else None, float(p[4]),
                          float(p[5]), unescape(p[6]), unescape(p[7]), unescape(p[8]) or None)
        if kind == "S" and len(p) == 4:
            return kind, (p[0], int(p[1]), int(p[2]) if p[2] else None, float(p[3]))
    except (ValueError, KeyError):
        return None
    return None


def started(records: Iterable[Tuple[str, Any]]) -> Iterator[Tuple[str, int, Optional[int], float]]:
    """Every start of the records, as the ``S`` record's tuple (job, iteration, pid, time): the
    ``S`` records and the batches of starts (``"t": "started"``) alike."""
    for kind, rec in records:
        if kind == "S":
            yield rec
        elif kind == "J" and rec.get("t") == "started":
            yield from started_batch(rec)


def started_batch(rec: Dict[str, Any]) -> Iterator[Tuple[str, int, Optional[int], float]]:
    """A batch of starts (``"t": "started"``) as the ``S`` tuples it stands for."""
    job = rec["job"]
    return ((job, it, pid, at) for it, pid, at in zip(rec["its"], rec["pids"], rec["at"]))


def iter_runs(path: str) -> Iterator[str]:
    """Run directories under ``path`` (a run dir itself, or a wd with .hpilot/), newest first."""
    if os.path.exists(os.path.join(path, FILE)):
        yield path
        return
    aux = os.path.join(path, ".hpilot")
    if not os.path.isdir(aux):
        return
    runs = [os.path.join(aux, d) for d in os.listdir(aux) if d != "latest"]
    yield from sorted((r for r in runs if os.path.exists(os.path.join(r, FILE))), key=os.path.getmtime,
                      reverse=True)
