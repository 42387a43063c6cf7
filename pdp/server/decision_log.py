"""The decision log (``--decision-log FILE``): one JSON line per decision, written off the hot path.

A handler only appends a tuple to a bounded queue (no formatting, no I/O, no lock); a
background thread turns tuples into lines and writes them. When the queue is full the
record is dropped and counted, never waited for: logging never slows or fails a decision.
Drops are reported as a ``{"event": "dropped", ...}`` line in the log itself, on stderr and
in the ``pdp_decision_log_dropped`` metric.

What a line holds: ``time``, ``request_id``, ``api`` (``pdp``, ``envoy``, ...),
``identity`` (type and id), ``action``, ``resource`` (type and id), ``decision``, ``reasons``
(rule ids), ``revision``, ``latency_us``, ``input`` (the request as decided, so that ``pdp
replay`` and ``pdp review`` can decide it again; left out with ``include_input=False``),
``shadow`` when a candidate set decided it too (pdp.server.shadow), and ``error`` for a
request that got no decision. An AuthZEN search is one line with ``search`` (``kind``,
``results``: how many the answer holds, ``more``: whether a next page exists) in place of
``decision`` and ``reasons``, and no ``input``: it is no decision to replay, and its page
tokens never reach the log. Every value goes through ``redact``: a string shaped like a
secret (a JWT, a bearer token, a long opaque token) and any scalar under a secret-sounding
key become ``"[REDACTED]"``.

Rotation: before each write the writer checks that FILE is still the file it has open (same
device and inode); when logrotate (or anyone) moved or deleted it, the writer opens FILE
anew, so nothing is written to a rotated file after the move is seen. ``reopen()`` forces it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

log = logging.getLogger("pdp.server")

REDACTED = "[REDACTED]"
#: Keys whose values never reach the log, whatever they hold (compared lower-case).
SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api_key",
                         "apikey", "token", "access_token", "id_token", "refresh_token", "secret", "password",
                         "credential", "credentials", "client_secret", "private_key"})
_SECRET_SHAPES = re.compile(
    r"(?:bearer|basic)\s+\S+"                          # an Authorization header value
    r"|eyJ[\w-]*\.[\w-]*\.[\w-]*"                       # a JWT (base64url JSON header)
    r"|[A-Za-z0-9+/_=-]{40,}",                          # a long opaque token or key
    re.IGNORECASE)

_STOP = object()


class SearchAnswer(NamedTuple):
    """What the log keeps of an answered AuthZEN search (queued where a decision goes)."""

    kind: str  # subject, resource or action
    results: int
    more: bool
    revision: str


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secrets replaced by ``"[REDACTED]"``: scalars and lists under a secret
    key, strings shaped like a token, recursively through lists and maps.

    A map under a secret key is walked, not dropped: ``identity.credential`` holds what is
    known *about* a credential (``issued_at``, ``kind``), which lifetime rules read and which
    replay needs; a secret inside it is still caught by its key or its shape.

    >>> redact({"id": "billing", "authorization": "Bearer abc", "note": "eyJhbGciOi.eyJzdWIi.sig"})
    {'id': 'billing', 'authorization': '[REDACTED]', 'note': '[REDACTED]'}
    >>> redact({"credential": {"issued_at": "2026-11-27T10:00:00Z", "secret": "s3"}})
    {'credential': {'issued_at': '2026-11-27T10:00:00Z', 'secret': '[REDACTED]'}}
    """
    if key and key.lower() in SECRET_KEYS and type(value) is not dict:
        return REDACTED
    if isinstance(value, str):
        return REDACTED if _SECRET_SHAPES.search(value) else value
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _field(obj: Any, name: str) -> Any:
    if type(obj) is dict:
        v = obj.get(name)
        if v is None or type(v) in (str, int, float, bool):
            return v
        return str(v)[:200]
    return None


