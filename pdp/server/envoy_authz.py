"""Envoy external authorization (``envoy.service.auth.v3.Authorization/Check``), SPEC §7.1.

Envoy's ``CheckRequest`` ⇒ pdp request dict (``envoy_to_request``) ⇒ engine ⇒ Envoy's
``CheckResponse`` (``decision_to_envoy``); ``answer`` is that whole path for one request, shared
by the servicer and ``pdp eval --envoy``. The servicer always answers with a CheckResponse:
a request that cannot be mapped or decided is a DENY (403) with a reason, never an RPC error,
because Envoy may be configured to let requests through when the authorization call fails.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2

from ..decision import DENY, Decision, Reason
from ..errors import RequestError
from .convert import check_attribute_count
from .holder import EngineHolder
from .options import DEFAULT_MAX_ATTRIBUTES, ENVOY_DENY_BODIES, ServerOptions

log = logging.getLogger("pdp.server")

SERVICE = "envoy.service.auth.v3.Authorization"
JWT_FILTER = "envoy.filters.http.jwt_authn"
REVISION_HEADER = "x-pdp-revision"
#: The rule id in the reasons of a DENY for a request that could not be decided.
INVALID_RULE = "pdp.invalid_request"
INTERNAL_RULE = "pdp.internal_error"
#: Resource attributes that come from the HTTP request and that a context extension cannot replace.
RESERVED_RESOURCE_KEYS = frozenset({"type", "id", "path", "host"})
_OK, _PERMISSION_DENIED = 0, 7
_perf_ns = time.perf_counter_ns


# --------------------------------------------------------------------------------------------
# Envoy CheckRequest ⇒ pdp request


def envoy_to_request(check_request: ext.CheckRequest) -> dict[str, Any]:
    """Map Envoy's ``AttributeContext`` to a SPEC §3 request, exactly as SPEC §7.1 says.

    >>> req = ext.CheckRequest()
    >>> req.attributes.request.http.method = "GET"
    >>> req.attributes.request.http.path = "/v1/payments?limit=5"
    >>> envoy_to_request(req)["resource"]
    {'type': 'http', 'id': '/v1/payments', 'path': '/v1/payments', 'host': ''}
    """
    attrs = check_request.attributes
    source = attrs.source
    http = attrs.request.http

    principal = source.principal
    if principal:
        identity: dict[str, Any] = {"type": "workload", "id": principal, "spiffe_id": principal}
    else:
        identity = {"type": "anonymous", "id": "anonymous"}
    claims = _jwt_claims(attrs.metadata_context)
    if claims is not None:
        identity["claims"] = claims

    path = http.path.split("?", 1)[0].split("#", 1)[0]
    extensions = attrs.context_extensions
    resource: dict[str, Any] = {"type": extensions.get("resource_type") or "http", "id": path, "path": path,
                                "host": http.host}
    for key in sorted(extensions):
        if key != "resource_type" and key not in RESERVED_RESOURCE_KEYS:
            resource[key] = extensions[key]

    headers = _headers(http)
    context: dict[str, Any] = {"headers": headers}
    ip = _source_ip(source)
    if ip:
        context["source_ip"] = ip
    if attrs.request.HasField("time"):
        context["time"] = attrs.request.time.ToJsonString()
    _token_inputs(context, headers, http, path, source)
    return {"identity": identity, "action": {"name": http.method}, "resource": resource, "context": context}


def _token_inputs(context: dict, headers: dict, http, path: str, source) -> None:
    """What pdp's token verification reads (SPEC §8, docs/tokens.md): the ``Bearer`` token of
    ``authorization`` as ``context.token``, the ``dpop`` header as ``context.dpop`` with the
    request's method and URL (what the proof's ``htm`` and ``htu`` must match) as
    ``context.http``, and the client certificate Envoy forwards (``include_peer_certificate``;
    URL-encoded PEM) as ``context.tls.peer_certificate``. The headers themselves stay in
    ``context.headers``; a request without these is mapped as before."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        context["token"] = credentials.strip()
    if headers.get("dpop"):
        context["dpop"] = headers["dpop"]
        context["http"] = {"method": http.method, "url": f"{http.scheme or 'https'}://{http.host}{path}"}
    if source.certificate:
        context["tls"] = {"peer_certificate": unquote(source.certificate)}


