"""``pdp.v1.DecisionService``: CheckRequest ⇒ request dict ⇒ engine ⇒ CheckResponse.

Check fails a malformed request with INVALID_ARGUMENT (the message names the path, which
also travels in the ``pdp-error-path`` trailing metadata); CheckBatch and CheckStream answer
such an item with ``error`` set and decide the others. Error text sent to a caller is
printable ASCII of at most 1 KB (``pdp.errors.printable``) whatever the request held: gRPC
metadata carries nothing else, and a longer trailer would fail the call. Each call reads the
serving engine once, so one answer (a whole batch included) comes from one revision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc

from ..errors import RequestError, printable, printable_request_error
from ..v1 import decision_pb2 as pb
from ..wire import error_to_pb, pb_to_request
from .convert import Decoded, check_attribute_count, decision_to_pb, deserializer, peer_attributes, with_peer
from .holder import EngineHolder
from .options import ServerOptions

log = logging.getLogger("pdp.server")

SERVICE = "pdp.v1.DecisionService"
ERROR_PATH_KEY = "pdp-error-path"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_perf_ns = time.perf_counter_ns
#: A batch checks its deadline every this many items.
_DEADLINE_EVERY = 64


class DecisionService:
    """The servicer. Its methods take a ``Decoded`` (see ``handler``), not a bare message."""

    def __init__(self, holder: EngineHolder, options: ServerOptions):
        self.holder = holder
        self.max_attributes = options.max_attributes
        self.max_batch = options.max_batch
        self.mutual_tls = options.tls is not None and options.tls.mutual
        self.log = options.decision_log
        self.metrics = options.metrics

    # ---- one request

    def _request(self, msg: pb.CheckRequest, size: int, peer: dict | None) -> dict:
        """Decode and bound one request; the engine validates the rest. Raises RequestError."""
        request = pb_to_request(msg, check=False)
        check_attribute_count(request, size, self.max_attributes)
        return with_peer(request, peer)

    def _peer(self, context) -> dict | None:
        return peer_attributes(context.auth_context()) if self.mutual_tls else None

    def _reject(self, context, err: RequestError | str, code=_INVALID, request=None, request_id=""):
        if self.metrics is not None:
            self.metrics.error("pdp", code.name)
        if self.log is not None:
            self.log.record_error("pdp", request_id, request, str(err))
        if isinstance(err, RequestError):
            err = printable_request_error(err)
            context.set_trailing_metadata(((ERROR_PATH_KEY, err.path),))
        context.abort(code, printable(str(err)))

    def Check(self, decoded: Decoded, context) -> pb.CheckResponse:
        started = _perf_ns()
        msg = decoded.msg
        if msg is None:
            self._reject(context, decoded.error)
        engine = self.holder.engine
        request = None
        try:
            request = self._request(msg, decoded.size, self._peer(context))
            decision = engine.decide(request)
        except RequestError as err:
            self._reject(context, err, request=request, request_id=msg.request_id)
        except Exception:  # a bug: say INTERNAL without internals, log the traceback, keep serving
            log.exception("Check %r: unexpected error", msg.request_id)
            self._reject(context, "internal error in pdp (logged on the server)", grpc.StatusCode.INTERNAL,
                         request, msg.request_id)
        response = decision_to_pb(decision, msg.request_id)
        elapsed = _perf_ns() - started
        if self.metrics is not None:
            self.metrics.decided("pdp", decision.decision, decision.reasons, elapsed / 1e9)
        if self.log is not None:
            self.log.record("pdp", msg.request_id, request, decision, elapsed)
        return response

    # ---- many requests

    def _decide_item(self, engine, msg: pb.CheckRequest, size: int, peer) -> pb.CheckResponse:
        started = _perf_ns()
        request = None
        try:
            request = self._request(msg, size, peer)
            decision = engine.decide(request)
        except Exception as exc:
            return self._item_error(exc, msg, request)
        return self._answer(msg, request, decision, started)

    def _item_error(self, exc: Exception, msg: pb.CheckRequest, request) -> pb.CheckResponse:
        """A batch or stream item that got no decision: malformed (INVALID_ARGUMENT) or a bug (INTERNAL)."""
        if isinstance(exc, RequestError):
            if self.metrics is not None:
                self.metrics.error("pdp", _INVALID.name)
            if self.log is not None:
                self.log.record_error("pdp", msg.request_id, request, str(exc))
            return error_to_pb(printable_request_error(exc), msg.request_id)
        # A bug: this item gets INTERNAL, the others are still decided.
        log.error("batch item %r: unexpected error", msg.request_id, exc_info=exc)
        if self.metrics is not None:
            self.metrics.error("pdp", "INTERNAL")
        return error_to_pb("internal error in pdp (logged on the server)", msg.request_id, code=13)

    def _answer(self, msg: pb.CheckRequest, request: dict, decision, started: int) -> pb.CheckResponse:
        response = decision_to_pb(decision, msg.request_id)
        elapsed = _perf_ns() - started
        if self.metrics is not None:
            self.metrics.decided("pdp", decision.decision, decision.reasons, elapsed / 1e9)
        if self.log is not None:
            self.log.record("pdp", msg.request_id, request, decision, elapsed)
        return response

    def _limited_batch(self, engine, items, size: int, peer, context) -> list[pb.CheckResponse]:
        """A batch for a policy set with limit rules: every item is evaluated, then the limits
        of all of them are settled in one call to the store (one round trip to Redis), in
        request order."""
        out: list = [None] * len(items)
        pending = []
        for i, msg in enumerate(items):
            if i % _DEADLINE_EVERY == 0 and i:
                self._check_deadline(context, i, len(items))
            started = _perf_ns()
            request = None
            try:
                request = self._request(msg, size, peer)
                decision, claims = engine.decide_claims(request)
            except Exception as exc:
                out[i] = self._item_error(exc, msg, request)
                continue
            pending.append((i, msg, request, started, decision, claims))
        decisions = engine.limiter.settle_many([(p[4], p[5]) for p in pending])
        for (i, msg, request, started, _, _), decision in zip(pending, decisions):
            out[i] = self._answer(msg, request, decision, started)
        return out

    @staticmethod
    def _check_deadline(context, done: int, total: int) -> None:
        if not context.is_active():
            # The deadline passed or the caller went away: stop deciding for nobody.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED,
                          f"stopped after {done} of {total} requests")

    def CheckBatch(self, decoded: Decoded, context) -> pb.CheckBatchResponse:
        msg = decoded.msg
        if msg is None:
            self._reject(context, decoded.error)
        items = msg.requests
        if len(items) > self.max_batch:
            self._reject(context, RequestError("requests", f"{len(items)} requests in one batch; the server's "
                                                           f"limit is {self.max_batch}"))
        engine = self.holder.engine
        peer = self._peer(context)
        # Each item is bounded by the same limit as a lone request; its size on the wire is
        # not known separately, so the whole message's size stands in (it only decides
        # whether the item is counted at all).
        size = decoded.size
        out = pb.CheckBatchResponse()
        if getattr(engine, "limiter", None) is not None:  # a policy set with limit rules
            out.responses.extend(self._limited_batch(engine, items, size, peer, context))
            return out
        append = out.responses.append
        decide = self._decide_item
        for i, item in enumerate(items):
            if i % _DEADLINE_EVERY == 0 and i:
                self._check_deadline(context, i, len(items))
            append(decide(engine, item, size, peer))
        return out

    def CheckStream(self, requests: Iterator[Decoded], context) -> Iterator[pb.CheckResponse]:
        peer = self._peer(context)
        for decoded in requests:
            msg = decoded.msg
            if msg is None:
                if self.metrics is not None:
                    self.metrics.error("pdp", _INVALID.name)
                yield error_to_pb(decoded.error)
                continue
            # A stream may outlive a reload: each message is decided by the engine serving
            # when it arrives.
            yield self._decide_item(self.holder.engine, msg, decoded.size, peer)

    def handler(self) -> grpc.GenericRpcHandler:
        """The method handlers, with the never-raising deserializer of ``convert``."""
        ser = pb.CheckResponse.SerializeToString
        handlers = {
            "Check": grpc.unary_unary_rpc_method_handler(
                self.Check, request_deserializer=deserializer(pb.CheckRequest), response_serializer=ser),
            "CheckBatch": grpc.unary_unary_rpc_method_handler(
                self.CheckBatch, request_deserializer=deserializer(pb.CheckBatchRequest),
                response_serializer=pb.CheckBatchResponse.SerializeToString),
            "CheckStream": grpc.stream_stream_rpc_method_handler(
                self.CheckStream, request_deserializer=deserializer(pb.CheckRequest), response_serializer=ser),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)
