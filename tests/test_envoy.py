"""Envoy external authorization (SPEC §7.1), with Envoy's own generated messages (xds-protos):
the mapping field by field, the answers, and real Authorization/Check calls."""

from __future__ import annotations

import json

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.protobuf import struct_pb2, timestamp_pb2
from serverkit import WAIT, engine, running

from pdp.decision import Decision, Reason
from pdp.server import ServerOptions
from pdp.server.envoy_authz import decision_to_envoy, envoy_to_request
from pdp.server.metrics import Metrics

SPIFFE = "spiffe://acme.prod/ns/billing/sa/api"


def envoy_request(method="GET", path="/v1/orders/7?limit=5", host="api.acme", principal="", headers=None,
                  header_map=None, extensions=None, ip="10.1.2.3", seconds=None, jwt=None) -> ext.CheckRequest:
    req = ext.CheckRequest()
    attrs = req.attributes
    http = attrs.request.http
    http.method, http.path, http.host = method, path, host
    if principal:
        attrs.source.principal = principal
    if ip:
        attrs.source.address.socket_address.address = ip
        attrs.source.address.socket_address.port_value = 41000
    for k, v in (headers or {}).items():
        http.headers[k] = v
    for k, v in header_map or ():
        http.header_map.headers.add(key=k, raw_value=v.encode())
    for k, v in (extensions or {}).items():
        attrs.context_extensions[k] = v
    if seconds is not None:
        attrs.request.time.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds))
    if jwt is not None:
        payload = struct_pb2.Struct()
        payload.update(jwt)
        attrs.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].fields["jwt_payload"].struct_value.CopyFrom(
            payload)
    return req


# --------------------------------------------------------------------------------------------
# the mapping


def test_a_workload_peer_becomes_the_identity():
    request = envoy_to_request(envoy_request(principal=SPIFFE))
    assert request["identity"] == {"type": "workload", "id": SPIFFE, "spiffe_id": SPIFFE}


def test_an_anonymous_peer():
    request = envoy_to_request(envoy_request())
    assert request["identity"] == {"type": "anonymous", "id": "anonymous"}


def test_the_verified_jwt_payload_becomes_identity_claims():
    jwt = {"sub": "user-1", "exp": 1767225600, "scope": ["orders:read"], "ratio": 0.5, "nested": {"n": 3},
           "none": None}
    request = envoy_to_request(envoy_request(jwt=jwt))
    claims = request["identity"]["claims"]
    assert claims == {"sub": "user-1", "exp": 1767225600, "scope": ["orders:read"], "ratio": 0.5, "nested": {"n": 3}}
    assert type(claims["exp"]) is int and type(claims["nested"]["n"]) is int
    assert "claims" not in envoy_to_request(envoy_request())["identity"]


def test_action_and_resource_from_the_http_request():
    request = envoy_to_request(envoy_request(method="POST", path="/v1/orders/7?limit=5#frag"))
    assert request["action"] == {"name": "POST"}
    assert request["resource"] == {"type": "http", "id": "/v1/orders/7", "path": "/v1/orders/7", "host": "api.acme"}


def test_context_extensions_set_the_resource_type_and_attributes_but_not_the_http_ones():
    ext_map = {"resource_type": "order", "tenant": "acme", "id": "x", "path": "/evil", "host": "h", "type": "t"}
    resource = envoy_to_request(envoy_request(extensions=ext_map))["resource"]
    assert resource == {"type": "order", "id": "/v1/orders/7", "path": "/v1/orders/7", "host": "api.acme",
                        "tenant": "acme"}


def test_headers_lower_case_without_pseudo_headers():
    headers = {":path": "/x", ":method": "GET", "X-Tenant": "acme", "authorization": "Bearer t"}
    context = envoy_to_request(envoy_request(headers=headers))["context"]
    assert context["headers"] == {"x-tenant": "acme", "authorization": "Bearer t"}


def test_header_map_is_used_when_headers_is_empty():
    header_map = [(":authority", "api"), ("X-Tenant", "acme"), ("accept", "a"), ("Accept", "b")]
    context = envoy_to_request(envoy_request(header_map=header_map))["context"]
    assert context["headers"] == {"x-tenant": "acme", "accept": "a,b"}
    # When both are set, headers wins.
    both = envoy_request(headers={"x-one": "1"}, header_map=[("x-two", "2")])
    assert envoy_to_request(both)["context"]["headers"] == {"x-one": "1"}


