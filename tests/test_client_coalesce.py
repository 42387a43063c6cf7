"""Concurrent check() calls on one client are coalesced (pdp.coalesce), yet every caller gets
the answer to its own request: the same Decision, RequestError or grpc.RpcError the unary
Check gives it. Real servers on 127.0.0.1; every wait is bounded by WAIT."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from serverkit import ALLOWED, WAIT, engine, running

from pdp.client import AsyncClient, Client
from pdp.coalesce import CallError, _outcomes, _Pending
from pdp.errors import RequestError
from pdp.server import EngineHolder, ServerOptions, build_server
from pdp.v1 import decision_pb2 as pb

CALLERS = 64


def request(i: int) -> dict:
    """Request number ``i``: an ALLOW, a DENY whose reason names ``i``, or one of two malformed
    requests whose error names ``i``'s kind; a mix-up of answers shows."""
    kind = i % 4
    if kind == 0:
        return {**ALLOWED, "resource": {**ALLOWED["resource"], "id": f"p{i}"}}
    if kind == 1:  # the forbid's reason interpolates identity.env: one message per request
        return {**ALLOWED, "identity": {**ALLOWED["identity"], "env": f"env-{i}"}}
    if kind == 2:
        return {"identity": {"type": "workload", "env": "prod"}, "action": "charge",
                "resource": {"type": "payment", "env": "prod"}}  # no identity.id
    return {"identity": {"type": "workload", "id": f"w{i}"}, "action": "charge", "resource": {"id": "p"}}


def outcome(call, req):
    """What one check() gave: ("decision", Decision) or ("error", type, path, message)."""
    try:
        return ("decision", call(req))
    except RequestError as err:
        return ("error", type(err), err.path, err.message)


async def async_outcome(call, req):
    try:
        return ("decision", await call(req))
    except RequestError as err:
        return ("error", type(err), err.path, err.message)


class CountingStub:
    """The client's stub, counting the CheckBatch RPCs the coalescer sends."""

    def __init__(self, stub):
        self._stub = stub
        self.batches = 0

    def __getattr__(self, name):
        return getattr(self._stub, name)

    @property
    def CheckBatch(self):
        self.batches += 1
        return self._stub.CheckBatch


class Gate:
    """An engine whose decide() waits until the gate opens (bounded by WAIT), so that calls
    stay in flight for as long as a test needs."""

    def __init__(self, engine):
        self._engine = engine
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)

    def decide(self, req):
        self.entered.release()
        self.open.wait(WAIT)
        return self._engine.decide(req)

    def __getattr__(self, name):
        return getattr(self._engine, name)


@pytest.fixture
def target(tmp_path):
    with running(engine(tmp_path)) as (_, port):
        yield f"127.0.0.1:{port}"


def expected_outcomes(target: str, n: int) -> list:
    """Each request's outcome through today's path: one unary Check per call."""
    with Client(target, timeout=WAIT, coalesce=False) as unary:
        return [outcome(unary.check, request(i)) for i in range(n)]


def test_threads_each_get_their_own_answer(target):
    n = CALLERS * 4
    expected = expected_outcomes(target, n)
    assert {o[0] for o in expected} == {"decision", "error"}
    assert len({o[2] for o in expected if o[0] == "error"}) == 2  # two kinds of malformed request
    with Client(target, timeout=WAIT) as client:
        counting = client._coalescer._stub = CountingStub(client._stub)
        start = threading.Barrier(CALLERS, timeout=WAIT)

        def caller(k: int) -> list:
            start.wait()
            return [(i, outcome(client.check, request(i))) for i in range(k, n, CALLERS)]

        with ThreadPoolExecutor(CALLERS) as pool:
            got = [pair for part in pool.map(caller, range(CALLERS), timeout=WAIT) for pair in part]
    assert sorted(got, key=lambda pair: pair[0]) == list(enumerate(expected))
    assert counting.batches > 0  # the calls did travel together


def test_asyncio_gather_each_get_their_own_answer(target):
    n = CALLERS * 2
    expected = expected_outcomes(target, n)

    async def main():
        async with AsyncClient(target, timeout=WAIT) as client:
            counting = client._coalescer._stub = CountingStub(client._stub)
            for _ in range(2):
                got = await asyncio.gather(*(async_outcome(client.check, request(i)) for i in range(n)))
                assert got == expected
            assert counting.batches > 0

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_a_lone_call_is_a_unary_check(target):
    with Client(target, timeout=WAIT) as client:
        counting = client._coalescer._stub = CountingStub(client._stub)
        assert [outcome(client.check, request(i)) for i in range(8)] == expected_outcomes(target, 8)
    assert counting.batches == 0


def test_a_server_that_refuses_the_batch_gets_the_calls_alone(tmp_path):
    # max_batch=2: a coalesced batch of more is refused as a whole (INVALID_ARGUMENT); the
    # client resends those calls one by one, and each still gets its own answer.
    with running(engine(tmp_path), ServerOptions(max_batch=2)) as (_, port):
        target = f"127.0.0.1:{port}"
        n = CALLERS * 2
        expected = expected_outcomes(target, n)

        async def main():
            async with AsyncClient(target, timeout=WAIT) as client:
                got = await asyncio.gather(*(async_outcome(client.check, request(i)) for i in range(n)))
                assert got == expected
                assert not client._coalescer._queue.coalescing  # and it stopped coalescing

        asyncio.run(asyncio.wait_for(main(), WAIT))
        with Client(target, timeout=WAIT) as client, ThreadPoolExecutor(CALLERS) as pool:
            got = list(pool.map(lambda i: outcome(client.check, request(i)), range(n), timeout=WAIT))
        assert got == expected


