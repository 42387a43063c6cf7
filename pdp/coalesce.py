"""Concurrent ``check()`` calls of one client, carried as few RPCs ("natural batching").

grpcio's Python server costs ~120 µs of CPU per unary call before any deciding, which caps
one server process at ~5,000 calls/s however many are in flight (bench/GRPC.md). A
``CheckBatch`` of many requests costs about as much as one call plus ~15 µs per request.
So a client that has many ``check()`` calls waiting sends them together:

* while fewer than ``MAX_IN_FLIGHT`` RPCs are out, a call goes at once, alone, as the unary
  ``Check`` it always was: a lone caller pays nothing for coalescing;
* otherwise it waits in a queue, and when an RPC comes back, everything queued meanwhile
  leaves as one ``CheckBatch`` (bounded in count and bytes; a queue of one goes as ``Check``).

Every caller gets the answer to its own request: ``responses[i]`` answers ``requests[i]``.
An item the server finds malformed comes back as that caller's ``CheckResponse`` with
``error`` set (``decode`` makes it the same ``RequestError`` the unary path raises); an
item error of another code, and a failure of the whole RPC, are ``grpc.RpcError`` s raised
to the callers concerned. Each call keeps its own deadline: the batch carries the latest
of its members', and a caller whose own deadline passes stops waiting with
DEADLINE_EXCEEDED. If the server refuses batching itself (an older server without
CheckBatch, or limits lower than the client's), the waiting calls are resent alone and the
client stops coalescing.

``Coalescer`` serves the thread-safe blocking ``Client``; ``AsyncCoalescer`` the
``AsyncClient`` (one event loop). Both take and give messages; ``pdp.client`` encodes and
decodes.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

import grpc

from .v1 import decision_pb2 as pb

#: RPCs one client keeps out at once while coalescing (chosen by measurement, bench/GRPC.md).
MAX_IN_FLIGHT = 2
#: Bounds of one coalesced batch: far below the server's defaults (10,000 requests, 4 MiB).
MAX_ITEMS = 128
MAX_BYTES = 1 << 20
#: Answers to a whole batch that mean "this server will not take this batch", not "these
#: requests failed": the waiting calls are then resent alone.
_BATCH_REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            grpc.StatusCode.UNIMPLEMENTED})
_INVALID_ITEM = grpc.StatusCode.INVALID_ARGUMENT.value[0]
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_now = time.monotonic


class CallError(grpc.RpcError):
    """A ``grpc.RpcError`` made by the client for one call of a coalesced batch."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple:
        return ()

    def trailing_metadata(self) -> tuple:
        return ()

    def debug_error_string(self) -> str:
        return str(self)


def _item_failure(response: pb.CheckResponse) -> tuple[grpc.StatusCode, str] | None:
    """The status of an item error that is not a malformed request (those stay responses)."""
    if response.HasField("error") and response.error.code != _INVALID_ITEM:
        return _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN), response.error.message
    return None


class _Pending:
    """One waiting call: its request, its deadline, and (later) its outcome."""

    __slots__ = ("msg", "deadline", "alone", "done", "response", "error")

    def __init__(self, msg: pb.CheckRequest, timeout: float | None, done: Any):
        self.msg = msg
        self.deadline = None if timeout is None else _now() + timeout
        self.alone = False  # resend by itself (the server refused it in a batch)
        self.done = done  # threading.Event, or an asyncio.Future
        self.response: pb.CheckResponse | None = None
        self.error: BaseException | None = None