def test_source_ip_and_time():
    context = envoy_to_request(envoy_request(ip="203.0.113.9", seconds=1795773600))["context"]
    assert context["source_ip"] == "203.0.113.9" and context["time"] == "2026-11-27T10:00:00Z"
    bare = envoy_to_request(envoy_request(ip=""))["context"]
    assert "source_ip" not in bare and "time" not in bare


def test_the_mapped_request_is_a_valid_pdp_request(tmp_path):
    eng = engine(tmp_path)
    decision = eng.decide(envoy_to_request(envoy_request(path="/public/a")))
    assert decision.allowed and decision.reasons[0].rule == "http.public_read"


# --------------------------------------------------------------------------------------------
# the answers


def test_allow_is_ok_with_the_revision_header():
    response = decision_to_envoy(Decision("ALLOW", (Reason("p.r", "permit", "ok"),), (), "abc123"))
    assert response.status.code == 0 and response.WhichOneof("http_response") == "ok_response"
    assert [(h.header.key, h.header.value) for h in response.ok_response.headers] == [("x-pdp-revision", "abc123")]


def test_deny_is_permission_denied_403_with_a_json_body_of_the_reasons():
    reasons = (Reason("p.a", "forbid", "no A"), Reason("p.b", "forbid", ""))
    response = decision_to_envoy(Decision("DENY", reasons, (), "abc123"))
    assert response.status.code == 7 and response.WhichOneof("http_response") == "denied_response"
    denied = response.denied_response
    assert denied.status.code == 403
    headers = {h.header.key: h.header.value for h in denied.headers}
    assert headers == {"x-pdp-revision": "abc123", "content-type": "application/json"}
    body = json.loads(denied.body)
    assert body["reasons"] == [{"rule": "p.a", "message": "no A"}, {"rule": "p.b", "message": ""}]
    assert body["revision"] == "abc123" and body["decision"] == "DENY"


# --------------------------------------------------------------------------------------------
# over the wire


