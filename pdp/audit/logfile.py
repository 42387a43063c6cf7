"""Reading decision logs: JSON Lines files (plain or gzip, ``-`` for stdin), one record each.

Lines are parsed with orjson (bench/REPLAY.md measures it against json and msgspec on
decision-log lines). A line that is not a JSON object is counted, never fatal: a log cut by a
crash ends with half a line.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

loads = orjson.loads


@dataclass
class ReadStats:
    """What reading met: lines that were not JSON objects, and bytes read (for progress)."""

    unreadable: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    first_unreadable: str = ""
    files_done_bytes: int = 0  # sizes of the files read to the end


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    handle = open(path, "rb")
    if handle.read(2) == b"\x1f\x8b":  # gzip: logrotate's `compress`
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def total_bytes(paths: Iterable[str]) -> int:
    total = 0
    for path in paths:
        if path != "-":
            try:
                total += os.path.getsize(path)
            except OSError:
                pass
    return total


def records(paths: Iterable[str], stats: ReadStats | None = None) -> Iterator[dict]:
    """Every JSON object line of ``paths``, in order. OSError for a file that cannot be read."""
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        handle = _open(path)
        raw = handle.fileobj if isinstance(handle, gzip.GzipFile) else handle  # compressed bytes read
        try:
            n = 0
            for line in handle:
                n += 1
                if n & 1023 == 0 and raw is not sys.stdin.buffer:
                    stats.bytes_read = stats.files_done_bytes + raw.tell()
                try:
                    record = loads(line)
                except orjson.JSONDecodeError:
                    record = None
                if type(record) is dict:
                    yield record
                elif line.strip():
                    stats.unreadable += 1
                    if not stats.first_unreadable:
                        stats.first_unreadable = f"{path}:{n}"
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        if path != "-":
            stats.files_done_bytes += os.path.getsize(path)
            stats.bytes_read = stats.files_done_bytes


@dataclass
class Progress:
    """A one-line progress report on stderr, redrawn at most 5 times a second, only when
    stderr is a terminal (a pipe or a CI log gets nothing). A few lines of our own rather
    than a dependency: the only measure is bytes read out of bytes to read."""

    stats: ReadStats
    label: str = "replay"
    enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    _last: float = 0.0
    _start: float = field(default_factory=time.monotonic)

    def update(self, decisions: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        total = self.stats.bytes_total
        done = self.stats.bytes_read
        rate = decisions / max(now - self._start, 1e-9)
        if total:
            share = min(done / total, 1.0)
            bar = "#" * int(share * 30)
            text = f"{self.label} [{bar:<30}] {share:6.1%} {decisions:,} lines, {rate:,.0f}/s"
        else:
            text = f"{self.label} {decisions:,} lines, {rate:,.0f}/s"
        sys.stderr.write("\r" + text + "\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def is_request(record: dict) -> bool:
    """Whether a line logs a request, decided or refused: not a drop report, nor an AuthZEN
    search (one line per search, no decision), which replay and review pass over uncounted."""
    return "event" not in record and "search" not in record


def logged_input(record: dict) -> dict | None:
    """The request of a decided line, ready to decide again "at its logged time": when the
    input has no ``context.time`` (the server used its clock), the line's ``time`` is set as
    ``context.time``. None for a line without input or without a decision."""
    request = record.get("input")
    if type(request) is not dict or record.get("decision") not in ("ALLOW", "DENY"):
        return None
    context = request.get("context")
    if type(context) is not dict:
        context = {}
    if "time" not in context and "time" in record:
        request = {**request, "context": {**context, "time": record["time"]}}
    return request

