"""The gRPC server on real loopback ports: every DecisionService RPC, malformed payloads and
limits, health and its drain transition, reflection, metrics, the decision log, TLS and mTLS."""

from __future__ import annotations

import json
import threading
import urllib.request

import grpc
import msgpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serverkit import ALLOWED, DENIED, WAIT, engine, make_certs, running, write_policies

from pdp.client import Client
from pdp.errors import RequestError
from pdp.server import ServerOptions, TLSConfig
from pdp.server.decision_log import DecisionLog, redact
from pdp.server.lifecycle import Running, ServeConfig
from pdp.server.metrics import Metrics
from pdp.server.reload import PathSource
from pdp.v1 import decision_pb2 as pb
from pdp.v1 import decision_pb2_grpc as pb_grpc
from pdp.wire import pb_to_request, request_to_pb


@pytest.fixture
def served(tmp_path):
    with running(engine(tmp_path)) as (holder, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield holder, port, pb_grpc.DecisionServiceStub(channel), channel


def _invalid(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=WAIT, **kwargs)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    return info.value


@pytest.mark.parametrize("form", ["value", "msgpack"])
def test_check_allows_and_denies_in_both_forms(served, form):
    holder, _, stub, _ = served
    ok = stub.Check(request_to_pb(ALLOWED, "req-1", form=form), timeout=WAIT)
    assert ok.decision == pb.DECISION_ALLOW and ok.request_id == "req-1"
    assert [r.rule for r in ok.reasons] == ["payments.billing_may_charge"]
    assert ok.reasons[0].effect == pb.EFFECT_PERMIT and dict(ok.reasons[0].annotations) == {"control": "NHI-1"}
    assert ok.revision == holder.revision and ok.eval_ns > 0
    no = stub.Check(request_to_pb(DENIED, form=form), timeout=WAIT)
    assert no.decision == pb.DECISION_DENY
    assert [(r.rule, r.message) for r in no.reasons] == [
        ("payments.cross_environment", "a dev identity may not act on prod resources")]


def test_check_answers_what_the_engine_decides(served):
    holder, port, _, _ = served
    request = {"identity": {"type": "workload", "id": "x"}, "action": "GET",
               "resource": {"type": "http", "path": "/public/a"}, "context": {"source_ip": "203.0.113.9"}}
    want = holder.engine.decide(request)
    got = Client(channel=grpc.insecure_channel(f"127.0.0.1:{port}")).check(request)
    assert got == want and got.reasons[0].message == "203.0.113.9 is blocked"


def test_evaluation_errors_travel(served):
    _, _, stub, _ = served
    request = {"identity": {"type": "workload", "id": "billing"}, "action": "charge",
               "resource": {"type": "payment", "env": "prod"}}
    answer = stub.Check(request_to_pb(request, form="msgpack"), timeout=WAIT)
    assert answer.decision == pb.DECISION_DENY
    assert answer.reasons[0].message.startswith("failed closed: ")
    assert [e.rule for e in answer.errors] == ["payments.cross_environment"]


def test_malformed_check_is_invalid_argument_naming_the_path(served):
    _, _, stub, _ = served
    err = _invalid(stub.Check, request_to_pb({"identity": {"id": "x"}, "action": "a", "resource": {"type": "t"}}))
    assert err.details().startswith("identity.type: ")
    assert ("pdp-error-path", "identity.type") in tuple(err.trailing_metadata())
    # A Value with no kind set.
    msg = request_to_pb(ALLOWED)
    msg.identity["odd"].SetInParent()
    assert "identity.odd" in _invalid(stub.Check, msg).details()
    # Both forms at once.
    both = request_to_pb(ALLOWED)
    both.request_msgpack = msgpack.packb(ALLOWED)
    assert "request_msgpack" in _invalid(stub.Check, both).details()
    # Not MessagePack; MessagePack that is not a map; a NaN deep inside.
    _invalid(stub.Check, pb.CheckRequest(request_msgpack=b"\xc1"))
    _invalid(stub.Check, pb.CheckRequest(request_msgpack=msgpack.packb([1, 2])))
    nan = {**ALLOWED, "context": {"x": [1, float("nan")]}}
    assert "context.x[1]" in _invalid(stub.Check, pb.CheckRequest(request_msgpack=msgpack.packb(nan))).details()
    # An unknown top-level key in the msgpack form.
    _invalid(stub.Check, pb.CheckRequest(request_msgpack=msgpack.packb({**ALLOWED, "subject": {}})))
    # Still serving.
    assert stub.Check(request_to_pb(ALLOWED), timeout=WAIT).decision == pb.DECISION_ALLOW


def test_bytes_that_are_not_a_check_request_are_invalid_argument(served):
    _, _, stub, channel = served
    raw = channel.unary_unary("/pdp.v1.DecisionService/Check")
    assert "not a valid pdp.v1.CheckRequest" in _invalid(raw, b"\xff\xff\xff\xff").details()
    raw_batch = channel.unary_unary("/pdp.v1.DecisionService/CheckBatch")
    _invalid(raw_batch, b"\x0a\xff")
    # Deeper than the protobuf parser's recursion limit: refused, not a crash.
    inner = pb.Value(string_value="x").SerializeToString()
    for _ in range(60):  # Value{list_value{values: [inner]}}, built as bytes (upb would refuse to)
        listed = b"\x0a" + _varint(len(inner)) + inner
        inner = b"\x2a" + _varint(len(listed)) + listed
    entry = b"\x0a\x04deep" + b"\x12" + _varint(len(inner)) + inner
    deep = request_to_pb(ALLOWED).SerializeToString() + b"\x2a" + _varint(len(entry)) + entry
    _invalid(raw, deep)
    assert stub.Check(request_to_pb(ALLOWED), timeout=WAIT).decision == pb.DECISION_ALLOW


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


#: Malformed requests whose error quotes request text that gRPC metadata cannot carry as is
#: (control characters, a BOM, non-ASCII, a 100 KB name, a path of long keys nested 33 deep):
#: the keys down to a bad value.
UNPRINTABLE = {
    "control": ["a\x01\x1b[31m\x7fb"],
    "bom": ["\ufeffkey"],
    "non_ascii": ["café ☃ 😀", "ключ"],
    "huge_name": ["k" * 100_000],
    "deep_long_path": [f"{i:02d}" + "x" * 600 for i in range(33)],
}


def _unprintable_request(case: str, form: str) -> pb.CheckRequest:
    """msgpack: a null in a list at the end of the keys; value: a Value of no kind there (the
    Value form cannot nest 33 maps, nor hold a null in a list)."""
    keys = UNPRINTABLE[case]
    if form == "msgpack":
        leaf: object = [1, None]
        for key in reversed(keys):
            leaf = {key: leaf}
        return request_to_pb({**ALLOWED, "context": leaf}, "r", form=form)
    msg = request_to_pb(ALLOWED, "r", form=form)
    fields = msg.context
    keys = keys[:25]
    for key in keys[:-1]:
        fields = fields[key].map_value.fields
    fields[keys[-1]].SetInParent()
    return msg


def _assert_printable(text: str) -> None:
    assert len(text) <= 1024 and text.isascii() and text.isprintable(), (len(text), text[:200])


@pytest.mark.parametrize("form", ["value", "msgpack"])
@pytest.mark.parametrize("case", sorted(UNPRINTABLE))
def test_errors_that_quote_the_request_are_printable_and_at_most_1kb(served, case, form):
    _, port, stub, _ = served
    msg = _unprintable_request(case, form)
    err = _invalid(stub.Check, msg)
    _assert_printable(err.details())
    path = dict(err.trailing_metadata())["pdp-error-path"]
    _assert_printable(path)
    assert path.startswith("context") and err.details().startswith(path[:100])
    if case == "deep_long_path":  # the path is cut in its middle: where and what both show
        assert "..." in path and err.details().endswith(
            "nested deeper than 32 levels" if form == "msgpack" else "map_value)")
    if case == "control":
        assert "\\u0001\\u001b[31m\\u007f" in path
    # The same error as an item of a batch and of a stream.
    items = [*stub.CheckBatch(pb.CheckBatchRequest(requests=[msg, request_to_pb(ALLOWED)]), timeout=WAIT).responses,
             *stub.CheckStream(iter([msg, request_to_pb(ALLOWED)]), timeout=WAIT)]
    assert [bool(r.HasField("error")) for r in items] == [True, False, True, False]
    for item in items[::2]:
        assert item.error.code == 3 and item.error.path == path and item.error.message == err.details()
    # pdp's client (msgpack: it leaves the checks to the server) raises RequestError with that
    # path; the server keeps serving.
    with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
        if form == "msgpack":
            with pytest.raises(RequestError) as info:
                client.check(pb_to_request(msg, check=False))
            assert info.value.path == path
        assert client.check(ALLOWED).allowed


def test_peer_attributes_from_an_auth_context():
    from pdp.server.convert import peer_attributes

    assert peer_attributes({}) is None  # no verified client certificate
    base = {"x509_pem_cert": [b"PEM"], "x509_common_name": [b"billing"]}
    assert peer_attributes({**base, "peer_spiffe_id": [b"spiffe://a/b"], "x509_uri": [b"spiffe://a/b"]}) == {
        "authenticated": True, "spiffe_id": "spiffe://a/b", "uri_sans": ["spiffe://a/b"], "common_name": "billing"}
    # Found among the URI SANs when gRPC does not name it; two SPIFFE IDs make none.
    assert peer_attributes({**base, "x509_uri": [b"https://x", b"spiffe://a/c"]})["spiffe_id"] == "spiffe://a/c"
    two = peer_attributes({**base, "x509_uri": [b"spiffe://a/c", b"spiffe://a/d"], "x509_dns": [b"h.local"]})
    assert "spiffe_id" not in two and two["dns_sans"] == ["h.local"]


def test_a_request_may_not_set_context_peer(served):
    _, _, stub, _ = served
    request = {**ALLOWED, "context": {"peer": {"spiffe_id": "spiffe://acme.prod/ns/billing/sa/api"}}}
    for form in ("value", "msgpack"):
        err = _invalid(stub.Check, request_to_pb(request, form=form))
        assert err.details().startswith("context.peer: is set by the server")


def test_check_batch_answers_in_order_with_item_errors(served):
    holder, _, stub, _ = served
    batch = pb.CheckBatchRequest(requests=[
        request_to_pb(ALLOWED, "a", form="msgpack"),
        request_to_pb({"identity": {"type": "workload"}, "action": "x", "resource": {"type": "t"}}, "b"),
        request_to_pb(DENIED, "c"),
        pb.CheckRequest(request_id="d", request_msgpack=b"\xc1"),
    ])
    out = stub.CheckBatch(batch, timeout=WAIT).responses
    assert [r.request_id for r in out] == ["a", "b", "c", "d"]
    assert [r.decision for r in out] == [pb.DECISION_ALLOW, pb.DECISION_UNSPECIFIED, pb.DECISION_DENY,
                                         pb.DECISION_UNSPECIFIED]
    assert out[1].error.code == 3 and out[1].error.path == "identity.id" and not out[1].revision
    assert out[3].error.path == "request_msgpack"
    assert {r.revision for r in (out[0], out[2])} == {holder.revision}
    assert stub.CheckBatch(pb.CheckBatchRequest(), timeout=WAIT).responses == []


def test_check_stream_goes_on_after_a_malformed_request(served):
    _, _, stub, _ = served
    requests = [request_to_pb(ALLOWED, "1"), request_to_pb({}, "2", form="msgpack"), request_to_pb(DENIED, "3")]
    out = list(stub.CheckStream(iter(requests), timeout=WAIT))
    assert [(r.request_id, r.decision) for r in out] == [
        ("1", pb.DECISION_ALLOW), ("2", pb.DECISION_UNSPECIFIED), ("3", pb.DECISION_DENY)]
    assert out[1].error.code == 3


def test_check_stream_answers_each_request_before_the_next_is_sent(served):
    _, _, stub, _ = served
    sent = []
    answered = threading.Event()

    def requests():
        for i in range(3):
            sent.append(i)
            yield request_to_pb(ALLOWED, str(i))
            assert answered.wait(WAIT)
            answered.clear()

    for i, response in enumerate(stub.CheckStream(requests(), timeout=WAIT)):
        assert response.request_id == str(i) and len(sent) == i + 1
        answered.set()


def test_limits(tmp_path):
    options = ServerOptions(max_message_bytes=64 * 1024, max_attributes=100, max_batch=3)
    with running(engine(tmp_path), options) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.DecisionServiceStub(ch)
        many = {**ALLOWED, "context": {"tags": list(range(150))}}
        for form in ("value", "msgpack"):
            assert "more than 100 attribute values" in _invalid(stub.Check, request_to_pb(many, form=form)).details()
        ok = {**ALLOWED, "context": {"tags": list(range(80))}}
        assert stub.Check(request_to_pb(ok), timeout=WAIT).decision == pb.DECISION_ALLOW
        item = stub.CheckBatch(pb.CheckBatchRequest(requests=[request_to_pb(many)]), timeout=WAIT).responses[0]
        assert "more than 100" in item.error.message
        err = _invalid(stub.CheckBatch, pb.CheckBatchRequest(requests=[request_to_pb(ALLOWED)] * 4))
        assert "limit is 3" in err.details()
        huge = {**ALLOWED, "context": {"blob": "x" * 100_000}}
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(request_to_pb(huge), timeout=WAIT)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Check(request_to_pb(ALLOWED), timeout=WAIT).decision == pb.DECISION_ALLOW


def test_an_expired_deadline_is_deadline_exceeded_and_the_server_goes_on(served):
    _, _, stub, _ = served
    with pytest.raises(grpc.RpcError) as info:
        stub.CheckBatch(pb.CheckBatchRequest(requests=[request_to_pb(ALLOWED)] * 2000), timeout=1e-6)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Check(request_to_pb(ALLOWED), timeout=WAIT).decision == pb.DECISION_ALLOW


# --------------------------------------------------------------------------------------------
# health and reflection


def test_health_is_serving_for_the_server_and_each_service(served):
    _, _, _, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pdp.v1.DecisionService", "envoy.service.auth.v3.Authorization"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_draining_turns_health_not_serving_then_stops(tmp_path):
    config = ServeConfig(PathSource((str(write_policies(tmp_path / "p")),)), address="127.0.0.1:0", grace=5.0)
    server = Running(config)
    stopper = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""),
                                                              timeout=WAIT)
            statuses = []
            for update in watch:
                statuses.append(update.status)
                if len(statuses) == 1:
                    stopper = threading.Thread(target=server.stop, kwargs={"shutdown_delay": 0.2})
                    stopper.start()
                elif update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
            assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
            assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        if stopper is None:
            server.stop(grace=0)
        else:
            stopper.join(WAIT)
    assert not stopper.is_alive()


