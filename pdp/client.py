"""A Python client of ``pdp serve``: ``Client("host:port").check(request)`` ⇒ ``pdp.Decision``.

>>> from pdp.client import Client                                   # doctest: +SKIP
>>> with Client("127.0.0.1:50051") as pdp_client:                   # doctest: +SKIP
...     decision = pdp_client.check({"identity": {...}, "action": "charge", "resource": {...}})
...     decision.allowed, [r.rule for r in decision.reasons], decision.revision

The answers are the same ``Decision`` objects ``engine.decide`` returns (``eval_ns`` is the
server's engine time). A request the server finds malformed raises ``pdp.RequestError`` with
the path, as ``engine.decide`` does; transport problems raise ``grpc.RpcError``.
Requests travel in the MessagePack form (bench/WIRE_FORMAT.md); ``form="value"`` sends the
typed Value tree instead. ``AsyncClient`` is the same over ``grpc.aio``.

Concurrent ``check()`` calls on one client (threads, or asyncio tasks) are coalesced: when
the client already has RPCs out, a call waits and leaves with the others in one
``CheckBatch``, each caller still getting its own answer or error (``pdp.coalesce``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from .coalesce import AsyncCoalescer, Coalescer
from .decision import ALLOW, DENY, Decision, Reason, RuleError
from .errors import RequestError
from .v1 import decision_pb2 as pb
from .v1 import decision_pb2_grpc as pb_grpc
from .wire import request_to_pb

__all__ = ["AsyncClient", "Client", "decode", "encode"]

#: Trailing metadata key in which the server names the path of a malformed request.
ERROR_PATH_KEY = "pdp-error-path"
_EFFECT = {pb.EFFECT_PERMIT: "permit", pb.EFFECT_FORBID: "forbid"}


def encode(request: Mapping[str, Any], request_id: str = "", *, form: str = "msgpack") -> pb.CheckRequest:
    """The ``CheckRequest`` message for a SPEC §3 request dict; raises ``RequestError`` for what
    the wire cannot carry (the server checks the rest)."""
    return request_to_pb(request, request_id, form=form)


def decode(response: pb.CheckResponse) -> Decision:
    """A ``CheckResponse`` as a ``Decision``. Fails closed: any decision but DECISION_ALLOW is
    DENY. An item that carries ``error`` raises ``RequestError``."""
    if response.HasField("error"):
        raise _item_error(response.error)
    return Decision(
        ALLOW if response.decision == pb.DECISION_ALLOW else DENY,
        tuple(Reason(r.rule, _EFFECT.get(r.effect, "forbid"), r.message, dict(r.annotations))
              for r in response.reasons),
        tuple(RuleError(e.rule, e.message) for e in response.errors),
        response.revision,
        response.eval_ns,
    )


def _item_error(error: pb.ItemError) -> RequestError:
    message = error.message or f"no decision (status code {error.code})"
    if error.path and message.startswith(error.path + ": "):
        message = message[len(error.path) + 2:]
    return RequestError(error.path, message)


def _request_error(err: grpc.RpcError) -> RequestError | None:
    """The RequestError of an INVALID_ARGUMENT answer to Check, None for other failures."""
    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return None
    path = ""
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_PATH_KEY:
            path = value
    message = err.details() or "invalid request"
    if path and message.startswith(path + ": "):
        message = message[len(path) + 2:]
    return RequestError(path, message)


def _batch(responses: Sequence[pb.CheckResponse], return_errors: bool) -> list:
    out: list = []
    for i, response in enumerate(responses):
        try:
            out.append(decode(response))
        except RequestError as err:
            if not return_errors:
                raise RequestError(f"[{i}]{'.' if err.path else ''}{err.path}", err.message) from None
            out.append(err)
    return out


def _credentials(root_ca, cert, key) -> grpc.ChannelCredentials:
    def read(path):
        return Path(path).read_bytes() if path else None

    if (cert is None) != (key is None):
        raise ValueError("cert and key go together (a client certificate for mTLS)")
    return grpc.ssl_channel_credentials(read(root_ca), read(key), read(cert))


def _options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class Client:
    """A blocking client on one channel (thread-safe; share it).

    Args:
        target: ``host:port`` of ``pdp serve``.
        tls: connect with TLS; ``root_ca`` is the CA that signed the server's certificate
            (the system roots when None). ``cert``/``key``: a client certificate for mTLS.
            Giving any of ``root_ca``, ``cert``, ``key`` implies ``tls``.
        timeout: default deadline per call, in seconds (None: none).
        form: ``"msgpack"`` (the fast path) or ``"value"`` (the typed Value tree).
        channel: use this channel instead of making one (``target`` is then ignored).
        coalesce: carry concurrent ``check()`` calls together (``pdp.coalesce``): a call that
            finds the client's RPCs busy waits and leaves with the others in one CheckBatch.
            False: every ``check()`` is its own unary Check.
    """

    def __init__(self, target: str = "127.0.0.1:50051", *, tls: bool = False, root_ca: str | Path | None = None,
                 cert: str | Path | None = None, key: str | Path | None = None, timeout: float | None = None,
                 form: str = "msgpack", max_message_bytes: int = 64 * 1024 * 1024,
                 channel: grpc.Channel | None = None, coalesce: bool = True):
        if form not in ("msgpack", "value"):
            raise ValueError(f"form must be 'msgpack' or 'value', not {form!r}")
        if channel is None:
            if tls or root_ca or cert or key:
                channel = grpc.secure_channel(target, _credentials(root_ca, cert, key), _options(max_message_bytes))
            else:
                channel = grpc.insecure_channel(target, _options(max_message_bytes))
        self.channel = channel
        self.timeout = timeout
        self.form = form
        self._stub = pb_grpc.DecisionServiceStub(channel)
        self._coalescer = Coalescer(self._stub) if coalesce else None

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def check(self, request: Mapping[str, Any], *, request_id: str = "", timeout: float | None = None) -> Decision:
        """Decide one request on the server; raises ``RequestError`` when it is malformed."""
        msg = request_to_pb(request, request_id, form=self.form)
        try:
            if self._coalescer is None:
                response = self._stub.Check(msg, timeout=self._timeout(timeout))
            else:
                response = self._coalescer.check(msg, self._timeout(timeout))
        except grpc.RpcError as err:
            request_error = _request_error(err)
            if request_error is None:
                raise
            raise request_error from None
        return decode(response)

    def check_batch(self, requests: Iterable[Mapping[str, Any]], *, timeout: float | None = None,
                    return_errors: bool = False) -> list:
        """Decide many requests in one round trip, in order.

        A malformed item raises ``RequestError`` naming its index (``[3].identity.type``),
        as ``engine.decide_many`` does, although the server decided the others; with
        ``return_errors=True`` its place in the list holds the ``RequestError`` instead.
        """
        batch = _batch_request(requests, self.form)
        try:
            response = self._stub.CheckBatch(batch, timeout=self._timeout(timeout))
        except grpc.RpcError as err:
            request_error = _request_error(err)
            if request_error is None:
                raise
            raise request_error from None
        return _batch(response.responses, return_errors)

    def check_stream(self, requests: Iterable[Mapping[str, Any]], *,
                     timeout: float | None = None) -> Iterator[Decision | RequestError]:
        """Decide requests over one CheckStream, yielding answers in order as they come; a
        malformed request yields its ``RequestError`` and the stream goes on."""
        def messages():
            for request in requests:
                yield request_to_pb(request, form=self.form)

        for response in self._stub.CheckStream(messages(), timeout=self._timeout(timeout)):
            try:
                yield decode(response)
            except RequestError as err:
                yield err

    def close(self) -> None:
        """Close the channel; calls still waiting or in flight raise ``grpc.RpcError`` (CANCELLED)."""
        if self._coalescer is not None:
            self._coalescer.close()
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio (``grpc.aio``): ``await client.check(request)``. Same arguments."""

    def __init__(self, target: str = "127.0.0.1:50051", *, tls: bool = False, root_ca: str | Path | None = None,
                 cert: str | Path | None = None, key: str | Path | None = None, timeout: float | None = None,
                 form: str = "msgpack", max_message_bytes: int = 64 * 1024 * 1024,
                 channel: grpc.aio.Channel | None = None, coalesce: bool = True):
        if form not in ("msgpack", "value"):
            raise ValueError(f"form must be 'msgpack' or 'value', not {form!r}")
        if channel is None:
            if tls or root_ca or cert or key:
                channel = grpc.aio.secure_channel(target, _credentials(root_ca, cert, key),
                                                  _options(max_message_bytes))
            else:
                channel = grpc.aio.insecure_channel(target, _options(max_message_bytes))
        self.channel = channel
        self.timeout = timeout
        self.form = form
        self._stub = pb_grpc.DecisionServiceStub(channel)
        self._coalescer = AsyncCoalescer(self._stub) if coalesce else None

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def check(self, request: Mapping[str, Any], *, request_id: str = "",
                    timeout: float | None = None) -> Decision:
        msg = request_to_pb(request, request_id, form=self.form)
        try:
            if self._coalescer is None:
                response = await self._stub.Check(msg, timeout=self._timeout(timeout))
            else:
                response = await self._coalescer.check(msg, self._timeout(timeout))
        except grpc.RpcError as err:
            request_error = _request_error(err)
            if request_error is None:
                raise
            raise request_error from None
        return decode(response)

    async def check_batch(self, requests: Iterable[Mapping[str, Any]], *, timeout: float | None = None,
                          return_errors: bool = False) -> list:
        batch = _batch_request(requests, self.form)
        try:
            response = await self._stub.CheckBatch(batch, timeout=self._timeout(timeout))
        except grpc.RpcError as err:
            request_error = _request_error(err)
            if request_error is None:
                raise
            raise request_error from None
        return _batch(response.responses, return_errors)

    async def check_stream(self, requests: Iterable[Mapping[str, Any]], *,
                           timeout: float | None = None) -> AsyncIterator[Decision | RequestError]:
        call = self._stub.CheckStream((request_to_pb(r, form=self.form) for r in requests),
                                      timeout=self._timeout(timeout))
        async for response in call:
            try:
                yield decode(response)
            except RequestError as err:
                yield err

    async def close(self) -> None:
        if self._coalescer is not None:
            self._coalescer.close()
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _batch_request(requests: Iterable[Mapping[str, Any]], form: str) -> pb.CheckBatchRequest:
    """The CheckBatchRequest for ``requests``; an item that cannot be encoded is a RequestError
    naming its index, as ``engine.decide_many`` does."""
    batch = pb.CheckBatchRequest()
    items = batch.requests
    for i, request in enumerate(requests):
        try:
            items.append(request_to_pb(request, form=form))
        except RequestError as err:
            raise RequestError(f"[{i}]{'.' if err.path else ''}{err.path}", err.message) from None
    return batch
