"""Latency and throughput measurement for ``pdp bench`` (and the comparison suite in bench/).

The pieces are independent of the command line so that other harnesses time engines the
same way:

* :func:`read_requests` reads a JSON Lines request file; a bad line is a
  :class:`RequestsFileError` naming the file and line.
* :func:`time_calls` calls a function on inputs (cycling through them) for a number of calls
  or a duration, timing every call on its own with ``time.perf_counter_ns``; it returns the
  samples and the wall time. :func:`summarize` turns them into :class:`Stats`: p50, p90, p99,
  p99.9, min, max, mean and throughput.
* :func:`time_remote` does the same against ``pdp serve`` over gRPC with N calls in flight
  (one thread per call in flight, one shared channel).
* :func:`parse_duration` reads budgets such as ``2us`` or ``1.5ms``; :func:`format_ns`
  prints them back.

Each sample includes the cost of one ``perf_counter_ns`` pair (:func:`timer_overhead_ns`,
typically 30–100 ns); it is reported, not subtracted. Garbage collection stays on, as in
production. Throughput is decisions divided by the wall time of the timed loop, timer
overhead included.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from . import __version__

__all__ = ["Progress", "RequestsFileError", "Stats", "format_ns", "machine_info", "parse_duration",
           "percentile", "read_requests", "summarize", "time_calls", "time_remote", "timer_overhead_ns"]

# --------------------------------------------------------------------------------------------
# durations

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|μs|ms|s)?\s*$")


def parse_duration(text: str, default_unit: str | None = None) -> int:
    """``"2us"``, ``"1.5ms"``, ``"500ns"``, ``"3s"`` ⇒ nanoseconds (an int). A bare number takes
    ``default_unit``, or is an error when there is none. Raises ``ValueError`` with a message
    a user can act on."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (a number and a unit: 2us, 500ns, 1.5ms, 3s)")
    number, unit = m.groups()
    if unit is None:
        if default_unit is None:
            raise ValueError(f"{text!r} has no unit (write 2us, 500ns, 1.5ms or 3s)")
        unit = default_unit
    ns = float(number) * _UNITS_NS[unit]
    if ns <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return round(ns)


def format_ns(ns: float) -> str:
    """Nanoseconds for people: ``850 ns``, ``2.10 µs``, ``41.3 µs``, ``1.20 ms``, ``2.00 s``."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    for unit, scale in (("µs", 1e3), ("ms", 1e6), ("s", 1e9)):
        value = ns / scale
        if value < 1_000 or unit == "s":
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# request files


class RequestsFileError(Exception):
    """A request file that cannot be used: ``str()`` is ``FILE:LINE[:COLUMN]: message`` (or
    ``FILE: message`` when no line is to blame)."""

    def __init__(self, file: str, line: int, message: str, column: int = 0):
        self.file, self.line, self.column, self.message = file, line, column, message
        where = f"{file}:{line}:{column}" if line and column else f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


class _NotJson(Exception):
    pass


def _reject_constant(name: str):
    raise _NotJson(name)


def read_requests(path: str) -> list[tuple[int, dict]]:
    """The requests of a JSON Lines file (``-`` reads standard input) as ``(line number,
    request)`` pairs. Blank lines are skipped; any other line must be one JSON object. Raises
    :class:`RequestsFileError` for the first bad line, or when there is no request at all.
    Requests are not checked against SPEC §3 here (the engine does that)."""
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise RequestsFileError(name, 0, f"cannot read the requests: {exc.strerror}") from None
    out: list[tuple[int, dict]] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestsFileError(name, number, f"not valid UTF-8 (byte {exc.start + 1})") from None
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except _NotJson as exc:
            raise RequestsFileError(name, number, f"invalid JSON: {exc.args[0]} is not a JSON number") from None
        except json.JSONDecodeError as exc:
            raise RequestsFileError(name, number, f"invalid JSON: {exc.msg}", exc.colno) from None
        except RecursionError:
            raise RequestsFileError(name, number, "invalid JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise RequestsFileError(name, number, f"a request is a JSON object, got {_json_type(value)} "
                                                  f"(one request per line)")
        out.append((number, value))
    if not out:
        raise RequestsFileError(name, 0, "no requests (JSON Lines: one request object per line)")
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# --------------------------------------------------------------------------------------------
# statistics


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1) of already sorted samples, by the nearest-rank method:
    the smallest sample with at least ``q`` of the samples at or below it."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q * len(sorted_samples)))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


@dataclass
class Stats:
    """Latency (ns, per call) and throughput of one timed loop."""

    calls: int
    decisions: int
    seconds: float
    p50: float
    p90: float
    p99: float
    p999: float
    min: float
    max: float
    mean: float
    batch_size: int = 1
    concurrency: int = 1
    errors: int = 0
    samples: list = field(default_factory=list, repr=False)

    @property
    def throughput(self) -> float:
        """Decisions per second of wall time."""
        return self.decisions / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"calls": self.calls, "decisions": self.decisions, "batch_size": self.batch_size,
                "concurrency": self.concurrency, "seconds": round(self.seconds, 6),
                "throughput_per_s": round(self.throughput, 1), "errors": self.errors,
                "latency_ns": {"p50": round(self.p50), "p90": round(self.p90), "p99": round(self.p99),
                               "p99.9": round(self.p999), "min": round(self.min), "max": round(self.max),
                               "mean": round(self.mean, 1)}}


def summarize(samples_ns: Sequence[float], seconds: float, batch_size: int = 1, concurrency: int = 1,
              errors: int = 0, keep_samples: bool = False) -> Stats:
    """Stats of per-call samples (ns); ``seconds`` is the wall time they took together."""
    s = sorted(samples_ns)
    if not s:
        raise ValueError("no samples")
    return Stats(calls=len(s), decisions=len(s) * batch_size, seconds=seconds,
                 p50=percentile(s, 0.50), p90=percentile(s, 0.90), p99=percentile(s, 0.99),
                 p999=percentile(s, 0.999), min=s[0], max=s[-1], mean=sum(s) / len(s),
                 batch_size=batch_size, concurrency=concurrency, errors=errors,
                 samples=list(samples_ns) if keep_samples else [])


def timer_overhead_ns(rounds: int = 20_000) -> int:
    """Median cost of the ``perf_counter_ns()`` pair that brackets every timed call."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(rounds):
        t = clock()
        out.append(clock() - t)
    out.sort()
    return out[len(out) // 2]


# --------------------------------------------------------------------------------------------
# progress


class Progress:
    """A one-line progress indicator on stderr, drawn only when stderr is a terminal and only
    once a phase has run for ``delay`` seconds (short runs stay quiet). ``update`` is cheap
    to call often: it redraws at most ten times a second."""

    def __init__(self, stream=None, enabled: bool | None = None, delay: float = 0.5, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.delay = delay
        self.width = width
        self._label = ""
        self._start = 0.0
        self._last = 0.0
        self._drawn = False

    def start(self, label: str) -> None:
        self._label = label
        self._start = time.monotonic()
        self._last = float("-inf")

    def update(self, fraction: float, count: int, unit: str = "calls") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < self.delay or now - self._last < 0.1:
            return
        self._last = now
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self._label:<12} [{bar}] {fraction * 100:3.0f}%  {now - self._start:5.1f} s  "
                          f"{count:,} {unit}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


# --------------------------------------------------------------------------------------------
# timing loops


def time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], *, calls: int | None = None,
               seconds: float | None = None, progress: Progress | None = None, label: str = "",
               unit: str = "calls") -> tuple[list[int], float]:
    """Call ``fn(x)`` for ``x`` cycling through ``inputs``, ``calls`` times or for ``seconds``
    (whichever is given; ``calls`` wins), timing each call. Returns the per-call samples (ns)
    and the wall time of the whole loop (s). At least one call is made."""
    if not inputs:
        raise ValueError("no inputs")
    if calls is None and seconds is None:
        raise ValueError("give calls or seconds")
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    n = len(inputs)
    chunk = max(1, min(n, 1024))
    limit_ns = None if calls is not None or seconds is None else int(seconds * 1e9)
    if progress is not None:
        progress.start(label)
    start = clock()
    offset = 0
    done = 0
    while True:
        take = chunk if calls is None else min(chunk, calls - done)
        if offset + take <= n:
            batch = inputs[offset:offset + take]
        else:
            batch = list(inputs[offset:]) + list(inputs[:take - (n - offset)])
        for x in batch:
            t = clock()
            fn(x)
            append(clock() - t)
        done += take
        offset = (offset + take) % n
        elapsed = clock() - start
        if calls is not None:
            if done >= calls:
                break
            fraction = done / calls
        else:
            if elapsed >= limit_ns:
                break
            fraction = elapsed / limit_ns
        if progress is not None:
            progress.update(fraction, done, unit)
    wall = (clock() - start) / 1e9
    if progress is not None:
        progress.done()
    return samples, wall


