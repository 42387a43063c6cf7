"""One in-memory store for all the workers of ``pdp serve --workers N``: the parent keeps a
``MemoryStore`` and answers its workers over a Unix socket (bench/LIMITS.md measures this
against the other designs).

The API, on both sides of the socket (what ``Limiter`` uses; small, so other per-server state
can reuse it):

- ``ParentStore(path)`` in the parent, before the workers start: serves a fresh MemoryStore on
  the Unix socket ``path`` (mode 0600); ``.url`` is what a worker passes to
  ``store.open_store(url, timeout)``, which gives it a ``SharedStore``; ``.close()`` at exit.
- ``SharedStore.take(budgets, take=True) -> list[int]``: one unit from every ``Budget(rule,
  key, count, period_ns)``, all or nothing, in one atomic step in the parent; the indices of
  the budgets without a unit ([] when taken). ``take=False`` only looks.
- ``take_many(requests, take=True)``: ``take`` for each list of budgets, in order, in one
  round trip. ``set_remaining(budget, n)``: set the units left (suites).
- Every call raises ``StoreUnavailable`` when the parent does not answer within the deadline.
- ``SharedStore.asyncio()``: an ``AsyncSharedStore`` for an event loop (AuthZEN over HTTP),
  whose ``take_many`` is a coroutine with the same answers and deadline.

- ``first_use(key, ttl_ns) -> bool``: a once-only key (pdp/limits/once.py) in the parent's
  bounded table: True the first time any worker sends ``key`` within ``ttl_ns``, False after
  (the replay cache of DPoP proofs the workers share); raises ``StoreFull`` when the table
  is full of live keys.

Frames are a 4-byte big-endian length and a MessagePack body. A worker sends
``[take, [[budget, ...], ...]]`` (a Budget as ``[rule, key, count, period_ns]``),
``["set", budget, remaining]`` or ``["once", key, ttl_ns]``; the parent answers the short
indices of each request, or for ``once`` true, false or ``"full"``. Each
worker thread keeps its own connection; a call that does not answer within the deadline fails
closed and the connection is opened again on the next call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import socketserver
import struct
import threading
from typing import Sequence

import msgpack

from .memory import MemoryStore
from .once import MAX_ONCE_MARKS
from .store import Budget, StoreFull, StoreUnavailable

log = logging.getLogger("pdp.server")

_LENGTH = struct.Struct(">I")
#: A frame larger than this is refused (a batch of 10,000 requests with long keys fits).
MAX_FRAME = 64 * 1024 * 1024
#: The parent's answer to ``once`` when its table of once-only keys is full of live ones.
_FULL = "full"


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("the limit store closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _frame(body: object) -> bytes:
    """``body`` as one frame: its msgpack bytes after their length."""
    data = msgpack.packb(body, use_bin_type=True)
    return _LENGTH.pack(len(data)) + data


def _body_size(header: bytes) -> int:
    """The length a frame's header announces (a frame past MAX_FRAME is refused)."""
    (n,) = _LENGTH.unpack(header)
    if n > MAX_FRAME:
        raise ConnectionError(f"a frame of {n} bytes")
    return n


def _body(data: bytes) -> object:
    return msgpack.unpackb(data, raw=False, use_list=True)


def _send(sock: socket.socket, body: object) -> None:
    sock.sendall(_frame(body))


def _receive(sock: socket.socket) -> object:
    return _body(_read_exact(sock, _body_size(_read_exact(sock, _LENGTH.size))))


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        store: MemoryStore = self.server.store  # type: ignore[attr-defined]
        sock = self.request
        while True:
            try:
                message = _receive(sock)
            except (ConnectionError, OSError):
                return
            try:
                if message[0] == "once":
                    _, key, ttl_ns = message
                    try:
                        answer: object = store.first_use(key, ttl_ns)
                    except StoreFull:
                        answer = _FULL
                elif message[0] == "set":
                    _, budget, remaining = message
                    store.set_remaining(Budget(*budget), remaining)
                    answer = None
                else:
                    take, requests = message
                    answer = store.take_many([[Budget(*b) for b in budgets] for budgets in requests], bool(take))
            except Exception:  # a malformed message: drop this connection, keep serving the others
                log.exception("limit store: a malformed message from a worker")
                return
            try:
                _send(sock, answer)
            except OSError:
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024  # every thread of every worker may connect at once