class _Queue:
    """The waiting calls and the in-flight count; callers hold the lock (or the event loop)."""

    def __init__(self, max_in_flight: int, max_items: int, max_bytes: int):
        self.waiting: collections.deque[_Pending] = collections.deque()
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.coalescing = True
        self.closed = False

    def go_now(self) -> bool:
        """True (and counted in flight) when a new call may go out at once, alone."""
        if self.in_flight < self.max_in_flight and not self.waiting:
            self.in_flight += 1
            return True
        return False

    def take(self, cancelled) -> list[_Pending] | None:
        """The next batch to send (counted in flight), or None when nothing waits or the
        in-flight limit is reached; skips calls that stopped waiting."""
        waiting = self.waiting
        while waiting and cancelled(waiting[0]):
            waiting.popleft()
        if not waiting or self.in_flight >= self.max_in_flight:
            return None
        batch = [waiting.popleft()]
        if not batch[0].alone:
            size = batch[0].msg.ByteSize()
            while waiting and len(batch) < self.max_items and not waiting[0].alone:
                nxt = waiting[0]
                if cancelled(nxt):
                    waiting.popleft()
                    continue
                size += nxt.msg.ByteSize() + 8  # the item's tag and length
                if size > self.max_bytes:
                    break
                batch.append(waiting.popleft())
        self.in_flight += 1
        return batch

    def refused(self, batch: list[_Pending]) -> None:
        """The server refused ``batch`` as a batch: resend each call alone, first in line."""
        self.coalescing = False
        for p in reversed(batch):
            p.alone = True
            self.waiting.appendleft(p)


def _timeout_of(batch: list[_Pending]) -> float | None:
    """The batch's deadline: the latest of its members' (none if one has none)."""
    if any(p.deadline is None for p in batch):
        return None
    return max(0.0, max(p.deadline for p in batch) - _now())


def _batch_message(batch: list[_Pending]) -> pb.CheckBatchRequest:
    out = pb.CheckBatchRequest()
    out.requests.extend(p.msg for p in batch)
    return out


def _outcomes(batch: list[_Pending], response: pb.CheckBatchResponse, error_type) -> list[tuple]:
    """(response, error) for each member of ``batch``, from the CheckBatch answer."""
    if len(response.responses) != len(batch):  # never from pdp; fail closed, never misassign
        err = error_type(grpc.StatusCode.INTERNAL, f"{len(response.responses)} answers to {len(batch)} requests")
        return [(None, err)] * len(batch)
    out = []
    for item in response.responses:
        failure = _item_failure(item)
        out.append((item, None) if failure is None else (None, error_type(*failure)))
    return out


# --------------------------------------------------------------------------------------------
# threads


