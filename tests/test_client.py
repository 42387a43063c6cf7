"""pdp.client: Client and AsyncClient against a real server return the engine's Decision
objects; encode/decode; errors as RequestError naming the path (and the index in a batch)."""

from __future__ import annotations

import asyncio

import grpc
import msgpack
import pytest
from serverkit import ALLOWED, DENIED, WAIT, engine, running

from pdp.client import AsyncClient, Client, decode, encode
from pdp.decision import Decision
from pdp.errors import RequestError
from pdp.v1 import decision_pb2 as pb

MALFORMED = {"identity": {"type": "workload"}, "action": "charge", "resource": {"type": "payment"}}


@pytest.fixture
def server(tmp_path):
    with running(engine(tmp_path)) as (holder, port):
        yield holder, f"127.0.0.1:{port}"


def test_encode_is_the_check_request_in_the_msgpack_form():
    msg = encode(ALLOWED, "id-1")
    assert isinstance(msg, pb.CheckRequest) and msg.request_id == "id-1"
    assert msgpack.unpackb(msg.request_msgpack) == ALLOWED and not msg.identity
    value = encode(ALLOWED, form="value")
    assert value.identity["id"].string_value == "billing" and value.action["name"].string_value == "charge"


def test_encode_refuses_what_the_wire_cannot_carry():
    with pytest.raises(RequestError, match="64 bits"):
        encode({**ALLOWED, "context": {"n": 2**64}})


def test_decode_fails_closed():
    assert decode(pb.CheckResponse()).decision == "DENY"
    assert decode(pb.CheckResponse(decision=99)).decision == "DENY"
    with pytest.raises(RequestError) as info:
        decode(pb.CheckResponse(error=pb.ItemError(code=3, message="identity.type: required", path="identity.type")))
    assert info.value.path == "identity.type" and str(info.value) == "identity.type: required"


@pytest.mark.parametrize("form", ["msgpack", "value"])
def test_check_returns_the_engines_decision(server, form):
    holder, target = server
    with Client(target, form=form, timeout=WAIT) as client:
        for request in (ALLOWED, DENIED):
            got = client.check(request)
            assert isinstance(got, Decision) and got == holder.engine.decide(request)
            assert got.eval_ns > 0


def test_check_raises_request_error_with_the_path(server):
    _, target = server
    with Client(target, timeout=WAIT) as client:
        with pytest.raises(RequestError) as info:
            client.check(MALFORMED)
        assert info.value.path == "identity.id" and str(info.value).startswith("identity.id: ")


def test_check_batch_keeps_order_and_names_the_index(server):
    holder, target = server
    with Client(target, timeout=WAIT) as client:
        assert client.check_batch([ALLOWED, DENIED, ALLOWED]) == holder.engine.decide_many([ALLOWED, DENIED, ALLOWED])
        with pytest.raises(RequestError) as info:
            client.check_batch([ALLOWED, MALFORMED])
        assert info.value.path == "[1].identity.id"
        mixed = client.check_batch([ALLOWED, MALFORMED], return_errors=True)
        assert mixed[0].allowed and isinstance(mixed[1], RequestError) and mixed[1].path == "identity.id"
        with pytest.raises(RequestError) as info:
            client.check_batch([ALLOWED, {**ALLOWED, "context": {"n": float("inf")}}])
        assert info.value.path.startswith("[1].context.n")
        assert client.check_batch([]) == []


def test_check_stream(server):
    _, target = server
    with Client(target, timeout=WAIT) as client:
        out = list(client.check_stream([ALLOWED, MALFORMED, DENIED]))
    assert out[0].allowed and isinstance(out[1], RequestError) and out[2].decision == "DENY"


def test_transport_errors_are_rpc_errors():
    # Port 9 (discard) on loopback has no pdp server: the call fails as an RpcError.
    with Client("127.0.0.1:9", timeout=2) as client, pytest.raises(grpc.RpcError) as info:
        client.check(ALLOWED)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_async_client(server):
    holder, target = server

    async def main():
        async with AsyncClient(target, timeout=WAIT) as client:
            decisions = await asyncio.gather(*(client.check(r) for r in (ALLOWED, DENIED) * 10))
            assert decisions == holder.engine.decide_many([ALLOWED, DENIED] * 10)
            with pytest.raises(RequestError) as info:
                await client.check(MALFORMED)
            assert info.value.path == "identity.id"
            batch = await client.check_batch([ALLOWED, MALFORMED], return_errors=True)
            assert batch[0].allowed and isinstance(batch[1], RequestError)
            with pytest.raises(RequestError) as info:
                await client.check_batch([ALLOWED, MALFORMED])
            assert info.value.path == "[1].identity.id"
            streamed = [d async for d in client.check_stream([DENIED, MALFORMED, ALLOWED])]
            assert streamed[0].decision == "DENY" and isinstance(streamed[1], RequestError) and streamed[2].allowed

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_client_rejects_a_bad_form():
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", form="json")