class ParentStore:
    """The parent's side: a MemoryStore served on the Unix socket ``path`` (``max_marks``:
    the once-only keys it remembers at once, for all the workers)."""

    def __init__(self, path: str, max_marks: int = MAX_ONCE_MARKS):
        self.path = path
        self.store = MemoryStore(max_marks=max_marks)
        self._server = _Server(path, _Handler)
        os.chmod(path, 0o600)  # only this user's processes take units
        self._server.store = self.store  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="pdp-limit-store", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """What a worker passes to ``open_store``."""
        return f"pdp-parent:{self.path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class SharedStore:
    """A worker's side of the parent's store."""

    def __init__(self, path: str, timeout: float):
        self.path = path
        self.timeout = timeout
        self._local = threading.local()

    def _socket(self) -> socket.socket:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._local.sock = sock
        return sock

    def _ask(self, message: list) -> object:
        try:
            sock = self._socket()
            _send(sock, message)
            return _receive(sock)
        except (OSError, ConnectionError, ValueError, msgpack.UnpackException) as exc:
            self._drop()
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None

    def _drop(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()

    def take(self, budgets: Sequence[Budget], take: bool = True) -> list[int]:
        return self.take_many([budgets], take)[0]

    def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        answer = self._ask(_take_message(requests, take))
        if not _answers(answer, requests):
            self._drop()
            raise StoreUnavailable("the limit store answered out of turn")
        return answer

    def set_remaining(self, budget: Budget, remaining: int) -> None:
        self._ask(["set", list(budget), remaining])

    def first_use(self, key: str, ttl_ns: int) -> bool:
        answer = self._ask(["once", key, int(ttl_ns)])
        if answer == _FULL:
            raise StoreFull("the parent's once-only keys are all live")
        if type(answer) is not bool:
            self._drop()
            raise StoreUnavailable("the limit store answered out of turn")
        return answer

    def close(self) -> None:
        self._drop()

    def asyncio(self) -> AsyncSharedStore:
        """A client of the same parent for an asyncio event loop (make and use it on that loop)."""
        return AsyncSharedStore(self.path, self.timeout)


def _take_message(requests: Sequence[Sequence[Budget]], take: bool) -> list:
    return [1 if take else 0, [[list(b) for b in budgets] for budgets in requests]]


def _answers(answer: object, requests: Sequence) -> bool:
    """Whether ``answer`` is an answer to ``take_many(requests)``: one list per request."""
    return type(answer) is list and len(answer) == len(requests)


class AsyncSharedStore:
    """A worker's side of the parent's store on an event loop: the loop goes on serving while
    the parent answers. One connection, one exchange on it at a time; the deadline covers the
    wait for the connection as well as the exchange. An exchange cut short (late, cancelled,
    broken) closes the connection, whose next answer would be out of turn; the next call opens
    another."""

    def __init__(self, path: str, timeout: float):
        self.path = path
        self.timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        try:
            answer = await asyncio.wait_for(self._exchange(_take_message(requests, take)), self.timeout)
        except (OSError, EOFError, ConnectionError, ValueError, msgpack.UnpackException) as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None
        if not _answers(answer, requests):
            self._close()
            raise StoreUnavailable("the limit store answered out of turn")
        return answer

    async def _exchange(self, message: list) -> object:
        frame = _frame(message)
        async with self._lock:
            try:
                if self._streams is None:
                    self._streams = await asyncio.open_unix_connection(self.path)
                reader, writer = self._streams
                writer.write(frame)
                await writer.drain()
                n = _body_size(await reader.readexactly(_LENGTH.size))
                return _body(await reader.readexactly(n))
            except BaseException:  # asyncio.CancelledError at the deadline too
                self._close()
                raise

    def _close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()

    async def close(self) -> None:
        self._close()