def test_reflection_lists_and_describes_the_services(served):
    _, _, _, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="pdp.v1.DecisionService"),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="envoy.service.auth.v3.Authorization")]
    listed, pdp_file, envoy_file = list(stub.ServerReflectionInfo(iter(requests), timeout=WAIT))
    names = {s.name for s in listed.list_services_response.service}
    assert {"pdp.v1.DecisionService", "envoy.service.auth.v3.Authorization", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert pdp_file.file_descriptor_response.file_descriptor_proto
    assert envoy_file.file_descriptor_response.file_descriptor_proto


# --------------------------------------------------------------------------------------------
# metrics and the decision log


def test_metrics_count_decisions_rules_errors_and_serve_over_http(tmp_path):
    metrics = Metrics()
    with running(engine(tmp_path), ServerOptions(metrics=metrics)) as (_, port):
        client = Client(f"127.0.0.1:{port}")
        client.check(ALLOWED)
        client.check(ALLOWED)
        client.check(DENIED)
        with pytest.raises(RequestError):
            client.check({"identity": {}, "action": "a", "resource": {"type": "t"}})
        client.close()
    value = metrics.registry.get_sample_value
    assert value("pdp_decisions_total", {"api": "pdp", "decision": "ALLOW"}) == 2
    assert value("pdp_decisions_total", {"api": "pdp", "decision": "DENY"}) == 1
    assert value("pdp_rule_reasons_total", {"rule": "payments.billing_may_charge"}) == 2
    assert value("pdp_request_errors_total", {"api": "pdp", "code": "INVALID_ARGUMENT"}) == 1
    assert value("pdp_request_seconds_count", {"api": "pdp"}) == 3
    http, mport = metrics.serve_http("127.0.0.1:0")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=WAIT).read().decode()
    finally:
        http.shutdown()
    assert 'pdp_decisions_total{api="pdp",decision="ALLOW"} 2.0' in text