def _headers(http) -> dict[str, str]:
    """Lower-case names, pseudo-headers left out; ``header_map`` when ``headers`` is empty.
    Repeated headers in ``header_map`` are joined with "," as Envoy joins them in ``headers``."""
    out: dict[str, str] = {}
    if http.headers:
        for name, value in http.headers.items():
            if not name.startswith(":"):
                out[name.lower()] = value
        return out
    for hv in http.header_map.headers:
        name = hv.key.lower()
        if name.startswith(":"):
            continue
        value = hv.value or hv.raw_value.decode("utf-8", "replace")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _source_ip(source) -> str:
    address = source.address
    if address.HasField("socket_address"):
        return address.socket_address.address
    return ""


def _jwt_claims(metadata_context) -> dict | None:
    """The first entry of the jwt_authn filter's metadata: the verified JWT payload.

    The filter stores each provider's payload under the provider's ``payload_in_metadata``
    name; there is normally one. Protobuf maps have no order, so "first" is the first name in
    sorted order. Struct carries every number as a double; integral ones (``exp``, ``iat``)
    become integers.
    """
    metadata = metadata_context.filter_metadata
    if JWT_FILTER not in metadata:
        return None
    fields = metadata[JWT_FILTER].fields
    if not fields:
        return None
    first = fields[sorted(fields)[0]]
    value = _struct_value(first)
    return value if isinstance(value, dict) else {"value": value}


def _struct_value(v) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: x for k, x in ((k, _struct_value(x)) for k, x in v.struct_value.fields.items()) if x is not None}
    if kind == "list_value":
        return [x for x in (_struct_value(i) for i in v.list_value.values) if x is not None]
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**63 else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None  # null_value or unset: absent


# --------------------------------------------------------------------------------------------
# Decision ⇒ Envoy CheckResponse


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))


def decision_to_envoy(decision: Decision, deny_body: str = "reasons") -> ext.CheckResponse:
    """ALLOW ⇒ OK with ``x-pdp-revision``; DENY ⇒ PERMISSION_DENIED, HTTP 403, ``x-pdp-revision``
    and the body ``deny_body`` says."""
    revision = _header(REVISION_HEADER, decision.revision)
    if decision.decision == "ALLOW":
        return ext.CheckResponse(status=status_pb2.Status(code=_OK),
                                 ok_response=ext.OkHttpResponse(headers=[revision]))
    reasons = [{"rule": r.rule, "message": r.message} for r in decision.reasons]
    return deny(reasons, decision.revision, deny_body)


def deny(reasons: list[dict], revision: str, body: str = "reasons") -> ext.CheckResponse:
    """A 403 answer; its JSON body lists ``reasons`` (each ``{"rule", "message"}``), their rule
    ids only, or nothing, as ``body`` says (``options.ENVOY_DENY_BODIES``)."""
    headers = [_header(REVISION_HEADER, revision)]
    text = ""
    if body != "none":
        if body == "rules":
            reasons = [{"rule": r["rule"]} for r in reasons]
        elif body != "reasons":
            raise ValueError(f"deny body must be one of {', '.join(ENVOY_DENY_BODIES)}, got {body!r}")
        text = json.dumps({"decision": "DENY", "reasons": reasons, "revision": revision}, ensure_ascii=False,
                          separators=(",", ":"))
        headers.append(_header("content-type", "application/json"))
    return ext.CheckResponse(
        status=status_pb2.Status(code=_PERMISSION_DENIED, message="denied by pdp"),
        denied_response=ext.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden), headers=headers, body=text),
    )


# --------------------------------------------------------------------------------------------
# One CheckRequest ⇒ the answer (what the servicer sends, and what ``pdp eval --envoy`` shows)