@pytest.fixture
def gated(tmp_path):
    """A server whose decisions wait for ``gate.open``; yields (gate, target, server)."""
    holder = EngineHolder(engine(tmp_path))
    gate = Gate(holder.engine)
    holder.engine = gate
    server, port = build_server(holder, "127.0.0.1:0")
    server.start()
    try:
        yield gate, f"127.0.0.1:{port}", server
    finally:
        gate.open.set()
        server.stop(None).wait(WAIT)


def start_callers(client: Client, n: int, **kwargs) -> tuple[ThreadPoolExecutor, list]:
    pool = ThreadPoolExecutor(n)
    return pool, [pool.submit(outcome, lambda r: client.check(r, **kwargs), request(4 * i)) for i in range(n)]


def test_a_queued_call_keeps_its_own_deadline(gated):
    gate, target, _ = gated
    with Client(target, timeout=WAIT) as client:
        pool, slow = start_callers(client, 2)  # they hold the client's two RPCs in flight
        for _ in range(2):
            assert gate.entered.acquire(timeout=WAIT)
        with pytest.raises(grpc.RpcError) as info:
            client.check(ALLOWED, timeout=0.2)  # queued behind them
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        gate.open.set()
        assert all(f.result(WAIT)[1].allowed for f in slow)
        assert client.check(ALLOWED).allowed  # the expired call left nothing behind
        pool.shutdown()


def test_async_queued_call_keeps_its_own_deadline(gated):
    gate, target, _ = gated

    async def main():
        async with AsyncClient(target, timeout=WAIT) as client:
            slow = [asyncio.ensure_future(client.check(ALLOWED)) for _ in range(2)]
            while client._coalescer._queue.in_flight < 2:
                await asyncio.sleep(0.01)
            with pytest.raises(grpc.RpcError) as info:
                await client.check(ALLOWED, timeout=0.2)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            gate.open.set()
            assert all(d.allowed for d in await asyncio.gather(*slow))
            assert (await client.check(ALLOWED)).allowed and not client._coalescer._queue.waiting

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_close_fails_the_calls_in_flight_and_queued(gated):
    gate, target, _ = gated
    client = Client(target, timeout=WAIT)
    pool, calls = start_callers(client, 12)
    for _ in range(2):
        assert gate.entered.acquire(timeout=WAIT)
    client.close()
    for f in calls:
        with pytest.raises(grpc.RpcError) as info:
            f.result(WAIT)
        assert info.value.code() == grpc.StatusCode.CANCELLED
    with pytest.raises(ValueError):
        client.check(ALLOWED)
    pool.shutdown()


def test_async_close_fails_the_calls_in_flight_and_queued(gated):
    gate, target, _ = gated

    async def main():
        client = AsyncClient(target, timeout=WAIT)
        calls = [asyncio.ensure_future(client.check(request(4 * i))) for i in range(12)]
        while len(client._coalescer._queue.waiting) < 10:  # two in flight, ten queued
            await asyncio.sleep(0.01)
        await client.close()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, (grpc.RpcError, asyncio.CancelledError)) for r in results)
        assert sum(isinstance(r, grpc.RpcError) and r.code() == grpc.StatusCode.CANCELLED for r in results) >= 10

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_server_gone_mid_flight_fails_every_waiting_caller(gated):
    gate, target, server = gated
    with Client(target, timeout=WAIT) as client:
        pool, calls = start_callers(client, 12)
        for _ in range(2):
            assert gate.entered.acquire(timeout=WAIT)
        assert server.stop(0).wait(WAIT)
        gate.open.set()
        for f in calls:  # in flight: the server cancels them; queued: the batch cannot connect
            with pytest.raises(grpc.RpcError) as info:
                f.result(WAIT)
            assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        pool.shutdown()


def test_async_server_gone_mid_flight_fails_every_waiting_caller(gated):
    gate, target, server = gated

    async def main():
        async with AsyncClient(target, timeout=WAIT) as client:
            calls = [asyncio.ensure_future(client.check(request(4 * i))) for i in range(12)]
            while len(client._coalescer._queue.waiting) < 10:
                await asyncio.sleep(0.01)
            stopped = server.stop(0)
            assert await asyncio.get_running_loop().run_in_executor(None, stopped.wait, WAIT)
            gate.open.set()
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, grpc.RpcError) and r.code() in (grpc.StatusCode.CANCELLED,
                                                                     grpc.StatusCode.UNAVAILABLE) for r in results)

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_an_item_error_other_than_malformed_is_an_rpc_error():
    batch = [_Pending(pb.CheckRequest(), None, None) for _ in range(3)]
    answer = pb.CheckBatchResponse(responses=[
        pb.CheckResponse(decision=pb.DECISION_ALLOW),
        pb.CheckResponse(error=pb.ItemError(code=3, message="identity.id: required", path="identity.id")),
        pb.CheckResponse(error=pb.ItemError(code=13, message="internal error in pdp"))])
    (ok, e0), (malformed, e1), (none, internal) = _outcomes(batch, answer, CallError)
    assert ok.decision == pb.DECISION_ALLOW and e0 is None
    assert malformed.error.path == "identity.id" and e1 is None  # decode() makes it the RequestError
    assert none is None and internal.code() == grpc.StatusCode.INTERNAL
    assert internal.details() == "internal error in pdp"
    short = _outcomes(batch, pb.CheckBatchResponse(responses=answer.responses[:2]), CallError)
    assert all(r is None and e.code() == grpc.StatusCode.INTERNAL for r, e in short)  # never misassigned