@pytest.fixture
def authz(tmp_path):
    metrics = Metrics()
    with running(engine(tmp_path), ServerOptions(metrics=metrics)) as (holder, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield ext_grpc.AuthorizationStub(channel), holder, metrics


def test_envoy_check_allows(authz):
    stub, holder, _ = authz
    request = envoy_request(principal=SPIFFE, path="/v1/x", headers={"x-tenant": "acme"},
                            extensions={"tenant": "acme"})
    response = stub.Check(request, timeout=WAIT)
    assert response.status.code == 0
    assert [(h.header.key, h.header.value) for h in response.ok_response.headers] == [
        ("x-pdp-revision", holder.revision)]


def test_envoy_check_allows_on_jwt_claims(authz):
    stub, _, _ = authz
    response = stub.Check(envoy_request(path="/v1/x", jwt={"sub": "user-1", "exp": 2000}), timeout=WAIT)
    assert response.status.code == 0


def test_envoy_check_denies_with_403_headers_and_body(authz):
    stub, holder, metrics = authz
    response = stub.Check(envoy_request(principal=SPIFFE, ip="203.0.113.7", path="/public/x"), timeout=WAIT)
    assert response.status.code == 7
    denied = response.denied_response
    assert denied.status.code == 403
    assert {h.header.key: h.header.value for h in denied.headers}["x-pdp-revision"] == holder.revision
    assert json.loads(denied.body)["reasons"] == [{"rule": "http.blocked_network",
                                                  "message": "203.0.113.7 is blocked"}]
    default = stub.Check(envoy_request(method="DELETE"), timeout=WAIT)
    assert default.status.code == 7 and json.loads(default.denied_response.body)["reasons"][0]["rule"] == "default"
    assert metrics.registry.get_sample_value("pdp_decisions_total", {"api": "envoy", "decision": "DENY"}) == 2


def test_a_request_that_cannot_be_mapped_is_a_deny_not_an_rpc_error(authz):
    stub, holder, metrics = authz
    response = stub.Check(ext.CheckRequest(), timeout=WAIT)  # no method: action.name is empty
    assert response.status.code == 7 and response.denied_response.status.code == 403
    body = json.loads(response.denied_response.body)
    assert body["reasons"][0]["rule"] == "pdp.invalid_request"
    assert "action.name" in body["reasons"][0]["message"]
    assert {h.header.key: h.header.value for h in response.denied_response.headers}["x-pdp-revision"] == \
        holder.revision
    assert metrics.registry.get_sample_value("pdp_request_errors_total",
                                             {"api": "envoy", "code": "INVALID_ARGUMENT"}) == 1
    # Still serving.
    assert stub.Check(envoy_request(path="/public/a"), timeout=WAIT).status.code == 0


def test_envoy_header_value_option_is_envoys_own_type():
    # The response uses Envoy's core HeaderValueOption, so Envoy reads it as it reads its own.
    response = decision_to_envoy(Decision("ALLOW", (), (), "r"))
    assert isinstance(response.ok_response.headers[0], base_pb2.HeaderValueOption)


def test_envoy_decisions_are_logged_without_headers_or_claims(tmp_path):
    from pdp.server.decision_log import DecisionLog

    path = tmp_path / "envoy.jsonl"
    log = DecisionLog(str(path))
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (holder, port):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = envoy_request(path="/public/a?token=abc", headers={"authorization": "Bearer zzz"},
                                        jwt={"sub": "user-9", "secret": "s3cr3t"})
                request.attributes.request.http.id = "envoy-req-1"
                ext_grpc.AuthorizationStub(channel).Check(request, timeout=WAIT)
        assert log.flush(WAIT)
    finally:
        log.close()
    text = path.read_text()
    assert "zzz" not in text and "s3cr3t" not in text and "token=abc" not in text
    line = json.loads(text)
    assert line["api"] == "envoy" and line["request_id"] == "envoy-req-1" and line["decision"] == "ALLOW"
    assert line["identity"] == {"type": "anonymous", "id": "anonymous"} and line["action"] == "GET"
    assert line["resource"] == {"type": "http", "id": "/public/a"} and line["revision"] == holder.revision


# --------------------------------------------------------------------------------------------
# --envoy-deny-body: what the outside caller learns from a 403


def _deny_body_server(tmp_path, body):
    return running(engine(tmp_path), ServerOptions(envoy_deny_body=body))


BLOCKED = dict(principal=SPIFFE, ip="203.0.113.7", path="/public/x")


@pytest.mark.parametrize("body, expected", [
    ("reasons", [{"rule": "http.blocked_network", "message": "203.0.113.7 is blocked"}]),
    ("rules", [{"rule": "http.blocked_network"}]),
])
def test_deny_body_choices_over_the_wire(tmp_path, body, expected):
    with _deny_body_server(tmp_path, body) as (holder, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ext_grpc.AuthorizationStub(channel)
        denied = stub.Check(envoy_request(**BLOCKED), timeout=WAIT).denied_response
        assert denied.status.code == 403
        assert {h.header.key: h.header.value for h in denied.headers} == {
            "x-pdp-revision": holder.revision, "content-type": "application/json"}
        assert json.loads(denied.body) == {"decision": "DENY", "reasons": expected, "revision": holder.revision}
        # the refusal of a request that cannot be decided follows the same choice
        refused = json.loads(stub.Check(ext.CheckRequest(), timeout=WAIT).denied_response.body)
        assert refused["reasons"][0]["rule"] == "pdp.invalid_request"
        assert ("message" in refused["reasons"][0]) == (body == "reasons")
        assert stub.Check(envoy_request(path="/public/a"), timeout=WAIT).status.code == 0


def test_deny_body_none_is_an_empty_403(tmp_path):
    with _deny_body_server(tmp_path, "none") as (holder, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ext_grpc.AuthorizationStub(channel)
        for request in (envoy_request(**BLOCKED), ext.CheckRequest()):
            response = stub.Check(request, timeout=WAIT)
            assert response.status.code == 7 and response.denied_response.status.code == 403
            assert response.denied_response.body == ""
            assert [(h.header.key, h.header.value) for h in response.denied_response.headers] == [
                ("x-pdp-revision", holder.revision)]
        assert stub.Check(envoy_request(path="/public/a"), timeout=WAIT).status.code == 0


def test_deny_body_default_is_the_spec_and_the_cli_passes_the_choice():
    from pdp.cli import build_parser
    from pdp.cli.serve import server_options
    from pdp.server.options import ENVOY_DENY_BODIES

    assert ServerOptions().envoy_deny_body == "reasons"
    parser = build_parser()
    assert server_options(parser.parse_args(["serve", "p/"])).envoy_deny_body == "reasons"
    for choice in ENVOY_DENY_BODIES:
        args = parser.parse_args(["serve", "p/", "--envoy-deny-body", choice])
        assert server_options(args).envoy_deny_body == choice
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "p/", "--envoy-deny-body", "messages"])
    with pytest.raises(ValueError, match="envoy_deny_body"):
        ServerOptions(envoy_deny_body="messages")