@dataclass(frozen=True)
class EnvoyAnswer:
    """How the Envoy service answers one ``CheckRequest``, and how it got there."""

    request: dict | None  # the mapped pdp request; None when nothing could be mapped
    decision: Decision  # the engine's decision, or the DENY that refuses an undecidable request
    response: ext.CheckResponse
    error_code: str = ""  # for a refused request: INVALID_ARGUMENT or INTERNAL (metrics)


def answer(engine, check_request: ext.CheckRequest, max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
           deny_body: str = "reasons") -> EnvoyAnswer:
    """Map, decide and answer one CheckRequest, failing closed: the one path both ``pdp serve``
    and ``pdp eval --envoy`` take, so that the second shows exactly what the first sends."""
    request = None
    try:
        request = envoy_to_request(check_request)
        check_attribute_count(request, check_request.ByteSize(), max_attributes)
        decision = engine.decide(request)
    except RequestError as err:
        return refusal(INVALID_RULE, f"the request cannot be decided: {err}", engine.revision, request,
                       "INVALID_ARGUMENT", deny_body)
    except Exception:  # fail closed, and keep answering
        log.exception("envoy check: unexpected error")
        return refusal(INTERNAL_RULE, "internal error in pdp; denied (fail closed)", engine.revision, request,
                       "INTERNAL", deny_body)
    return EnvoyAnswer(request, decision, decision_to_envoy(decision, deny_body))


def refusal(rule: str, message: str, revision: str, request: dict | None, code: str,
            deny_body: str = "reasons") -> EnvoyAnswer:
    """The DENY (403) for a request that could not be decided, with ``rule`` as its one reason."""
    decision = Decision(DENY, (Reason(rule, "forbid", message, {}),), (), revision, 0)
    return EnvoyAnswer(request, decision, decision_to_envoy(decision, deny_body), code)


class EnvoyAuthorization(ext_grpc.AuthorizationServicer):
    """The Authorization servicer: never an RPC error, a DENY instead."""

    def __init__(self, holder: EngineHolder, options: ServerOptions):
        self.holder = holder
        self.max_attributes = options.max_attributes
        self.deny_body = options.envoy_deny_body
        self.log = options.decision_log
        self.metrics = options.metrics

    def Check(self, check_request: ext.CheckRequest, context) -> ext.CheckResponse:
        started = _perf_ns()
        result = answer(self.holder.engine, check_request, self.max_attributes, self.deny_body)
        if result.error_code:
            return self._refused(result)
        decision = result.decision
        elapsed = _perf_ns() - started
        if self.metrics is not None:
            self.metrics.decided("envoy", decision.decision, decision.reasons, elapsed / 1e9)
        if self.log is not None:
            self.log.record("envoy", check_request.attributes.request.http.id, result.request, decision, elapsed)
        return result.response

    def _refused(self, result: EnvoyAnswer) -> ext.CheckResponse:
        if self.metrics is not None:
            self.metrics.error("envoy", result.error_code)
        if self.log is not None:
            self.log.record_error("envoy", "", result.request, result.decision.reasons[0].message)
        return result.response

    def check_bytes(self, data: bytes, context) -> ext.CheckResponse:
        """Check from the raw message: bytes that are not a CheckRequest are a DENY too (SPEC
        §7.1: always a CheckResponse), not the INTERNAL that grpcio's own decoding would give."""
        try:
            check_request = ext.CheckRequest.FromString(data)
        except Exception:  # DecodeError and anything the decoder raises on hostile bytes
            return self._refused(refusal(INVALID_RULE, "the request cannot be decided: not an Envoy CheckRequest",
                                         self.holder.engine.revision, None, "INVALID_ARGUMENT", self.deny_body))
        return self.Check(check_request, context)

    def register(self, server: grpc.Server) -> None:
        # Registered by hand (not add_AuthorizationServicer_to_server) to decode in check_bytes.
        handler = grpc.unary_unary_rpc_method_handler(
            self.check_bytes, request_deserializer=None, response_serializer=ext.CheckResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Check": handler}),))