class Coalescer:
    """Natural batching for the blocking, thread-safe ``Client``."""

    def __init__(self, stub):
        self._stub = stub
        self._lock = threading.Lock()
        self._queue = _Queue(MAX_IN_FLIGHT, MAX_ITEMS, MAX_BYTES)

    def check(self, msg: pb.CheckRequest, timeout: float | None) -> pb.CheckResponse:
        """The server's answer to ``msg``; raises ``grpc.RpcError`` as a unary ``Check`` does."""
        queue = self._queue
        with self._lock:
            if queue.closed:
                raise ValueError("the client is closed")
            alone = not queue.coalescing or queue.go_now()
            counted = alone and queue.coalescing
            if not alone:
                pending = _Pending(msg, timeout, threading.Event())
                queue.waiting.append(pending)
        if alone:
            try:
                return self._stub.Check(msg, timeout=timeout)
            finally:
                if counted:
                    self._finished()
        if not pending.done.wait(timeout):
            with self._lock:
                if not pending.done.is_set():
                    pending.error = CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                    pending.done.set()  # the queue skips it; a late answer is dropped
        if pending.error is not None:
            raise pending.error
        return pending.response

    def _finished(self) -> None:
        """An RPC came back: send what waits, if anything."""
        with self._lock:
            self._queue.in_flight -= 1
            batch = self._queue.take(_stopped_waiting)
        if batch:
            self._send(batch)

    def _send(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                future = self._stub.Check.future(batch[0].msg, timeout=_timeout_of(batch))
            else:
                future = self._stub.CheckBatch.future(_batch_message(batch), timeout=_timeout_of(batch))
        except Exception as err:  # e.g. the channel was closed meanwhile
            self._settle(batch, [(None, CallError(grpc.StatusCode.CANCELLED, str(err)))] * len(batch))
            self._finished()
            return
        future.add_done_callback(lambda f: self._answered(batch, f))

    def _answered(self, batch: list[_Pending], future: grpc.Future) -> None:
        """On grpc's thread: give each caller its outcome, then send what waits."""
        try:
            outcomes = _future_outcomes(batch, future)
        except Exception as err:  # a bug here must not leave callers waiting
            outcomes = [(None, err)] * len(batch)
        try:
            if outcomes is None:
                with self._lock:
                    self._queue.refused(batch)
            else:
                self._settle(batch, outcomes)
        finally:
            self._finished()

    def _settle(self, batch: list[_Pending], outcomes: list[tuple]) -> None:
        with self._lock:
            for p, (response, error) in zip(batch, outcomes):
                if not p.done.is_set():
                    p.response, p.error = response, error
                    p.done.set()

    def close(self) -> None:
        """Fail the calls still queued (those in flight fail as the channel closes)."""
        with self._lock:
            self._queue.closed = True
            waiting = list(self._queue.waiting)
            self._queue.waiting.clear()
        self._settle(waiting, [(None, CallError(grpc.StatusCode.CANCELLED, "the client was closed"))] * len(waiting))


def _future_outcomes(batch: list[_Pending], future: grpc.Future) -> list[tuple] | None:
    """(response, error) for each member of ``batch`` from its finished RPC; None when the
    server refused the batch as such."""
    if future.cancelled():
        error = CallError(grpc.StatusCode.CANCELLED, "the call was cancelled (the client was closed)")
        return [(None, error)] * len(batch)
    error = future.exception()
    if error is not None:
        if len(batch) > 1 and isinstance(error, grpc.RpcError) and error.code() in _BATCH_REFUSED:
            return None
        return [(None, error)] * len(batch)
    if len(batch) == 1:
        return [(future.result(), None)]
    return _outcomes(batch, future.result(), CallError)


def _stopped_waiting(p: _Pending) -> bool:
    return p.done.is_set()


# --------------------------------------------------------------------------------------------
# asyncio


class AsyncCoalescer:
    """Natural batching for ``AsyncClient`` (all calls on one event loop)."""

    def __init__(self, stub):
        self._stub = stub
        self._queue = _Queue(MAX_IN_FLIGHT, MAX_ITEMS, MAX_BYTES)
        self._tasks: set[asyncio.Task] = set()

    async def check(self, msg: pb.CheckRequest, timeout: float | None) -> pb.CheckResponse:
        queue = self._queue
        if queue.closed:
            raise ValueError("the client is closed")
        if not queue.coalescing:
            return await self._stub.Check(msg, timeout=timeout)
        if queue.go_now():
            try:
                return await self._stub.Check(msg, timeout=timeout)
            finally:
                self._finished()
        pending = _Pending(msg, timeout, asyncio.get_running_loop().create_future())
        queue.waiting.append(pending)
        try:
            # wait_for cancels the future on timeout: the queue then skips the call.
            return await asyncio.wait_for(pending.done, timeout)
        except asyncio.TimeoutError:
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, details="Deadline Exceeded") from None

    def _finished(self) -> None:
        self._queue.in_flight -= 1
        batch = self._queue.take(_future_done)
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            try:
                if len(batch) == 1:
                    outcomes = [(await self._stub.Check(batch[0].msg, timeout=_timeout_of(batch)), None)]
                else:
                    answer = await self._stub.CheckBatch(_batch_message(batch), timeout=_timeout_of(batch))
                    outcomes = _outcomes(batch, answer, _aio_error)
            except grpc.RpcError as err:
                if len(batch) > 1 and err.code() in _BATCH_REFUSED:
                    self._queue.refused(batch)
                    return
                outcomes = [(None, err)] * len(batch)
            except asyncio.CancelledError:  # the channel was closed under the call
                outcomes = [(None, _aio_error(grpc.StatusCode.CANCELLED, "the client was closed"))] * len(batch)
            except Exception as err:  # a bug here must not leave callers waiting
                outcomes = [(None, err)] * len(batch)
            for p, (response, error) in zip(batch, outcomes):
                if not p.done.done():
                    if error is None:
                        p.done.set_result(response)
                    else:
                        p.done.set_exception(error)
        finally:
            self._finished()

    def close(self) -> None:
        """Fail the calls still queued (those in flight fail as the channel closes)."""
        self._queue.closed = True
        while self._queue.waiting:
            p = self._queue.waiting.popleft()
            if not p.done.done():
                p.done.set_exception(_aio_error(grpc.StatusCode.CANCELLED, "the client was closed"))


def _aio_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, details=details)


def _future_done(p: _Pending) -> bool:
    return p.done.done()