def time_remote(fn: Callable[[Any], Any], inputs: Sequence[Any], *, concurrency: int = 1,
                calls: int | None = None, seconds: float | None = None, progress: Progress | None = None,
                label: str = "", unit: str = "calls") -> tuple[list[int], float, int, list[BaseException]]:
    """``time_calls`` with ``concurrency`` threads calling ``fn`` at once (a blocking gRPC
    stub releases the GIL while it waits, so each thread keeps one call in flight).

    Returns (samples in ns, wall seconds, failed calls, the first few exceptions). A failed
    call is counted and not sampled; the loop goes on.
    """
    if not inputs:
        raise ValueError("no inputs")
    if calls is None and seconds is None:
        raise ValueError("give calls or seconds")
    concurrency = max(1, concurrency)
    n = len(inputs)
    lock = threading.Lock()
    state = {"issued": 0, "done": 0, "failed": 0}
    exceptions: list[BaseException] = []
    per_thread: list[list[int]] = [[] for _ in range(concurrency)]
    deadline = None
    stop = threading.Event()

    def worker(k: int) -> None:
        clock = time.perf_counter_ns
        out = per_thread[k]
        i = k
        while not stop.is_set():
            if calls is not None:
                with lock:
                    if state["issued"] >= calls:
                        return
                    state["issued"] += 1
            elif time.perf_counter() >= deadline:
                return
            x = inputs[i % n]
            i += concurrency
            t = clock()
            try:
                fn(x)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                with lock:
                    state["failed"] += 1
                    if len(exceptions) < 5:
                        exceptions.append(exc)
                continue
            out.append(clock() - t)

    if progress is not None:
        progress.start(label)
    start = time.perf_counter()
    if seconds is not None and calls is None:
        deadline = start + seconds
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            threads[0].join(0.05)
            if progress is not None:
                count = sum(len(s) for s in per_thread)
                if calls is not None:
                    fraction = count / calls
                else:
                    fraction = (time.perf_counter() - start) / seconds
                progress.update(fraction, count, unit)
    finally:
        stop.set()
        for t in threads:
            t.join()
        if progress is not None:
            progress.done()
    wall = time.perf_counter() - start
    samples = [x for s in per_thread for x in s]
    return samples, wall, state["failed"], exceptions


# --------------------------------------------------------------------------------------------
# the machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict:
    """The facts a latency figure needs beside it: CPU, cores usable by this process, OS, Python."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return {"cpu": _cpu_model(), "cores": cores, "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "pdp": __version__, "load_average_1m": None if load is None else round(load, 2)}