SECRET_REQUEST = {
    "identity": {"type": "workload", "id": "billing", "env": "prod",
                 "credential": {"token": "s3cr3t-credential-value", "issued_at": "2026-01-01T00:00:00Z"}},
    "action": "charge",
    "resource": {"type": "payment", "id": "p1", "env": "prod"},
    "context": {"headers": {"authorization": "Bearer very-secret-token", "cookie": "session=hunter2"}},
}


def test_decision_log_writes_one_line_per_decision_without_secrets(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (holder, port):
            client = Client(f"127.0.0.1:{port}")
            client.check(SECRET_REQUEST, request_id="r-1")
            client.check(DENIED, request_id="r-2")
            with pytest.raises(RequestError):
                client.check({"identity": {"type": "x"}, "action": "a", "resource": {"type": "t"}}, request_id="r-3")
            client.check_batch([ALLOWED, {"identity": {}}], return_errors=True)
            client.close()
        assert log.flush(WAIT)
    finally:
        log.close()
    text = path.read_text()
    for secret in ("s3cr3t", "very-secret-token", "hunter2", "Bearer"):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 5
    first = lines[0]
    assert first["request_id"] == "r-1" and first["api"] == "pdp" and first["decision"] == "ALLOW"
    assert first["identity"] == {"type": "workload", "id": "billing"} and first["action"] == "charge"
    assert first["resource"] == {"type": "payment", "id": "p1"}
    assert first["reasons"] == ["payments.billing_may_charge"] and first["revision"] == holder.revision
    assert first["latency_us"] > 0 and first["time"].endswith("Z")
    assert lines[1]["decision"] == "DENY" and lines[1]["reasons"] == ["payments.cross_environment"]
    assert lines[2]["decision"] is None and lines[2]["error"].startswith("identity.id")
    assert log.dropped == 0


def test_decision_log_drops_and_counts_when_the_writer_is_stuck(tmp_path):
    release = threading.Event()
    writing = threading.Event()

    class StuckFile:
        def __init__(self):
            self.data = b""

        def write(self, data):
            writing.set()
            assert release.wait(WAIT)
            self.data += data

        def flush(self):
            pass

        def close(self):
            pass

    drops = []
    log = DecisionLog(str(tmp_path / "unused.jsonl"), max_queue=2, on_drop=drops.append)
    stuck = StuckFile()
    log._file = stuck
    decision = engine(tmp_path).decide(ALLOWED)
    log.record("pdp", "first", ALLOWED, decision, 1000)
    assert writing.wait(WAIT)  # the writer holds "first" and is stuck in write()
    for i in range(10):  # never blocks: 2 queued, 8 dropped
        log.record("pdp", str(i), ALLOWED, decision, 1000)
    assert log.dropped == 8
    release.set()
    assert log.flush(WAIT)
    log.close()
    lines = [json.loads(line) for line in stuck.data.decode().splitlines()]
    assert [x.get("request_id") for x in lines if "request_id" in x] == ["first", "0", "1"]
    assert {"event": "dropped", "count": 8, "total": 8}.items() <= lines[-1].items()
    assert drops == [8]


def test_an_internal_error_is_internal_without_details_and_the_server_goes_on(tmp_path):
    class Broken:
        revision = "r"

        def decide(self, request):
            raise KeyError("secret internals")

    from pdp.server import EngineHolder

    holder = EngineHolder(engine(tmp_path))
    good = holder.engine
    with running(holder) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        holder.engine = Broken()
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(request_to_pb(ALLOWED), timeout=WAIT)
        assert info.value.code() == grpc.StatusCode.INTERNAL and "secret" not in info.value.details()
        item = stub.CheckBatch(pb.CheckBatchRequest(requests=[request_to_pb(ALLOWED)]), timeout=WAIT).responses[0]
        assert item.error.code == 13 and "secret" not in item.error.message
        holder.engine = good
        assert stub.Check(request_to_pb(ALLOWED), timeout=WAIT).decision == pb.DECISION_ALLOW


def test_doctests_of_the_server_modules():
    import doctest

    from pdp.server import convert, decision_log, envoy_authz

    for module in (convert, decision_log, envoy_authz):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_redact():
    assert redact({"authorization": "x", "Cookie": "y", "id": "billing"}) == {
        "authorization": "[REDACTED]", "Cookie": "[REDACTED]", "id": "billing"}
    assert redact(["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "ok"]) == ["[REDACTED]", "ok"]
    assert redact("bearer abc") == "[REDACTED]" and redact("A" * 40) == "[REDACTED]"
    assert redact("spiffe://acme.prod/ns/billing/sa/api") == "spiffe://acme.prod/ns/billing/sa/api"


# --------------------------------------------------------------------------------------------
# TLS and mTLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _refused(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.check(ALLOWED, timeout=5)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    client.close()


def test_tls_serves_tls_and_refuses_plaintext(tmp_path, certs):
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key))
    with running(engine(tmp_path), options) as (_, port):
        with Client(f"127.0.0.1:{port}", root_ca=certs.ca) as client:
            assert client.check(ALLOWED).allowed
            # Without mTLS there is no verified peer: context.peer is absent.
            assert not client.check({**ALLOWED, "resource": {"type": "peer"}}).allowed
        _refused(Client(f"127.0.0.1:{port}"))


def test_mtls_accepts_a_client_certificate_and_gives_its_spiffe_id_to_policies(tmp_path, certs):
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, certs.ca))
    peer_request = {"identity": {"type": "workload", "id": "billing"}, "action": "read",
                    "resource": {"type": "peer"}}
    with running(engine(tmp_path), options) as (_, port):
        with Client(f"127.0.0.1:{port}", root_ca=certs.ca, cert=certs.client_cert, key=certs.client_key) as client:
            decision = client.check(peer_request)
            assert decision.allowed and decision.reasons[0].rule == "peer.billing_peer"
            assert client.check_batch([peer_request])[0].allowed
            assert next(client.check_stream([peer_request])).allowed
            with pytest.raises(RequestError, match="context.peer"):
                client.check({**peer_request, "context": {"peer": {"spiffe_id": "spoofed"}}})
        _refused(Client(f"127.0.0.1:{port}", root_ca=certs.ca))  # no client certificate
        _refused(Client(f"127.0.0.1:{port}", root_ca=certs.ca, cert=certs.other_client_cert,
                        key=certs.other_client_key))  # signed by another CA
        _refused(Client(f"127.0.0.1:{port}"))  # plaintext