class DecisionLog:
    """A JSON Lines writer with a bounded queue and a background thread.

    Args:
        path: the file, appended to (``-`` for stdout).
        max_queue: records waiting to be written beyond which new ones are dropped.
        on_drop: called with the number of records dropped since the last call (metrics).
        include_input: write each decision's ``input`` (``--decision-log-input off`` clears it).
    """

    #: request ⇒ the claims of its verified token, or None (the serving engine's
    #: ``token_claims``): the log carries claims, never a token (SPEC §8, §11).
    token_claims: Callable[[dict], dict | None] | None = None

    def __init__(self, path: str, max_queue: int = 10_000, on_drop: Callable[[int], None] | None = None,
                 include_input: bool = True):
        self.path = path
        self.include_input = include_input
        self._reopen_wanted = False
        self._file = sys.stdout.buffer if path == "-" else open(path, "ab", buffering=1 << 16)
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._put = self._queue.put_nowait
        self._drops = 0
        self._drops_reported = 0
        self._drop_lock = threading.Lock()
        self.on_drop = on_drop
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="pdp-decision-log", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._drops

    def record(self, api: str, request_id: str, request: Any, decision: Any, latency_ns: int,
               shadow: Any = None, when: float | None = None) -> None:
        """Queue one decision (hot path: one tuple, one non-blocking put).

        ``request`` is the request dict as decided; ``shadow`` the candidate's decision, if
        any; ``when`` the epoch time of the decision (now by default)."""
        try:
            self._put((time.time() if when is None else when, api, request_id, request, decision, latency_ns,
                       None, shadow))
        except queue.Full:
            self._dropped()

    def record_error(self, api: str, request_id: str, request: Any, error: str) -> None:
        """Queue a request that got no decision."""
        try:
            self._put((time.time(), api, request_id, request, None, 0, error, None))
        except queue.Full:
            self._dropped()

    def record_search(self, api: str, request_id: str, template: dict, kind: str, results: int, more: bool,
                      revision: str, latency_ns: int) -> None:
        """Queue one answered search: ``template`` is the request with the searched member
        unfilled, ``results`` the number answered, ``more`` whether a next page exists."""
        try:
            self._put((time.time(), api, request_id, template, SearchAnswer(kind, results, more, revision),
                       latency_ns, None, None))
        except queue.Full:
            self._dropped()

    def reopen(self) -> None:
        """Open FILE anew before the next write (after a rotation; SIGHUP asks for it)."""
        self._reopen_wanted = True

    def _dropped(self) -> None:
        with self._drop_lock:
            self._drops += 1

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued (waiting up to ``timeout`` for a stuck file), then stop."""
        try:
            self._queue.put(_STOP, timeout=timeout)  # the writer empties the queue meanwhile
        except queue.Full:
            log.error("decision log: the writer is stuck; %d records not written", self._queue.qsize())
        self._thread.join(timeout)
        if self._file is not sys.stdout.buffer:
            self._file.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout``) until everything queued so far is written."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    # ---- the writer thread

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            lines = []
            stop = False
            events = []
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    try:
                        lines.append(self.format(item))
                    except Exception:  # never let one odd record stop the log
                        log.exception("decision log: cannot format a record")
                if len(lines) >= 512:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            drop_line = self._drop_report()
            if drop_line:
                lines.append(drop_line)
            if lines:
                try:
                    self._follow_rotation()
                    self._file.write(b"".join(lines))
                    self._file.flush()
                    self.written += len(lines)
                except OSError as exc:
                    log.error("decision log: cannot write %s: %s", self.path, exc)
            for event in events:
                event.set()
            if stop:
                return

    def _follow_rotation(self) -> None:
        """Open FILE anew when it is no longer the file being written (moved, deleted) or a
        reopen was asked for. One stat per batch of lines: cheap next to the write."""
        if self.path == "-":
            return
        wanted, self._reopen_wanted = self._reopen_wanted, False
        if not wanted:
            try:
                on_disk = os.stat(self.path)
                mine = os.fstat(self._file.fileno())
                wanted = (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                wanted = True
            except (OSError, ValueError, AttributeError):  # not a real file (tests), or closed
                return
        if wanted:
            old = self._file
            self._file = open(self.path, "ab", buffering=1 << 16)
            try:
                old.close()
            except OSError as exc:
                log.error("decision log: closing the rotated file: %s", exc)
            log.info("decision log: reopened %s", self.path)

    def _drop_report(self) -> bytes:
        drops = self._drops
        new = drops - self._drops_reported
        if not new:
            return b""
        self._drops_reported = drops
        log.warning("decision log: %d records dropped (%d in all): the writer cannot keep up", new, drops)
        if self.on_drop is not None:
            self.on_drop(new)
        return (json.dumps({"time": _rfc3339(time.time()), "event": "dropped", "count": new, "total": drops})
                + "\n").encode()

    def format(self, item: tuple) -> bytes:
        """One queued tuple ⇒ one JSON line."""
        when, api, request_id, request, decision, latency_ns, error, shadow = item
        identity = request.get("identity") if type(request) is dict else None
        action = request.get("action") if type(request) is dict else None
        resource = request.get("resource") if type(request) is dict else None
        record: dict[str, Any] = {
            "time": _rfc3339(when),
            "request_id": request_id,
            "api": api,
            "identity": {"type": _field(identity, "type"), "id": _field(identity, "id")},
            "action": action if type(action) is str else _field(action, "name"),
            "resource": {"type": _field(resource, "type"), "id": _field(resource, "id")},
        }
        if type(decision) is SearchAnswer:
            record["search"] = {"kind": decision.kind, "results": decision.results, "more": decision.more}
            record["revision"] = decision.revision
            record["latency_us"] = round(latency_ns / 1000, 1)
        elif decision is not None:
            record["decision"] = decision.decision
            record["reasons"] = [r.rule for r in decision.reasons]
            limited = [{"rule": r.rule, "key": r.annotations["limit_key"]} for r in decision.reasons
                       if "limit_key" in r.annotations]
            if limited:  # velocity limits (SPEC §9): which budget was empty, and whose
                record["limited"] = limited
            record["revision"] = decision.revision
            record["latency_us"] = round(latency_ns / 1000, 1)
            if self.include_input and type(request) is dict:
                record["input"] = as_decided(request, self.token_claims)
            if shadow is not None:
                record["shadow"] = {"decision": shadow.decision, "revision": shadow.revision,
                                    "reasons": [r.rule for r in shadow.reasons]}
        else:
            record["decision"] = None
            record["error"] = error
        return (json.dumps(redact(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def as_decided(request: dict, token_claims: Callable[[dict], dict | None] | None = None) -> dict:
    """The request in the form the engine decided it: ``action`` as a map (a bare string is
    its name) and JSON nulls (absent values) left out. Redaction happens with the rest of the
    line. ``context.token`` is replaced by the claims of the verified token (``token_claims``
    of the request; ``pdp replay`` decides on them) and is redacted when it did not verify;
    a DPoP proof is left out."""
    out = {}
    for root in ("identity", "action", "resource", "context"):
        value = request.get(root)
        if root == "action" and type(value) is str:
            value = {"name": value}
        if value is not None:
            out[root] = _without_nulls(value)
    context = out.get("context")
    if type(context) is dict and ("token" in context or "dpop" in context):
        context.pop("dpop", None)
        if "token" in context:
            claims = token_claims(request) if token_claims is not None else None
            context["token"] = claims if type(claims) is dict else REDACTED
    return out


def _without_nulls(value: Any) -> Any:
    if type(value) is dict:
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if type(value) is list:
        return [_without_nulls(v) for v in value]
    return value


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
